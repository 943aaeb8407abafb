"""How every checkpoint of a run is written: through :func:`~asd_ganomaly.core.files.atomic_output`.

Lightning's own writer (``TorchCheckpointIO``, through an fsspec transaction) writes a temporary file in the
system's temp folder and moves it onto the final name; across file systems that move is a copy, which a full disk
leaves truncated under the final name (``epoch0001.ckpt`` that ``torch.load`` refuses). :class:`AtomicCheckpointIO`
writes the temporary file beside the checkpoint, on the run's own file system, flushes it and renames it: a failed
save leaves the previous file whole and raises a :class:`~asd_ganomaly.core.files.WriteError` naming the file and
the free space.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from ..core.files import atomic_output


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint plugin with saves that are all or nothing (loads and removals as Lightning's)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        """Write ``checkpoint`` to a temporary file beside ``path``, flush it, rename it to ``path``."""
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        with atomic_output(path) as tmp, open(tmp, "wb") as file:  # closed on failure: a full disk frees its space
            torch.save(checkpoint, file)
