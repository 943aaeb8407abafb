"""Detection-quality benchmark (``make quality``): which detector detects, on synthetic data, over seeds.

Writes an ``asd-ganomaly synth`` dataset at the default severity (all 7 machine types), then trains and tests,
through real ``asd-train`` multiruns (one process per model and seed), four detectors:

* ``ganomaly_demo``: GANomaly with ``experiment=demo`` as it is in ``conf/`` (model, epochs, batch size);
* ``ganomaly_wide``: the same with every channel count doubled (a larger model that still trains on a CPU);
* ``ganomaly_window``: ``model=ganomaly_window`` with ``experiment=demo``'s settings, trained on 32-frame windows
  for 26 epochs, twice the demo's 13 (a window step costs about half a whole-clip step);
* ``ae_baseline`` and ``knn_baseline`` on the same data, trainer settings and sections;
* ``mobilenetv2_baseline``: the official MobileNetV2 section classifier, one model per machine type over all
  the sections (``data.section=all``) on the same data, trainer settings and seeds, tested per section like the
  others. A classifier of sections needs two: ``--quick`` then takes sections 0 and 1 for every model.

Every model that trains (all but ``knn_baseline``) is also run stopped after its first optimizer step, its
*one-step self*: the same model, data, sections and seed with ``trainer.max_epochs=1`` and
``+trainer.limit_train_batches=1`` (one batch: one generator and one discriminator update for GANomaly), and
for the AE and MobileNetV2, which step once per chunk of a batch's vectors or windows, one chunk as large as
the batch. These runs are named ``<model>_onestep`` (task name and ``model.name``), so that they are kept apart
from the trained ones; ``--no-one-step`` leaves them out.

Model settings are read from ``conf/`` when the runs start, so a changed demo config is benchmarked as it is.
Results are found by globbing ``metrics.json`` below the output folder. Printed and written to
``<out>/quality.md``: per model the official score (its configured score) as mean and std over seeds with its
learned gain, the official score of every score choice, the learned gain of every score choice, the one-step
models' official scores, per machine type hmean AUC/pAUC, and each seed's official score with its 95 %
bootstrap interval over the test clips. The learned gain is the official score of the trained model minus that
of its one-step self, per seed, as mean and std over seeds; one that is not above zero reads "(no gain)": the
training did not make that score detect better than the weights one step from their initialisation. Clips are
4 s long (120 frames) instead of the demo's 10 s, so that the 168 per-section runs and the 126 one-step ones
(about 12 s of CPU each, start-up and testing) fit in under an hour on 2 CPU cores; ``--quick`` takes one section
and one seed.

    python benchmarks/quality.py --quick          # a few minutes on 2 CPU cores
    python benchmarks/quality.py --jobs 2         # 2 sections x 3 seeds, two processes at a time
    python benchmarks/quality.py --models ganomaly_demo --override model.loss.w_adv=10   # one setting of a sweep
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from statistics import mean, stdev

from hydra import compose, initialize_config_dir

from asd_ganomaly.data.dcase import DOMAINS, MACHINE_TYPES
from asd_ganomaly.evaluation.metrics import harmonic_mean, official_score
from asd_ganomaly.results.tables import SCORE_NAMES, mean_std, official_interval
from asd_ganomaly.train import CONF_DIR

MODELS = ("ganomaly_demo", "ganomaly_wide", "ganomaly_window", "ae_baseline", "knn_baseline")
PER_MACHINE_TYPE = ("mobilenetv2_baseline",)  # trained on all sections of a machine type at once
NOT_TRAINED = ("knn_baseline",)  # fitted, not trained: no one-step self
ONE_STEP = "_onestep"  # suffix of a one-step run's model name and task name
CHUNKED = {"ae_baseline": "model.vectors_per_batch", "mobilenetv2_baseline": "model.windows_per_batch"}
"""Models whose training step takes several optimizer steps, one per chunk of this size of the batch's vectors."""
QUICK = {"sections": [0], "seeds": [0], "seconds": 4.0, "frames": 120}
FULL = {"sections": [0, 1], "seeds": [0, 1, 2], "seconds": 4.0, "frames": 120}


