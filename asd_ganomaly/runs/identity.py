"""A run's identity: the resolved config minus the keys that cannot change its result, its short hash, and a
readable label of what sets it apart: in a sweep the keys the sweep varies, in a single run the command line's
overrides (short key names, values rounded for display; the hash keeps the exact config).

Run folders are ``<log_dir>/<task>/<model>/<label>-<hash>/<machine>_sec<section>``: two configs that differ in
anything that changes a result (loss weights, optimizer, features, epochs, seed, data root...) never share a
folder, and the same command finds its own folder again (to resume or to skip a finished run). The keys left
out are listed in ``identity_ignore`` (``conf/train.yaml``).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..core.errors import UserError
from ..core.files import plain_name
from ..data.dcase import section_key, sweep_sections

RUN_CONFIG_FILE = "config.yaml"
OVERRIDES_FILE = "overrides.txt"
SECTION_KEY = "data.section"
"""Where a run's config names its section: a number, or ``all`` for every section of a machine type."""
GRID_KEYS = ("data.machine_type", SECTION_KEY)
SWEEP_KEYS = "sweep_keys"
"""The config key that lists, in a sweep's jobs, the keys the sweep varies (null in a single run)."""
# overrides that are already in the folder path (task, model) or too long to be a label (paths)
LABEL_SKIP = ("experiment", "model", "hparams_search", "data.root", *GRID_KEYS)


_REQUIRED = object()


class RunConfigMismatchError(UserError):
    """A run folder holds a run of another config."""


def config_section(cfg: DictConfig, default: object = _REQUIRED) -> int | str | None:
    """``data.section`` of ``cfg`` as configured, resolved: a number, ``"all"`` or None (both: every section,
    see :func:`~asd_ganomaly.data.dcase.section_key`). Where it is missing, unset (``???``) or unresolvable:
    ``default``, or a ``KeyError`` when none is given (never None, which would mean every section)."""
    try:
        value = OmegaConf.select(cfg, SECTION_KEY, default=_REQUIRED, throw_on_missing=True)
    except OmegaConfBaseException:
        value = _REQUIRED
    if value is _REQUIRED:
        if default is _REQUIRED:
            raise KeyError(f"{SECTION_KEY} is not set")
        return default
    return value


def run_info(cfg: DictConfig) -> dict:
    """What identifies a run in metrics.json and W&B: machine, section, model, config, its hash and label."""
    identity = identity_config(cfg)
    overrides = _task_overrides(cfg)
    return {
        "machine_type": cfg.data.machine_type,
        "section": section_key(config_section(cfg)),
        "model": cfg.model.name,
        "task": cfg.task_name,
        "run_id": run_id(cfg, overrides),
        "config_hash": config_hash(identity),
        "overrides": overrides,
        "label": config_label(cfg, overrides),
        "varied": varied_overrides(overrides, _ignored(cfg), _sweep_keys(cfg)),
        "tags": [f"{key}={value}" for key, value in label_parts(overrides, _ignored(cfg), _sweep_keys(cfg))],
        "data_root": str(cfg.data.root),
        "selected_on_test": bool(cfg.select_on_test),
        "config": identity,
    }


def identity_config(cfg: DictConfig) -> dict:
    """The resolved config without the ``identity_ignore`` keys (and without Hydra's own node)."""
    container = OmegaConf.to_container(cfg, resolve=False)
    container.pop("hydra", None)
    ignore = list(cfg.get("identity_ignore") or [])
    copy = OmegaConf.create(container)
    with_paths = copy.get("paths")
    if isinstance(with_paths, DictConfig) and "output_dir" in with_paths:
        with_paths.output_dir = "<run folder>"  # the run folder is what is being named
    for key in ignore:
        _drop(copy, key)
    return OmegaConf.to_container(copy, resolve=True)


def _drop(cfg: DictConfig, dotted: str) -> None:
    parent, _, leaf = dotted.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    if isinstance(node, DictConfig) and leaf in node:
        del node[leaf]


def config_hash(identity: Mapping) -> str:
    """Eight hex digits of the SHA-1 of the identity config as sorted JSON."""
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def override_key(override: str) -> str:
    """The key of a ``key=value`` override, without its ``+``/``~``/``++`` prefix."""
    return override.split("=", 1)[0].lstrip("+~")


def varied_overrides(
    overrides: Iterable[str], ignore: Iterable[str] = (), sweep_keys: Iterable[str] | None = None
) -> list[str]:
    """The overrides that tell this run's setting apart, exact: in a sweep (``sweep_keys``, the keys it varies)
    those of the swept keys, else the command line's; never the machine/section grid, the model and experiment
    choices, paths or the ignored keys."""
    ignore = tuple(ignore)
    swept = None if sweep_keys is None else set(sweep_keys)
    kept = []
    for override in overrides:
        key = override_key(override)
        if key in LABEL_SKIP or any(key == s or key.startswith((f"{s}.", f"{s}@")) for s in ignore):
            continue
        if swept is None or key in swept:
            kept.append(override.lstrip("+~"))
    return sorted(kept, key=lambda o: not o.startswith("model"))  # the model's keys first: they lead the label


def short_keys(keys: Iterable[str]) -> dict[str, str]:
    """Each dotted key by its last component, with as many components before it as tell it apart from the
    others: ``model.loss.w_rec`` -> ``w_rec``; ``model.optimizer_g.lr`` beside ``model.optimizer_d.lr`` ->
    ``optimizer_g.lr``."""
    parts = {key: key.replace("@", ".").split(".") for key in keys}
    depth = dict.fromkeys(parts, 1)
    while True:
        names = {key: ".".join(p[-depth[key] :]) for key, p in parts.items()}
        taken = list(names.values())
        clashing = [k for k in parts if taken.count(names[k]) > 1 and depth[k] < len(parts[k])]
        if not clashing:
            return names
        for key in clashing:
            depth[key] += 1


