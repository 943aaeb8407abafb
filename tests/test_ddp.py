"""DDP on CPU (two processes, gloo) through the CLI: Lightning starts rank 1 by running the same command again, so
these run in new interpreters as a user's shell runs them. One run folder, one lock held by rank 0, files written
by rank 0 only, every test clip scored once, and the same scores as the run's model.ckpt scored by one process."""

import json

import pytest
from conftest import CLI, CSV_ONLY, read_csv, run_process, train_args


@pytest.mark.slow
@pytest.mark.parametrize("model", ["ganomaly_small", "ae_baseline"])
def test_a_ddp_run_on_two_processes_is_one_run_written_by_rank_0(synthetic_root, tmp_path, model):
    overrides = ["trainer.accelerator=cpu", "trainer.devices=2", "trainer.max_epochs=2", *CSV_ONLY]
    args = [
        a.replace("trainer=cpu", "trainer=ddp") for a in train_args(synthetic_root, tmp_path, *overrides, model=model)
    ]
    result = run_process(args, tmp_path)
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output[-3000:]
    runs = [p.parent for p in (tmp_path / "logs").rglob("config.yaml") if p.parent.name != ".hydra"]
    assert len(runs) == 1, runs
    run = runs[0]
    assert json.loads((run / "metrics.json").read_text())["status"] == "completed"
    rank_1 = (run / "train_ddp_process_1.log").read_text()  # rank 1's log, beside rank 0's train.log
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in rank_1 and "GLOBAL_RANK: 0, MEMBER: 1/2" in output
    summaries = [line for line in result.stdout.splitlines() if "[asd_ganomaly.sweep]" in line]
    assert len(summaries) == 1, f"one console line, rank 0's: {summaries}"
    rows = read_csv(run / "scores.csv")
    clips = sorted((synthetic_root / "fan").glob("*_test/*.wav"))
    assert sorted(r["path"] for r in rows) == sorted(map(str, clips)), "every test clip scored exactly once"
    # the same weights scored by one process give the same scores
    scored = tmp_path / "scored.csv"
    run_process([CLI, "score", "--ckpt", run / "model.ckpt", *clips, "--out", scored, "--no-progress"], tmp_path)
    theirs = {r["path"]: float(r["score"]) for r in read_csv(scored)}
    for row in rows:
        assert float(row["score"]) == pytest.approx(theirs[row["path"]], rel=1e-5, abs=1e-6), row["path"]


@pytest.mark.slow
def test_a_sweep_of_two_ddp_runs_writes_two_run_folders_each_trained_by_two_ranks(synthetic_root, tmp_path):
    """Lightning starts rank 1 by running sys.argv again: a sweep's would start a sweep in rank 1 (4 runs, and the
    second job's rank 0 waiting for a rank that never comes); each job's rank 1 runs that job alone."""
    overrides = ["trainer.accelerator=cpu", "trainer.devices=2", "trainer.max_epochs=1", *CSV_ONLY]
    args = train_args(synthetic_root, tmp_path, *overrides, "model.loss.w_rec=10,50", multirun=True)
    result = run_process([a.replace("trainer=cpu", "trainer=ddp") for a in args], tmp_path)
    runs = sorted(p.parent for p in (tmp_path / "logs").rglob("config.yaml") if p.parent.name != ".hydra")
    assert [run.parent.name.split("-")[:2] for run in runs] == [["w_rec", "10"], ["w_rec", "50"]], runs
    for run in runs:
        assert json.loads((run / "metrics.json").read_text())["status"] == "completed"
        assert "GLOBAL_RANK: 1, MEMBER: 2/2" in (run / "train_ddp_process_1.log").read_text()
    assert result.stdout.count("sweep: 2 runs: 2 done") == 1 and "sweep: 1 runs" not in result.stdout


def test_each_rank_trains_on_its_share_of_the_batches():
    import torch

    from asd_ganomaly.data.datamodule import TensorBatches

    rows = torch.arange(10)
    whole = [b[0].tolist() for b in TensorBatches((rows,), 3)]
    shares = [[b[0].tolist() for b in TensorBatches((rows,), 3, shard=(rank, 2))] for rank in range(2)]
    assert whole == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    assert shares == [[[0, 1, 2], [6, 7, 8]], [[3, 4, 5], [9]]]
    odd = [[b[0].tolist() for b in TensorBatches((rows,), 3, shard=(rank, 3))] for rank in range(3)]
    assert odd == [[[0, 1, 2], [9]], [[3, 4, 5], [0, 1, 2]], [[6, 7, 8], [3, 4, 5]]], "padded from the pass's start"