def model_overrides(label: str) -> list[str]:
    """Overrides on top of ``experiment=demo`` that make each benchmarked model; ``ganomaly_wide`` doubles the
    demo model's channel counts as composed from ``conf/`` (the output channel of the decoder stays 1)."""
    if label in ("ae_baseline", "knn_baseline"):
        return [f"model={label}"]
    if label == "ganomaly_demo":
        return ["model.name=ganomaly_demo"]
    if label == "ganomaly_window":  # a step on 4 windows of 32 frames costs about half a whole-clip step
        return ["model=ganomaly_window", "trainer.max_epochs=26"]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        net = compose(config_name="train", overrides=["experiment=demo"]).model.net
    double = [2 * c for c in net.encoder.channels], [2 * c for c in net.decoder.channels[:-1]]
    return [
        "model.name=ganomaly_wide",
        f"model.net.encoder.channels=[{','.join(map(str, double[0]))}]",
        f"model.net.decoder.channels=[{','.join(map(str, [*double[1], net.decoder.channels[-1]]))}]",
        f"model.net.discriminator.channels=[{','.join(str(2 * c) for c in net.discriminator.channels)}]",
    ]


def per_machine_type_overrides(label: str, mode: dict) -> list[str]:
    """Overrides on top of ``experiment=demo`` of a model trained per machine type (``train_command`` gives it
    ``data.section=all``): the model and the sections it classifies, those of the benchmark's data."""
    sections = ",".join(map(str, mode["sections"]))
    classes = [f"model.sections=[{sections}]", f"model.net.n_sections={len(mode['sections'])}"]
    return [f"model={label}", *classes]


def sections_for(models: list[str], mode: dict) -> dict:
    """``mode`` with two sections at least when a section classifier is among ``models``, else as it is."""
    if any(m in PER_MACHINE_TYPE for m in models) and len(mode["sections"]) < 2:
        return {**mode, "sections": sorted({*mode["sections"], 0, 1})}
    return mode


def synthesize(root: Path, mode: dict, machines: list[str]) -> None:
    """The synthetic dataset at the default severity, the demo's size; written once per parameter set."""
    args = ["--machines", *machines, "--sections", *map(str, mode["sections"]), "--clips-per-section", "32"]
    args += ["--test-clips", "10", "--seconds", str(mode["seconds"])]
    stamp = root / ".quality-synth"
    if stamp.exists() and stamp.read_text() == json.dumps(args):
        return
    print(f"writing the synthetic dataset to {root}", flush=True)
    command = [sys.executable, "-m", "asd_ganomaly.cli", "synth", str(root), *args]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stamp.write_text(json.dumps(args))


def trains(label: str) -> bool:
    """Whether the model ``label`` takes optimizer steps, and so has a one-step self to compare with."""
    return label not in NOT_TRAINED


def one_step_overrides(label: str, mode: dict) -> list[str]:
    """Overrides that stop a run of ``label`` after one optimizer step: one epoch of one batch, and for a model
    in :data:`CHUNKED` one chunk as large as the batch's frames (its vectors or windows are fewer)."""
    steps = ["trainer.max_epochs=1", "+trainer.limit_train_batches=1", f"model.name={label}{ONE_STEP}"]
    if label not in CHUNKED:
        return steps
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        frames = [f"data.features.frames={mode['frames']}"] if mode["frames"] else []
        cfg = compose(config_name="train", overrides=["experiment=demo", *frames]).data
    return [*steps, f"{CHUNKED[label]}={cfg.batch_size * cfg.features.frames}"]


def train_command(
    label: str,
    seed: int,
    mode: dict,
    machines: list[str],
    data: Path,
    out: Path,
    one_step: bool = False,
    overrides: Sequence[str] = (),
) -> list[str]:
    """One asd-train multirun: one model and seed over every machine type and section, one run at a time (``--jobs``
    runs multiruns side by side, so the demo's parallel launcher is replaced by the basic one); with ``one_step``
    the model's one-step self, named ``<label>_onestep``; ``overrides`` (Hydra's syntax) come last."""
    per_type = label in PER_MACHINE_TYPE
    model = per_machine_type_overrides(label, mode) if per_type else model_overrides(label)
    if one_step:
        model = [o for o in model if not o.startswith("model.name=")] + one_step_overrides(label, mode)
    command = [sys.executable, "-m", "asd_ganomaly.train", "experiment=demo", "hydra/launcher=basic", *model]
    command += [
        f"data.root={data}",
        f"data.machine_type={','.join(machines)}",
        f"data.section={'all' if per_type else ','.join(map(str, mode['sections']))}",
        f"seed={seed}",
        f"task_name={label}{ONE_STEP if one_step else ''}_seed{seed}",
        f"paths.log_dir={out / 'runs'}",
        f"paths.cache_dir={out / 'cache'}",
        "logger=csv",
        "plots=false",
        "data.progress=false",
        "data.num_workers=1",
        "callbacks.progress_bar.refresh_rate=0",
        "trainer.enable_model_summary=false",
    ]
    if mode["frames"]:
        command += [f"data.features.seconds={mode['seconds']}", f"data.features.frames={mode['frames']}"]
    return [*command, *overrides]


