"""``asd-ganomaly``: data and results commands beside the Hydra training app ``asd-train``.

Subcommands: ``synth`` (synthetic DCASE-layout dataset), ``download`` (official DCASE 2021 Task 2 archives),
``report`` (results table of one or several sweeps), ``score`` (score WAV files with a trained model),
``export`` (ONNX).
"""

from __future__ import annotations

import argparse
import functools
import logging
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .core.errors import CTRL_C_EXIT_CODE, SOME_INPUTS_FAILED, USER_ERROR_EXIT, UserError, error_line
from .data.dcase import MACHINE_TYPES


def _synth(args: argparse.Namespace) -> None:
    from .data.synth import GROUND_TRUTH, write_synthetic_dataset, write_synthetic_eval_dataset

    write = write_synthetic_eval_dataset if args.eval else write_synthetic_dataset
    try:
        root = _synth_set(write, args)
    except KeyboardInterrupt:
        logging.warning("%s is marked incomplete until the same command completes it", args.root)
        raise
    print(f"synthetic dataset written to {root}")
    if args.eval:
        print(f"its test clips carry no labels; the ground truth is in {root / GROUND_TRUTH}")


def _synth_set(write: Callable[..., Path], args: argparse.Namespace) -> Path:
    from .data.synth import EVAL_SECTIONS

    return write(
        args.root,
        machine_types=args.machines,
        sections=args.sections or (EVAL_SECTIONS if args.eval else (0, 1, 2)),
        train_clips=args.clips_per_section,
        target_train_clips=args.target_clips,
        test_clips=args.test_clips,
        seconds=args.seconds,
        severity=args.severity,
        seed=args.seed,
    )


def _download(args: argparse.Namespace) -> None:
    from .data.download import ZENODO_API, download, download_ground_truth

    if args.kind == "ground-truth":
        print(f"ready: {download_ground_truth(args.root, api_url=args.api_url or ZENODO_API)}")
        return
    folders = download(args.kind, args.root, args.machines, api_url=args.api_url or ZENODO_API)
    for folder in folders:
        print(f"ready: {folder}")


def _report(args: argparse.Namespace) -> None:
    from .results.markdown import render_summary
    from .results.report import log_report_to_wandb, report_files, save_report, sweep_tables

    files = report_files(args.sweep_dirs, args.out)  # refuses bad folders before any work
    tables = sweep_tables(files.folders)  # collected and bootstrapped once, for the files, the console and W&B
    save_report(tables, files)
    print(render_summary(tables))  # the per-run table stays in the file
    print(f"written: {files.csv_path} (per run and domain) and {files.md_path}")
    if args.wandb:
        log_report_to_wandb(files.csv_path.parent, tables, args.project, args.group)


def _score(args: argparse.Namespace) -> int:
    from .core.files import check_output
    from .inference.deployed import OnnxScorer
    from .inference.scoring import is_listed, listed_clips, score_files

    model_file = args.ckpt or args.onnx
    check_output(args.out, [model_file, *args.inputs], picked=is_listed)
    listed_clips(args.inputs)  # nothing to score: refused before the model is read
    if args.onnx:
        model = OnnxScorer(args.onnx)
    else:
        from .inference.checkpoint import load_detector  # torch: only for a checkpoint

        model = load_detector(args.ckpt, device=args.device)
    threshold = float(model.threshold) if args.threshold is None else args.threshold
    counts = score_files(
        model,
        args.inputs,
        args.out,
        batch_size=args.batch_size,
        threshold=args.threshold,
        num_workers=args.workers,
        progress=not args.no_progress,
        section=args.section,
    )
    decisions = (
        f"{counts['anomalies']} above the threshold {threshold:.6g}"
        if math.isfinite(threshold)
        else "no threshold, no decisions"
    )
    warned = f", {counts['warned']} with warnings (see the warnings column)" if counts["warned"] else ""
    print(f"scored {counts['scored']} clips ({decisions}){warned}, {counts['failed']} failed: {args.out}")
    return SOME_INPUTS_FAILED if counts["failed"] else 0  # the failed files have their error in their row


