"""Which process of a distributed (DDP) run this is, and which GPU a job of the parallel launcher takes.

Lightning starts the other processes of a DDP run on one machine by running the same command again, with
``LOCAL_RANK`` set and the run's folder as ``hydra.run.dir``; torchrun and Slurm start every process themselves
(``RANK``, ``SLURM_PROCID``). All processes of a run train and test together, but only global rank 0 holds the run
folder's lock, writes its files and prints its console line: the other ranks are the same run, not a second one.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch.distributed as dist

RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")
"""The environment variables that give a process a rank other than 0 (any of them above 0)."""
LAUNCH_VARIABLES = ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
"""What Lightning's launcher sets in rank 0's environment when it starts the other ranks."""


def is_rank_zero() -> bool:
    """True for the process that owns the run folder: rank 0, or the only process of a run that is not DDP."""
    return all(_number(os.environ.get(name)) == 0 for name in RANK_VARIABLES)


def _number(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0


@contextmanager
def job_of_a_sweep(job_overrides: Sequence[str]) -> Iterator[None]:
    """While one job of a multirun trains and tests in this process: ``sys.argv`` is the job's own command line
    (Lightning starts the other DDP ranks by running ``sys.argv`` again: the sweep's would start a whole sweep in
    each rank); afterwards the command line and the environment Lightning's launcher set are restored and the
    process group is closed, so that the next job starts its ranks anew (Lightning takes a set ``LOCAL_RANK`` for
    ranks started by someone else, and would wait for them)."""
    argv, environment = list(sys.argv), {name: os.environ.get(name) for name in LAUNCH_VARIABLES}
    sys.argv = [argv[0], *job_overrides]
    try:
        yield
    finally:
        sys.argv = argv
        for name, value in environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def job_device(job: int, visible_gpus: int, devices: object, accelerator: str) -> int | None:
    """The GPU of job ``job`` of the parallel launcher (``hydra/launcher=parallel``) on a machine with
    ``visible_gpus`` GPUs: job k on GPU k mod G, for a trainer that asks for one device of a GPU (``accelerator``
    gpu, cuda or auto); None leaves the trainer as configured (no GPU, several devices, a list of them)."""
    if visible_gpus < 1 or str(devices) != "1" or accelerator not in ("gpu", "cuda", "auto"):
        return None
    return job % visible_gpus