def commands_for(
    models: list[str],
    mode: dict,
    machines: list[str],
    data: Path,
    out: Path,
    one_step: bool = True,
    overrides: Sequence[str] = (),
) -> list[list[str]]:
    """Every model's multirun per seed, followed (``one_step``) by its one-step self's when it trains; ``overrides``
    are added to every one."""
    return [
        train_command(m, s, mode, machines, data, out, one_step=o, overrides=overrides)
        for s in mode["seeds"]
        for m in models
        for o in ((False, True) if one_step and trains(m) else (False,))
    ]


def run_all(commands: list[list[str]], jobs: int, log_dir: Path) -> None:
    """Run the multiruns, ``jobs`` at a time, each on one thread; their output goes to log files. Each one's
    CPU time is printed beside its wall time: on a shared machine it is the figure that does not depend on load."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    log_dir.mkdir(parents=True, exist_ok=True)

    def run(command: list[str]) -> None:
        name = next(a for a in command if a.startswith("task_name=")).split("=")[1]
        started = time.perf_counter()
        with open(log_dir / f"{name}.log", "w") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
            _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode:
            raise subprocess.CalledProcessError(process.returncode, command)
        cpu = usage.ru_utime + usage.ru_stime
        print(f"  {name}: {time.perf_counter() - started:.0f} s wall, {cpu:.0f} s CPU", flush=True)

    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(run, commands))


def collect(out: Path) -> dict[str, dict[int, list[dict]]]:
    """Completed runs' metrics.json records by model and seed (failed runs stop the benchmark)."""
    runs: dict[str, dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for path in sorted(out.glob("runs/**/metrics.json")):
        record = json.loads(path.read_text())
        if record["status"] != "completed":
            raise RuntimeError(f"{path.parent}: {record['error']}")
        record["run_dir"] = str(path.parent)
        runs[record["model"]][int(record["config"]["seed"])] += per_section_records(record)
    return runs


def per_section_records(record: dict) -> list[dict]:
    """A run's metrics.json as records of one section each: a per-machine-type run (``data.section=all``) gives
    one per section, shaped like a per-section run's (``section``, ``metrics`` and ``scores`` per domain)."""
    if "sections" not in record:
        return [record]
    run = {key: value for key, value in record.items() if key != "sections"}
    return [
        {**run, "section": int(s), "metrics": {d: v[d] for d in DOMAINS}, "scores": v.get("scores", {})}
        for s, v in sorted(record["sections"].items())
    ]


def _official(records: list[dict], score: str | None = None) -> float:
    pairs = [(r["scores"][score] if score else r["metrics"])[d] for r in records for d in ("source", "target")]
    return official_score([p["auc"] for p in pairs], [p["pauc"] for p in pairs])


def _interval(records: list[dict]) -> tuple[float, float] | None:
    rows = [
        {"run_dir": r["run_dir"], "section": r.get("section"), "domain": d, "status": "completed"}
        for r in records
        for d in ("source", "target")
    ]
    return official_interval(rows)


def summarise(runs: dict[str, dict[int, list[dict]]]) -> dict[str, dict]:
    """Per model: official score per seed and its interval, every score choice's, per machine hmeans."""
    summary = {}
    for model, by_seed in runs.items():
        seeds = sorted(by_seed)
        first = by_seed[seeds[0]][0]
        choices = list(first["scores"])
        machines: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for records in by_seed.values():
            for machine in sorted({r["machine_type"] for r in records}):
                pairs = [r["metrics"][d] for r in records if r["machine_type"] == machine for d in ("source", "target")]
                machines[machine].append(
                    (harmonic_mean(p["auc"] for p in pairs), harmonic_mean(p["pauc"] for p in pairs))
                )
        summary[model] = {
            "score": first["config"]["model"].get("score") or choices[0],
            "seeds": {s: (_official(by_seed[s]), _interval(by_seed[s])) for s in seeds},
            "choices": {c: [_official(by_seed[s], c) for s in seeds] for c in choices},
            "machines": {m: tuple(mean(v[i] for v in values) for i in (0, 1)) for m, values in machines.items()},
            "runs": sum(len(v) for v in by_seed.values()),
        }
    return summary


def _mean_std(values: list[float]) -> str:
    """Mean ± sample standard deviation (0 for one seed)."""
    spread = mean_std(values)
    return f"{spread.mean:.3f} ± {spread.std:.3f}"


def per_seed(entry: dict, choice: str | None = None) -> dict[int, float]:
    """A model's official score per seed (a :func:`summarise` entry): of its configured score, or of ``choice``."""
    if choice is None:
        return {seed: value for seed, (value, _) in entry["seeds"].items()}
    return dict(zip(entry["seeds"], entry["choices"].get(choice, []), strict=False))


def learned_gain(trained: dict, one_step: dict | None, choice: str | None = None) -> list[float]:
    """Per seed that both ran, the official score of the trained model minus that of its one-step self (of the
    configured score, or of ``choice``); empty without a one-step self or the score choice."""
    if one_step is None:
        return []
    after, before = per_seed(trained, choice), per_seed(one_step, choice)
    return [after[seed] - before[seed] for seed in sorted(after.keys() & before.keys())]


def gain_cell(gains: list[float]) -> str:
    """Mean ± std of the per-seed gains, signed, "(no gain)" when the mean is not above zero; "-" for none."""
    if not gains:
        return "-"
    text = f"{mean(gains):+.3f} ± {stdev(gains) if len(gains) > 1 else 0.0:.3f}"
    return text if mean(gains) > 0 else f"{text} (no gain)"


def _main_table(summary: dict[str, dict], models: list[str]) -> list[str]:
    """The main table: official score of the configured score, its learned gain, each seed's interval."""
    lines = ["## Official score (its configured score), mean ± std over seeds", ""]
    columns = [
        "model",
        "score",
        "runs",
        "official score",
        "learned gain",
        "per seed (95 % bootstrap interval over test clips)",
    ]
    lines += ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
    for m in models:
        s = summary[m]
        seeds = ", ".join(
            f"{seed}: {v:.3f} ({iv[0]:.3f}-{iv[1]:.3f})" if iv else f"{seed}: {v:.3f}"
            for seed, (v, iv) in s["seeds"].items()
        )
        gain = gain_cell(learned_gain(s, summary.get(m + ONE_STEP)))
        official = _mean_std([v for v, _ in s["seeds"].values()])
        lines.append(f"| {m} | {s['score']} | {s['runs']} | {official} | {gain} | {seeds} |")
    note = "Learned gain: official score minus that of the same model, data and seed stopped after one optimizer step"
    note += " (its one-step self), mean ± std over seeds of the per-seed differences; - without one (knn_baseline"
    note += " does not train)."
    return [*lines, "", note]


def _choice_table(title: str, rows: dict[str, list[str]]) -> list[str]:
    """A table titled ``title`` of one row of cells per model, a column per score choice."""
    lines = ["", f"## {title}", "", "| model | " + " | ".join(SCORE_NAMES) + " |"]
    lines.append("|---|" + "---|" * len(SCORE_NAMES))
    return lines + [f"| {m} | " + " | ".join(cells) + " |" for m, cells in rows.items()]


def _choice_tables(summary: dict[str, dict], models: list[str]) -> list[str]:
    """Per score choice: official scores, then (with one-step runs) learned gains and one-step scores."""

    def official(entry: dict, name: str) -> str:
        return _mean_std(entry["choices"][name]) if name in entry["choices"] else "-"

    one_step = [m + ONE_STEP for m in models if m + ONE_STEP in summary]
    title = "Official score of every score choice, mean ± std over seeds"
    lines = _choice_table(title, {m: [official(summary[m], n) for n in SCORE_NAMES] for m in models})
    if not one_step:
        return lines
    gains = {
        m: [gain_cell(learned_gain(summary[m], summary[m + ONE_STEP], n)) for n in SCORE_NAMES]
        for m in models
        if m + ONE_STEP in summary
    }
    title = "Learned gain of every score choice: trained minus one-step official score, mean ± std over seeds"
    lines += _choice_table(title, gains)
    title = "One-step models (stopped after one optimizer step): official score of every score choice"
    return lines + _choice_table(title, {m: [official(summary[m], n) for n in SCORE_NAMES] for m in one_step})


def _machine_table(summary: dict[str, dict], models: list[str]) -> list[str]:
    """hmean AUC / pAUC per machine type of the configured score."""
    machines = [t for t in MACHINE_TYPES if any(t in summary[m]["machines"] for m in models)]
    lines = ["", "## hmean AUC / pAUC per machine type (configured score, mean over seeds)", ""]
    lines += ["| model | " + " | ".join(machines) + " |", "|---|" + "---|" * len(machines)]
    for m in models:
        cells = [f"{summary[m]['machines'][t][0]:.3f} / {summary[m]['machines'][t][1]:.3f}" for t in machines]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines


def to_markdown(summary: dict[str, dict], header: list[str]) -> str:
    """The benchmark's tables as markdown; one-step models only in their own table and in the learned gains."""
    models = [m for m in MODELS if m in summary] + [m for m in summary if m not in MODELS]
    models = [m for m in models if not m.endswith(ONE_STEP)]
    lines = [*header, "", *_main_table(summary, models), *_choice_tables(summary, models)]
    return "\n".join(lines + _machine_table(summary, models)) + "\n"


def _cpu() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), platform.machine())