def display_value(value: str) -> str:
    """An override's value for reading: a decimal number at 4 significant digits (``42.941825`` -> ``42.94``,
    ``0.00047123`` -> ``0.0004712``); integers and text as given."""
    if re.fullmatch(r"[+-]?\d+", value.strip()):
        return value.strip()
    try:
        return f"{float(value):.4g}"
    except ValueError:
        return value


def label_parts(
    overrides: Iterable[str], ignore: Iterable[str] = (), sweep_keys: Iterable[str] | None = None
) -> list[tuple[str, str]]:
    """(short key, value for display) of every varied override (:func:`varied_overrides`); the short names are
    made over the sweep's keys, so every run of a sweep names a key alike."""
    varied = varied_overrides(overrides, ignore, sweep_keys)
    keys = [override_key(o) for o in varied]
    names = short_keys([*keys, *(k for k in sweep_keys or () if k not in keys and k not in LABEL_SKIP)])
    return [(names[key], display_value(o.partition("=")[2])) for key, o in zip(keys, varied, strict=True)]


def run_label(
    overrides: Iterable[str],
    ignore: Iterable[str] = (),
    max_length: int = 80,
    sweep_keys: Iterable[str] | None = None,
) -> str:
    """A short label of the varied overrides, safe as a folder name and inside a Hydra override:
    ``model.loss.w_rec=10 model.optimizer_g.lr=0.00123456`` -> ``w_rec-10+lr-0.001235``; ``default`` when none.
    Longer than ``max_length``: the parts that fit, never a part cut (the hash beside it tells configs apart)."""
    label = ""
    for key, value in label_parts(overrides, ignore, sweep_keys):
        part = re.sub(r"[^A-Za-z0-9._+-]", "_", f"{key}-{value}")
        joined = f"{label}+{part}" if label else part
        if len(joined) > max_length:
            break
        label = joined
    return label or "default"


def _ignored(cfg: DictConfig) -> list[str]:
    return list(cfg.get("identity_ignore") or [])


def _sweep_keys(cfg: DictConfig) -> list[str] | None:
    """The keys the sweep varies (``sweep_keys``, set by :class:`~asd_ganomaly.runs.sweep.SweepConsole`); None
    for a single run."""
    keys = cfg.get(SWEEP_KEYS)
    return None if keys is None else [str(k) for k in keys]


def config_label(cfg: DictConfig, overrides: Iterable[str]) -> str:
    """The label of a run's config: its swept keys in a sweep, the command line's overrides in a single run."""
    return run_label(overrides, _ignored(cfg), sweep_keys=_sweep_keys(cfg))


def run_id(cfg: DictConfig, overrides: Iterable[str]) -> str:
    """``<label>-<hash>``: the name of the folder that holds one config's runs."""
    return f"{config_label(cfg, overrides)}-{config_hash(identity_config(cfg))}"


def config_differences(stored: Mapping, requested: Mapping, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested configs (added and removed keys included)."""
    keys = []
    for key in sorted(set(stored) | set(requested), key=str):
        a, b = stored.get(key, "<absent>"), requested.get(key, "<absent>")
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            keys += config_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return keys


def flatten_config(config: Mapping, prefix: str = "") -> dict:
    """``{"model": {"loss": {"w_rec": 50}}}`` -> ``{"model.loss.w_rec": 50}`` (lists kept as values)."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, Mapping) and value:
            flat |= flatten_config(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def register_resolvers() -> None:
    """``${run_id:}`` and ``${run_label:}`` for the run folder and W&B names (computed from the whole config);
    ``${sweep_sections:SCOPE}`` for the dev-set grid of a model's scope (``conf/experiment/dev_all.yaml``);
    ``${plain:VALUE}`` for the run folder's parts (a plain name, else an error before any folder is made)."""
    if not OmegaConf.has_resolver("run_id"):
        OmegaConf.register_new_resolver("run_id", _resolve_run_id)
    if not OmegaConf.has_resolver("run_label"):
        OmegaConf.register_new_resolver("run_label", _resolve_run_label)
    if not OmegaConf.has_resolver("sweep_sections"):
        OmegaConf.register_new_resolver("sweep_sections", sweep_sections)
    if not OmegaConf.has_resolver("plain"):
        OmegaConf.register_new_resolver("plain", plain_name)


def _task_overrides(root: DictConfig) -> list[str]:
    """The command line's overrides: from the root's Hydra node while Hydra sets up the job, else from the
    running job's Hydra config (a job's own config has no ``hydra`` node)."""
    if "hydra" in root:
        return list(OmegaConf.select(root, "hydra.overrides.task", default=[]) or [])
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def setting_label(cfg: DictConfig) -> str:
    """The label of the running job's setting (as in its folder name); ``?`` where its config cannot say."""
    try:
        return config_label(cfg, _task_overrides(cfg))
    except Exception:  # a broken config: the console line of its failure must still be printed
        return "?"


def _resolve_run_id(*, _root_: DictConfig) -> str:
    return run_id(_root_, _task_overrides(_root_))


def _resolve_run_label(*, _root_: DictConfig) -> str:
    """The label for display (W&B run names): the one in the run folder's name."""
    return config_label(_root_, _task_overrides(_root_))
