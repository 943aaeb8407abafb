"""Checks made before any work: the configuration's values, then the data a run will read.

:func:`validate_config` and :func:`check_data` (called in that order by ``train()``) raise a
:class:`~asd_ganomaly.core.errors.UserError` (``ConfigError``, ``DatasetError`` or ``AudioError``) whose one-line
message says what to change, before W&B starts, a run folder is written or an epoch is trained.
"""

from __future__ import annotations

import difflib
import logging
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..core.errors import UserError
from ..data.audio import AudioError, check_header
from ..data.dcase import (
    ALL_SECTIONS,
    SCOPES,
    ClipInfo,
    DatasetError,
    check_test_labels,
    list_clips,
    parse_section,
    train_clips,
)
from ..data.synth import is_incomplete
from .identity import SECTION_KEY, config_section
from .lock import LOCK_FILE

log = logging.getLogger(__name__)
_ABSENT = object()


class ConfigError(UserError, ValueError):
    """A configuration value out of its range, or a required one not set."""


def _get(cfg: DictConfig, key: str) -> Any:
    """The resolved value at ``key``; ``_ABSENT`` when missing, unset (``???``) or unresolvable."""
    try:
        value = OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=True)
    except OmegaConfBaseException:
        return _ABSENT
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig) else value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _at_least(cfg: DictConfig, key: str, low: int, optional: bool = False) -> list[str]:
    value = _get(cfg, key)
    if value is _ABSENT or (optional and value is None):
        return [] if optional else [f"{key} is not set"]
    if not _is_int(value) or value < low:
        return [f"{key} must be an integer >= {low}, not {value!r}"]
    return []


def _positive(cfg: DictConfig, key: str) -> list[str]:
    value = _get(cfg, key)
    if value is _ABSENT:
        return [f"{key} is not set"]
    return [] if _is_number(value) and value > 0 else [f"{key} must be a number > 0, not {value!r}"]


def _data_problems(cfg: DictConfig) -> list[str]:
    problems = [
        f"{key} is not set" for key in ("data.root", "data.machine_type") if _get(cfg, key) in (_ABSENT, None, "")
    ]
    if str(config_section(cfg, _ABSENT)).lower() != ALL_SECTIONS:  # "all": one model per machine type
        problems += _at_least(cfg, SECTION_KEY, 0)
    problems += _at_least(cfg, "data.batch_size", 1) + _at_least(cfg, "data.eval_batch_size", 1)
    problems += _at_least(cfg, "data.num_workers", 0) + _at_least(cfg, "data.max_train_clips", 1, optional=True)
    if _get(cfg, "data.on_bad_file") not in ("error", "skip"):
        problems.append(f"data.on_bad_file must be 'error' or 'skip', not {_get(cfg, 'data.on_bad_file')!r}")
    for name in ("sample_rate", "n_fft", "hop_length", "n_mels"):
        problems += _at_least(cfg, f"data.features.{name}", 1)
    problems += _positive(cfg, "data.features.seconds") + _at_least(cfg, "data.features.frames", 1, optional=True)
    return problems


def _learning_rates(node: Any, prefix: str) -> list[tuple[str, Any]]:
    """Every ``lr`` key below ``node`` (a plain container), with its dotted path."""
    if not isinstance(node, Mapping):
        return []
    found = [(f"{prefix}.lr", node["lr"])] if "lr" in node else []
    for key, child in node.items():
        found += _learning_rates(child, f"{prefix}.{key}")
    return found


def _model_problems(cfg: DictConfig) -> list[str]:
    model = _get(cfg, "model")
    if not isinstance(model, Mapping):
        return ["model is not set or cannot be resolved"]
    problems = [
        f"{key} must be a number > 0, not {lr!r}"
        for key, lr in _learning_rates(model, "model")
        if not (_is_number(lr) and lr > 0)
    ]
    weights = {k: v for k, v in (model.get("loss") or {}).items() if k.startswith("w_")}
    bad = [f"model.loss.{k} must be a number >= 0, not {v!r}" for k, v in weights.items() if not _is_number(v) or v < 0]
    if weights and not bad and not any(weights.values()):
        bad.append(f"the loss weights {sorted(weights)} are all zero: nothing would be trained")
    scope = model.get("scope", "section")
    if scope not in SCOPES:
        problems.append(f"model.scope must be one of {list(SCOPES)}, not {scope!r}")
    quantile = model.get("threshold_quantile")
    if quantile is not None and not (_is_number(quantile) and 0 < quantile < 1):
        problems.append(f"model.threshold_quantile must be between 0 and 1, not {quantile!r}")
    return problems + bad


def _trainer_problems(cfg: DictConfig) -> list[str]:
    epochs = _get(cfg, "trainer.max_epochs")
    if not _is_int(epochs) or epochs < 1:
        return [
            f"trainer.max_epochs must be an integer >= 1, not {epochs if epochs is not _ABSENT else 'unset'!r} "
            "(0 would record an untrained model, -1 would train forever)"
        ]
    return []