def _export(args: argparse.Namespace) -> None:
    from .core.files import check_output
    from .inference.checkpoint import load_detector
    from .inference.export import export_onnx

    check_output(args.onnx, [args.ckpt], flag="--onnx")
    path = export_onnx(load_detector(args.ckpt), args.onnx, include_features=args.include_features)
    print(f"exported {'waveform' if args.include_features else 'log-mel'} scorer to {path}")


def _submit(args: argparse.Namespace) -> None:
    from .results.challenge import write_submission

    parts = write_submission(args.sweep_dirs, args.out, allow_partial=args.allow_partial, force=args.force)
    print(f"submission of {len(parts)} machine type / section / domain parts ({2 * len(parts)} files) in {args.out}")


def _evaluate(args: argparse.Namespace) -> None:
    from .core.files import check_output
    from .results.challenge import evaluate, format_table, write_results

    if args.out:
        check_output(args.out, [args.submission, args.ground_truth])
    rows = evaluate(args.submission, args.ground_truth)
    print(format_table(rows))
    if args.out:
        print(f"results written to {write_results(rows, args.out)}")


def finite_float(text: str) -> float:
    """An argparse type: a finite number (``nan`` and ``inf`` are refused, not taken as "no value")."""
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``asd-ganomaly`` and its subcommands."""
    parser = argparse.ArgumentParser(prog="asd-ganomaly", description=__doc__.split("\n\n")[0].replace("``", ""))
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    with_defaults = functools.partial(argparse.ArgumentParser, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=with_defaults)

    synth = sub.add_parser("synth", help="write a synthetic dataset in the DCASE 2021 dev layout")
    synth.add_argument("root", help="folder to write <machine>/{train,source_test,target_test}/ into")
    synth.add_argument("--machines", nargs="+", default=list(MACHINE_TYPES), metavar="TYPE", help="machine types")
    synth.add_argument(
        "--sections", nargs="+", type=int, default=None, help="section numbers (default: 0 1 2; with --eval 3 4 5)"
    )
    synth.add_argument(
        "--eval",
        action="store_true",
        help="the evaluation-set layout: <machine>/train/ (additional training clips), <machine>/test/ with "
        "unlabelled names (section_03_source_test_0000.wav) and ground_truth/ground_truth_*.csv (the organisers' "
        "format)",
    )
    synth.add_argument(
        "--clips-per-section",
        type=int,
        default=1000,
        help="source normal training clips (1000: the DCASE size, about 29,000 clips and 9 GB for all machines at "
        "10 s; make demo uses 32)",
    )
    synth.add_argument("--target-clips", type=int, default=3, help="target normal training clips")
    synth.add_argument("--test-clips", type=int, default=100, help="per label and domain")
    synth.add_argument("--seconds", type=float, default=10.0, help="clip length")
    synth.add_argument("--severity", type=float, default=1.0, help="anomaly strength (0 = none, 3 = obvious)")
    synth.add_argument("--seed", type=int, default=0, help="random seed of the sounds")
    synth.set_defaults(func=_synth)

    dl = sub.add_parser("download", help="download and unpack the DCASE 2021 Task 2 archives from Zenodo")
    dl.add_argument(
        "kind", choices=["dev", "additional", "eval", "ground-truth"], help="ground-truth: the evaluation set's labels"
    )
    dl.add_argument(
        "--root", required=True, help="writes ROOT/dev_data/<machine>, ROOT/eval_data/<machine> or ROOT/ground_truth"
    )
    dl.add_argument("--machines", nargs="+", default=None, metavar="TYPE", help="default: all seven (not ground-truth)")
    dl.add_argument("--api-url", default=None, help="Zenodo API base URL (a mirror)")
    dl.set_defaults(func=_download)

    report = sub.add_parser(
        "report", help="results.csv and results.md of one or several sweeps side by side, beside the report's tables"
    )
    report.add_argument("sweep_dirs", nargs="+", metavar="SWEEP_DIR", help="sweep folders (their runs together)")
    report.add_argument("--out", default=None, help="output folder (default: the sweep folder, when only one)")
    report.add_argument(
        "--wandb",
        action="store_true",
        help="also log to W&B: one report run per setting, in its training runs' group, with its config",
    )
    report.add_argument("--project", default="asd-ganomaly", help="W&B project")
    report.add_argument("--group", default=None, help="W&B group of every report run (default: the training runs')")
    report.set_defaults(func=_report)

    score = sub.add_parser("score", help="score WAV files or folders with a trained model")
    model_file = score.add_mutually_exclusive_group(required=True)
    model_file.add_argument("--ckpt", help="a run's model.ckpt")
    model_file.add_argument("--onnx", help="an exported .onnx file (asd-ganomaly export): scores and decides alone")
    score.add_argument("inputs", nargs="+", metavar="FILES_OR_DIRS")
    score.add_argument("--out", default="scores.csv")
    score.add_argument("--threshold", type=finite_float, default=None, help="override the calibrated threshold")
    score.add_argument("--batch-size", type=int, default=32)
    score.add_argument("--device", default="cpu", help="cpu or cuda (--ckpt; --onnx runs on the CPU)")
    score.add_argument("--workers", type=int, default=2, help="threads reading WAV files")
    score.add_argument("--no-progress", action="store_true", help="no progress bar")
    score.add_argument(
        "--section", type=int, default=None, help="section of every clip, for section classifiers (default: from names)"
    )
    score.set_defaults(func=_score)

    export = sub.add_parser("export", help="export a trained model's scorer to ONNX")
    export.add_argument("--ckpt", required=True)
    export.add_argument("--onnx", required=True, help="output .onnx file")
    export.add_argument("--include-features", action="store_true", help="take waveforms instead of log-mel")
    export.set_defaults(func=_export)

    submit = sub.add_parser("submit", help="DCASE 2021 Task 2 submission files (scores, decisions) from sweeps")
    submit.add_argument("sweep_dirs", nargs="+", metavar="SWEEP_DIR")
    submit.add_argument("--out", required=True, help="submission folder to write")
    submit.add_argument("--allow-partial", action="store_true", help="leave out failed or unfinished runs")
    submit.add_argument(
        "--force", action="store_true", help="remove the submission files of another submission in --out first"
    )
    submit.set_defaults(func=_submit)

    evaluate = sub.add_parser("evaluate", help="official metrics of a submission folder against ground-truth files")
    evaluate.add_argument("submission", metavar="SUBMISSION_DIR")
    evaluate.add_argument("--ground-truth", required=True, help="folder of ground_truth_<machine>_section_<XX>_*.csv")
    evaluate.add_argument("--out", default=None, help="also write the results as CSV")
    evaluate.set_defaults(func=_evaluate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``asd-ganomaly``; returns the exit status (README's table): 0 done, 1 some inputs failed (the others
    written: ``score``) or a failure that is no bug (a download or OS error: one line), 2 a user error (a bad
    argument, file or folder: one line), 130 Ctrl-C."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        status = args.func(args)
    except KeyboardInterrupt:  # Ctrl-C: what the command says of it is logged; no traceback
        print(f"asd-ganomaly {args.command}: interrupted", file=sys.stderr)
        return CTRL_C_EXIT_CODE
    except UserError as error:  # what the user can fix: one line, exit 2 (as asd-train and argparse)
        print(error_line(f"asd-ganomaly {args.command}", error), file=sys.stderr)
        return USER_ERROR_EXIT
    except (ValueError, OSError, RuntimeError) as error:  # a failure of another kind: one line, exit 1
        print(error_line(f"asd-ganomaly {args.command}", error), file=sys.stderr)
        return 1
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
