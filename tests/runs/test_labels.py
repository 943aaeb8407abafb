"""Setting labels: the varied keys only, short names, values rounded for display, never cut mid-part."""

import os
import time
from collections import Counter

from asd_ganomaly.runs.identity import display_value, label_parts, run_label, short_keys, varied_overrides
from asd_ganomaly.runs.sweep import file_system_time, sweep_keys_override, sweep_tally, swept_keys, tally_line

SHARED = ["trainer=cpu", "trainer.max_epochs=2", "data.batch_size=8", "data.features.seconds=2.0"]


def test_a_sweep_labels_its_runs_by_the_swept_keys_only():
    overrides = [*SHARED, "data.machine_type=fan", "model.loss.w_rec=10", "model.loss.w_adv=0.5"]
    keys = ["data.machine_type", "model.loss.w_rec"]
    assert run_label(overrides, sweep_keys=keys) == "w_rec-10"
    assert varied_overrides(overrides, sweep_keys=keys) == ["model.loss.w_rec=10"]


def test_a_single_run_labels_by_its_command_line_without_the_grid():
    overrides = ["data.machine_type=fan", "data.section=0", "model.loss.w_rec=10", "trainer=cpu"]
    assert run_label(overrides) == "w_rec-10+trainer-cpu"
    assert run_label(["data.machine_type=fan"]) == "default"


def test_optuna_trials_carry_every_sampled_key_rounded_to_four_digits():
    sampled = {
        "model.loss.w_rec": "42.941825134551564",
        "model.loss.w_ano": "6.494351719359895",
        "model.loss.w_adv": "0.12345678",
        "model.optimizer_g.lr": "0.00047123456",
    }
    label = run_label([f"{k}={v}" for k, v in sampled.items()], sweep_keys=list(sampled))
    assert label == "w_rec-42.94+w_ano-6.494+w_adv-0.1235+lr-0.0004712"


def test_colliding_short_names_keep_what_tells_them_apart():
    keys = ["model.optimizer_g.lr", "model.optimizer_d.lr", "model.loss.w_rec"]
    assert short_keys(keys) == {
        "model.optimizer_g.lr": "optimizer_g.lr",
        "model.optimizer_d.lr": "optimizer_d.lr",
        "model.loss.w_rec": "w_rec",
    }
    # the names are made over the sweep's keys: a run names lr alike whichever keys it was given
    parts = label_parts(["model.optimizer_g.lr=0.001"], sweep_keys=keys)
    assert parts == [("optimizer_g.lr", "0.001")]


def test_display_values_round_decimals_and_keep_integers_and_text():
    assert [display_value(v) for v in ("10", "2.0", "0.0047", "1e-05", "55.33333", "cpu")] == [
        "10",
        "2",
        "0.0047",
        "1e-05",
        "55.33",
        "cpu",
    ]


def test_a_long_label_drops_whole_parts_never_cuts_one():
    overrides = [f"model.loss.w_{name}=123.456" for name in ("alpha", "beta", "gamma", "delta", "epsilon")]
    label = run_label(overrides, max_length=40)
    assert label == "w_alpha-123.5+w_beta-123.5+w_gamma-123.5"
    assert all(part.count("-") == 1 for part in label.split("+"))


def test_swept_keys_from_the_command_line_and_the_sweeper_params():
    task = ["model.loss.w_rec=10,50", "trainer=cpu", "data.section=0", "model=ganomaly_small,ae_baseline"]
    params = {"data.machine_type": "fan,valve", "data.section": "0,1,2", "model.optimizer_g.lr": "interval(1e-5, 1e-2)"}
    keys = swept_keys(task, params)
    assert sorted(keys) == ["data.machine_type", "model", "model.loss.w_rec", "model.optimizer_g.lr"]
    assert sweep_keys_override(["a.b", "c"]) == "sweep_keys=['a.b','c']"


def test_the_tally_counts_this_sweeps_runs_by_how_they_ended(tmp_path):
    started = time.time()

    def run(name: str, status: str | None, before: bool = False) -> None:
        folder = tmp_path / name
        (folder / ".hydra").mkdir(parents=True)
        (folder / ".hydra" / "overrides.yaml").write_text("[]")
        if status:
            (folder / "metrics.json").write_text(f'{{"status": "{status}"}}')
            if before:
                os.utime(folder / "metrics.json", (started - 100, started - 100))

    run("a", "completed")
    run("b", "completed", before=True)
    run("c", "failed")
    run("d", None)
    old = tmp_path / "old" / ".hydra" / "overrides.yaml"  # a run of an earlier sweep: not counted
    old.parent.mkdir(parents=True)
    old.write_text("[]")
    os.utime(old, (started - 100, started - 100))
    tally = sweep_tally(tmp_path, started - 1)
    assert tally == Counter(done=1, skipped=1, failed=1, unfinished=1)
    assert tally_line(tally, 125) == "sweep: 4 runs: 1 done, 1 skipped, 1 failed, 1 unfinished in 2 min 5 s"


def test_a_sweep_counts_from_its_start_by_the_file_systems_clock_not_runs_that_ended_just_before(tmp_path):
    """Two sweeps into one folder, the second started half a second after the first one's last run: the second's
    tally counts its own run only (one second of slack on time.time() counted the first sweep's run too)."""
    old = tmp_path / "old" / ".hydra" / "overrides.yaml"
    old.parent.mkdir(parents=True)
    old.write_text("[]")
    (tmp_path / "old" / "metrics.json").write_text('{"status": "completed"}')
    half_a_second_ago = time.time() - 0.5
    for path in (old, tmp_path / "old" / "metrics.json"):
        os.utime(path, (half_a_second_ago, half_a_second_ago))
    since = file_system_time(tmp_path)
    assert abs(since - time.time()) < 60 and not [p.name for p in tmp_path.iterdir() if p.name != "old"]
    new = tmp_path / "new" / ".hydra" / "overrides.yaml"
    new.parent.mkdir(parents=True)
    new.write_text("[]")
    (tmp_path / "new" / "metrics.json").write_text('{"status": "completed"}')
    assert sweep_tally(tmp_path, since) == Counter(done=1)