def validate_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` listing every value out of range (batch sizes and epochs >= 1, loss weights
    >= 0 and not all zero, learning rates > 0, feature parameters, an integer seed >= 0, required keys)."""
    problems = _data_problems(cfg) + _trainer_problems(cfg) + _model_problems(cfg) + _at_least(cfg, "seed", 0)
    value = _get(cfg, "min_free_disk_gb")
    if value is not _ABSENT and not (_is_number(value) and value >= 0):
        problems.append(f"min_free_disk_gb must be a number >= 0, not {value!r}")
    if problems:
        raise ConfigError("invalid configuration: " + "; ".join(problems))


def usable_clips(clips: list[ClipInfo], skip: bool) -> list[ClipInfo]:
    """The clips whose WAV header is readable, plausible and complete (headers only, but a float file's samples
    read once for NaN and infinity).

    Unusable clips raise one :class:`AudioError` that names them, or with ``skip`` are dropped with a warning.
    """
    bad: list[str] = []
    good = []
    for clip in clips:
        try:
            check_header(clip.path)
        except AudioError as error:
            bad.append(str(error))
        else:
            good.append(clip)
    if bad and not skip:
        shown = "; ".join(bad[:3]) + (f"; and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise AudioError(f"{len(bad)} of {len(clips)} clips cannot be used (data.on_bad_file=skip drops them): {shown}")
    if bad:
        log.warning("%d of %d clips will be skipped: %s", len(bad), len(clips), "; ".join(bad[:3]))
    return good


def check_data(data: DictConfig | Mapping) -> tuple[list[ClipInfo], list[ClipInfo]]:
    """List and check the training and test clips of the configured section before training starts.

    Raises :class:`DatasetError` for a missing root, machine, section or label, :class:`AudioError` for an
    unusable file (unless ``on_bad_file`` is ``skip``). Returns the usable training and test clips.
    """
    root, machine, section = data["root"], data["machine_type"], parse_section(data["section"])
    if is_incomplete(root):
        raise DatasetError(
            f"{root} is a synthetic set that asd-ganomaly synth has not finished writing (interrupted?): run the "
            "same synth command again to complete it"
        )
    which = "every section" if section is None else f"section {section:02d}"
    skip = data.get("on_bad_file", "error") == "skip"
    train = train_clips(root, machine, section, list(data.get("extra_train_roots") or []))
    if not train:
        raise DatasetError(f"no normal training clips of {machine} {which} under {root}")
    train = usable_clips(train[: data.get("max_train_clips") or None], skip)
    test = usable_clips(list_clips(root, machine, section, "test"), skip)
    if not train or not test:
        raise DatasetError(f"no usable {'training' if not train else 'test'} clips of {machine} {which}")
    if not check_test_labels(test):
        log.info("the test clips of %s %s carry no labels: they are scored and decided, no AUC", machine, which)
    log.info("data checked: %d training and %d test clips of %s %s", len(train), len(test), machine, which)
    return train, test


def check_selection(select_on_test: bool, test: list[ClipInfo]) -> None:
    """Refuse ``select_on_test`` (model selection on the test AUC) for test clips without labels."""
    if select_on_test and not any(c.is_labelled for c in test):
        raise ConfigError("select_on_test=true selects on the test AUC, but the test clips carry no labels")


def key_hint(cfg: DictConfig, key: str) -> str | None:
    """For a dotted key that ``cfg`` lacks, the closest key it has: ``model.loss.w_recc`` -> ``model.loss.w_rec``
    (the first missing part matched among its siblings, the rest kept); None when the key exists or nothing is
    close."""
    node: Any = cfg
    parts = key.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, DictConfig):
            return None
        if part not in node:
            close = difflib.get_close_matches(part, [str(k) for k in node], n=1, cutoff=0.6)
            return ".".join([*parts[:i], close[0], *parts[i + 1 :]]) if close else None
        node = node._get_node(part)
    return None


def unknown_key_hints(cfg: DictConfig, overrides: Iterable[str]) -> list[str]:
    """``did you mean`` lines for the command line's ``key=value`` overrides whose key ``cfg`` lacks (a ``+key``
    adds one on purpose; Hydra's own keys are Hydra's)."""
    hints = []
    for override in overrides:
        key = override.split("=", 1)[0]
        if "=" not in override or key.startswith(("+", "~", "-", "hydra")) or "/" in key or "@" in key:
            continue
        if (hint := key_hint(cfg, key)) is not None:
            hints.append(f"{key} is not a config key: did you mean {hint}?")
    return hints


def discard_unused_run_dir(out: Path, keep: Path | None = None) -> bool:
    """Remove ``out`` when it holds nothing but what Hydra writes at start (``.hydra/`` and ``*.log``) and the
    run lock, so a run refused before any work leaves no folder that a report would list; then its parents
    that it leaves empty, up to ``keep`` (the log folder; not removed). Returns True when removed."""
    if not out.is_dir():
        return False
    entries = list(out.iterdir())
    hydra_files = {"config.yaml", "hydra.yaml", "overrides.yaml"}
    for entry in entries:
        if entry.name == ".hydra" and entry.is_dir():
            if not {p.name for p in entry.iterdir()} <= hydra_files:
                return False
        elif not (entry.is_file() and (entry.suffix == ".log" or entry.name == LOCK_FILE)):
            return False
    for entry in entries:
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    out.rmdir()
    _remove_empty_parents(out, keep)
    return True


def _remove_empty_parents(out: Path, keep: Path | None) -> None:
    """The empty folders above ``out`` (its setting, model, task folders) up to ``keep``, which stays."""
    if keep is None:
        return
    keep = keep.resolve()
    parent = out.resolve().parent
    while parent != keep and keep in parent.parents and not any(parent.iterdir()):
        parent.rmdir()
        parent = parent.parent
