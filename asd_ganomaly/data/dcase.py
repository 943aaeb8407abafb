"""DCASE file names and folder layout: parse clip names, list the clips of one machine section.

Layouts accepted under a data root (the folder that holds the machine-type folders):

* DCASE 2021 dev/eval: ``<machine>/{train,source_test,target_test}/section_XX_<domain>_<split>_...wav``
* merged test folder: ``<machine>/{train,test}/section_XX_...wav``
* DCASE 2020: ``<machine>/{train,test}/{normal,anomaly}_id_XX_NNNNNNNN.wav`` (section = machine id,
  domain = source)

A folder that mixes both conventions is listed whole, with one warning per folder naming how many clips follow
each: a DCASE 2020 machine id and a DCASE 2021 section of the same number are not the same machine, but a mix
can be meant (older recordings added to the training set), so it is not refused.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import UserError

log = logging.getLogger(__name__)

MACHINE_TYPES: tuple[str, ...] = ("fan", "gearbox", "pump", "slider", "valve", "ToyCar", "ToyTrain")
"""The seven DCASE 2021 Task 2 machine types (MIMII DUE + ToyADMOS2)."""

DOMAINS: tuple[str, ...] = ("source", "target")
LABELS: tuple[str, ...] = ("normal", "anomaly", "unknown")
UNLABELLED = -1
"""The label code of a test clip whose name carries no label (the evaluation set's test clips)."""
TEST_FOLDERS: tuple[str, ...] = ("source_test", "target_test", "test")
ALL_SECTIONS = "all"
"""``data.section`` value of per-machine-type training: one model on every section of a machine type."""
DEV_SECTIONS: tuple[int, ...] = (0, 1, 2)
"""The sections of every machine type in the DCASE 2021 Task 2 dev set."""
EVAL_SECTIONS: tuple[int, ...] = (3, 4, 5)
"""The sections of every machine type in the DCASE 2021 Task 2 evaluation set (additional training + eval test)."""
SECTION_SETS: dict[str, tuple[int, ...]] = {"dev": DEV_SECTIONS, "eval": EVAL_SECTIONS}
"""The second argument of ``${sweep_sections:SCOPE,SET}``: the dev set's sections or the evaluation set's."""
SCOPES: dict[str, str] = {"section": ",".join(map(str, DEV_SECTIONS)), "machine_type": ALL_SECTIONS}
"""A model's training scope (``model.scope``) and the ``data.section`` values of its dev-set grid
(``experiment=dev_all``): one model per section, or one per machine type over all its sections."""

_DCASE2021 = re.compile(
    r"^section_(?P<section>\d{2})_(?P<domain>source|target)_(?P<split>train|test)"
    r"(?:_(?P<label>normal|anomaly))?_(?P<index>\d+)(?:_(?P<attributes>.+))?$"
)
_DCASE2020 = re.compile(r"^(?:(?P<label>normal|anomaly)_)?id_(?P<section>\d{2})_(?P<index>\d+)$")


GET_DATA_HINT = (
    "get the DCASE 2021 data with `asd-ganomaly download dev --root data/dcase2021` (then "
    "data.root=data/dcase2021/dev_data), or write a synthetic set with `asd-ganomaly synth data/demo` "
    "(then data.root=data/demo)"
)
_reported: set[tuple[Path, str]] = set()
"""What the listing has logged of a folder already (each folder's warnings once per process)."""


class DatasetError(UserError, ValueError):
    """Raised for a data root, machine, section or file that cannot be used."""


@dataclass(frozen=True)
class ClipInfo:
    """What a DCASE file name and its folders say about one clip."""

    path: Path
    machine_type: str
    section: int
    domain: str
    split: str
    label: str
    index: int
    attributes: str = ""

    @property
    def is_anomaly(self) -> bool:
        """True for a labelled anomaly."""
        return self.label == "anomaly"

    @property
    def is_labelled(self) -> bool:
        """True when the name says normal or anomaly (an evaluation-set test clip does not)."""
        return self.label != "unknown"

    @property
    def label_code(self) -> int:
        """The label as the test batches carry it: 1 anomaly, 0 normal, :data:`UNLABELLED` unknown."""
        return int(self.is_anomaly) if self.is_labelled else UNLABELLED


def parse_clip_name(path: str | Path, machine_type: str | None = None, split: str | None = None) -> ClipInfo:
    """Parse a DCASE 2021 or DCASE 2020 clip path into a :class:`ClipInfo`.

    ``machine_type`` and ``split`` default to what the folders say (``<machine>/<split folder>/<file>``).
    Raises :class:`DatasetError` for a name that follows neither convention.
    """
    path = Path(path)
    if path.suffix.lower() != ".wav":
        raise DatasetError(f"not a .wav file: {path}")
    folder = path.parent.name
    machine_type = machine_type or path.parent.parent.name or "unknown"
    stem = path.stem
    if match := _DCASE2021.match(stem):
        return ClipInfo(
            path=path,
            machine_type=machine_type,
            section=int(match["section"]),
            domain=match["domain"],
            split=match["split"],
            label=match["label"] or "unknown",
            index=int(match["index"]),
            attributes=match["attributes"] or "",
        )
    if match := _DCASE2020.match(stem):
        split = split or ("train" if folder == "train" else "test")
        return ClipInfo(
            path=path,
            machine_type=machine_type,
            section=int(match["section"]),
            domain="source",
            split=split,
            label=match["label"] or "unknown",
            index=int(match["index"]),
        )
    raise DatasetError(
        f"cannot parse clip name {path.name!r}: expected 'section_XX_<source|target>_<train|test>_...wav' "
        "(DCASE 2021) or '<normal|anomaly>_id_XX_NNNNNNNN.wav' (DCASE 2020)"
    )


def machine_dir(root: str | Path, machine_type: str) -> Path:
    """Return ``root/machine_type``, with an error that lists what is there when it is missing."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"data root {root} does not exist or is not a folder: {GET_DATA_HINT}")
    folder = root / machine_type
    if folder.is_dir():
        return folder
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        raise DatasetError(f"data root {root} holds no machine folders: {GET_DATA_HINT}")
    raise DatasetError(
        f"unknown machine type {machine_type!r} under {root}: folders found there are {found or 'none'}; "
        f"the DCASE 2021 machine types are {list(MACHINE_TYPES)}"
    )


def parse_section(value: int | str | None) -> int | None:
    """A ``data.section`` value as a section number, or None for every section (``"all"`` or None)."""
    if value is None or str(value).lower() == ALL_SECTIONS:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DatasetError(f"section must be a number or {ALL_SECTIONS!r}, not {value!r}") from None


def sweep_sections(scope: str, sections: str = "dev") -> str:
    """The ``data.section`` sweep of a grid for a model of ``scope`` (the ``${sweep_sections:...}`` resolver of
    ``conf/experiment/dev_all.yaml`` and ``eval_all.yaml``): per section ``"0,1,2"`` (``sections="dev"``) or
    ``"3,4,5"`` (``"eval"``), ``"all"`` per machine type."""
    if sections not in SECTION_SETS:
        raise DatasetError(f"the sections of a grid are one of {list(SECTION_SETS)}, not {sections!r}")
    if check_scope(scope) == "section":
        return ",".join(map(str, SECTION_SETS[sections]))
    return SCOPES[scope]


def check_scope(scope: str) -> str:
    """``scope`` when it is a known training scope (a key of ``SCOPES``), else a ``DatasetError``."""
    if scope not in SCOPES:
        raise DatasetError(f"model.scope must be one of {list(SCOPES)}, not {scope!r}")
    return scope


def section_key(value: int | str | None) -> int | str:
    """How metrics.json, tags and folders name a section: its number, or ``"all"`` for a per-machine-type run."""
    section = parse_section(value)
    return ALL_SECTIONS if section is None else section


def list_clips(root: str | Path, machine_type: str, section: int | None, split: str) -> list[ClipInfo]:
    """List the clips of one machine type and section (every section for ``section=None``), sorted by path.

    ``split`` is ``"train"`` (the normal training clips, both domains) or ``"test"`` (all test folders).
    Raises :class:`DatasetError` when the folder is missing or the section has no clips.
    """
    if split not in ("train", "test"):
        raise DatasetError(f"split must be 'train' or 'test', not {split!r}")
    base = machine_dir(root, machine_type)
    folders = [base / "train"] if split == "train" else [base / name for name in TEST_FOLDERS]
    existing = [folder for folder in folders if folder.is_dir()]
    if not existing:
        raise DatasetError(f"no {split} folder under {base}: looked for {[f.name for f in folders]}")
    clips = [c for f in existing for c in _scan(f, machine_type, split) if section is None or c.section == section]
    if not clips:
        found = sorted({c.section for f in existing for c in _scan(f, machine_type, split)})
        which = "any section" if section is None else f"section {section:02d}"
        raise DatasetError(
            f"no {split} clips of {machine_type} {which} in {[str(f) for f in existing]}; "
            f"sections found: {found or 'none'}"
        )
    return clips


def train_clips(
    root: str | Path, machine_type: str, section: int | None, extra_roots: list | tuple = ()
) -> list[ClipInfo]:
    """The normal training clips of ``root`` and, after them, of each extra root (``data.extra_train_roots``: the
    dev set beside the additional training set); an extra root without clips of that section adds none."""
    clips = [c for c in list_clips(root, machine_type, section, "train") if c.label != "anomaly"]
    for extra in extra_roots:
        try:
            found = list_clips(extra, machine_type, section, "train")
        except DatasetError:
            if section is None:
                raise
            continue  # e.g. section 03 asked for: the dev set has none
        clips += [c for c in found if c.label != "anomaly"]
    return clips


def _scan(folder: Path, machine_type: str, split: str) -> list[ClipInfo]:
    """The clips of ``folder`` (``.wav`` in any case), sorted by path. Every other entry but hidden ones is
    skipped, as the official tools do, and named in the log with the reason (once per folder and message): not a
    DCASE clip name, a broken link, a link loop, a directory, an unreadable file. A mix of DCASE 2021 and 2020
    names is listed whole, with a warning naming how many follow each."""
    clips, skipped = [], []
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        reason = _unusable(path)
        if reason is None:
            try:
                clips.append(parse_clip_name(path, machine_type=machine_type, split=split))
                continue
            except DatasetError:
                reason = "not a DCASE clip name"
        skipped.append(f"{path.name} ({reason})")
    if skipped:
        shown = ", ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else "")
        _warn_once(folder, f"{len(skipped)} entries skipped in {folder}: {shown}")
    _warn_if_mixed(folder, clips)
    return clips


def naming(path: Path) -> str | None:
    """The naming convention of a clip file: ``"DCASE 2021"``, ``"DCASE 2020"`` or None (neither)."""
    if _DCASE2021.match(path.stem):
        return "DCASE 2021"
    return "DCASE 2020" if _DCASE2020.match(path.stem) else None


def _warn_if_mixed(folder: Path, clips: list[ClipInfo]) -> None:
    """Warn (once per folder) when ``clips`` follow both the DCASE 2021 and the DCASE 2020 naming."""
    counts = {name: sum(naming(c.path) == name for c in clips) for name in ("DCASE 2021", "DCASE 2020")}
    if all(counts.values()):
        _warn_once(
            folder,
            f"{folder} mixes {counts['DCASE 2021']} DCASE 2021 clip names (section_XX_...) and "
            f"{counts['DCASE 2020']} DCASE 2020 names (<label>_id_XX_...): both are used, a DCASE 2020 machine "
            "id XX taken as section XX; keep one convention per folder unless the mix is meant",
        )


def _warn_once(folder: Path, message: str) -> None:
    """Log ``message`` as a warning unless it was logged for ``folder`` before in this process."""
    if (folder, message) not in _reported:
        _reported.add((folder, message))
        log.warning("%s", message)


def _unusable(path: Path) -> str | None:
    """Why a folder entry cannot be a clip file (None when it is a readable regular file or a link to one)."""
    try:
        info = path.stat()
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "link loop"
        return "broken link" if path.is_symlink() else f"unreadable: {error.strerror}"
    if stat.S_ISDIR(info.st_mode):
        return "a directory"
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    if not os.access(path, os.R_OK):
        return "unreadable"
    return None


def check_test_labels(clips: list[ClipInfo]) -> bool:
    """True when every test clip is labelled, False when none is (an evaluation set: scored and decided, no AUC).

    Raises :class:`DatasetError` for a mix of labelled and unlabelled clips (naming some of the unlabelled ones),
    or for a labelled section and domain without both normal and anomaly clips.
    """
    unlabelled = [c for c in clips if not c.is_labelled]
    if unlabelled and len(unlabelled) == len(clips):
        return False
    if unlabelled:
        shown = ", ".join(c.path.name for c in unlabelled[:5]) + (" ..." if len(unlabelled) > 5 else "")
        raise DatasetError(
            f"{len(unlabelled)} of {len(clips)} test clips of {clips[0].machine_type} carry no normal/anomaly label "
            f"while the others do: {shown} (a test split is either labelled or not)"
        )
    for section, domain in sorted({(c.section, c.domain) for c in clips}):
        labels = {c.label for c in clips if c.domain == domain and c.section == section}
        if labels != {"normal", "anomaly"}:
            raise DatasetError(
                f"{domain} test clips of {clips[0].machine_type} section {section:02d} have labels "
                f"{sorted(labels)}: AUC needs both 'normal' and 'anomaly' clips"
            )
    return True