def main(argv: list[str] | None = None) -> None:
    """Synthesise, train and test every model and seed, print and write the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one section, one seed: a few minutes")
    parser.add_argument("--out", default=None, help="output folder (default outputs/quality[-quick])")
    parser.add_argument("--data", default=None, help="synthetic data folder (default data/quality[-quick])")
    parser.add_argument("--jobs", type=int, default=2, help="multirun processes at a time, one thread each")
    parser.add_argument(
        "--models", nargs="+", default=[*MODELS, *PER_MACHINE_TYPE], choices=[*MODELS, *PER_MACHINE_TYPE]
    )
    parser.add_argument("--machines", nargs="+", default=list(MACHINE_TYPES))
    parser.add_argument("--no-one-step", action="store_true", help="skip the one-step runs (no learned gain)")
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Hydra override added to every asd-train run (repeatable), e.g. model.loss.w_adv=10",
    )
    args = parser.parse_args(argv)
    mode, suffix = (QUICK, "-quick") if args.quick else (FULL, "")
    if (widened := sections_for(args.models, mode)) is not mode:
        print(f"a section classifier is benchmarked: sections {widened['sections']} for every model", flush=True)
        mode = widened
    out = Path(args.out or f"outputs/quality{suffix}").resolve()
    data = Path(args.data or f"data/quality{suffix}").resolve()
    started = time.perf_counter()
    synthesize(data, mode, args.machines)
    commands = commands_for(
        args.models, mode, args.machines, data, out, one_step=not args.no_one_step, overrides=args.override
    )
    run_all(commands, args.jobs, out / "logs")
    summary = summarise(collect(out))
    header = [
        "# Detection quality on synthetic data",
        "",
        f"`python benchmarks/quality.py {' '.join(argv if argv is not None else sys.argv[1:])}`, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {_cpu()}, {os.cpu_count()} CPU cores, {args.jobs} processes "
        f"of one thread, {time.perf_counter() - started:.0f} s in all.",
        f"Data: `asd-ganomaly synth` at the default severity (not the paper's data), {len(args.machines)} machine "
        f"types, sections {mode['sections']}, {mode['seconds']:g} s clips, 32 + 3 training clips and 40 test clips "
        f"per section; seeds {mode['seeds']} (training seeds; the data is the same for every seed).",
    ]
    text = to_markdown(summary, header)
    (out / "quality.md").write_text(text)
    print(text)
    print(f"written: {out / 'quality.md'}")


if __name__ == "__main__":
    main()
