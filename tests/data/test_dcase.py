"""File-name parsing (fuzzed names included) and clip listing on both DCASE 2021 layouts and DCASE 2020 names:
``asd_ganomaly/data/dcase.py``."""

from pathlib import Path

import numpy as np
import pytest

from asd_ganomaly.data.dcase import ClipInfo, DatasetError, check_test_labels, list_clips, parse_clip_name


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_parse_dcase2021_train_name_with_attributes():
    info = parse_clip_name("dev_data/gearbox/train/section_01_target_train_normal_0002_0_g_25_mm_2000_mV_none.wav")
    assert (info.machine_type, info.section, info.domain, info.split, info.label, info.index) == (
        "gearbox",
        1,
        "target",
        "train",
        "normal",
        2,
    )
    assert info.attributes == "0_g_25_mm_2000_mV_none"


def test_parse_dcase2021_test_and_eval_names():
    anomaly = parse_clip_name("fan/source_test/section_02_source_test_anomaly_0099.wav")
    assert (anomaly.split, anomaly.label, anomaly.index, anomaly.is_anomaly) == ("test", "anomaly", 99, True)
    unlabelled = parse_clip_name("eval_data/ToyCar/target_test/section_04_target_test_0150.wav")
    assert (unlabelled.section, unlabelled.domain, unlabelled.label) == (4, "target", "unknown")


def test_parse_dcase2020_names_use_machine_id_as_section():
    info = parse_clip_name("pump/test/anomaly_id_04_00000012.wav")
    assert (info.machine_type, info.section, info.domain, info.split, info.label) == (
        "pump",
        4,
        "source",
        "test",
        "anomaly",
    )
    assert parse_clip_name("x/train/normal_id_00_00000071.wav").split == "train"


@pytest.mark.parametrize("name", ["readme.txt", "section_0_source_train_normal_0000.wav", "random.wav", "id_x.wav"])
def test_parse_rejects_foreign_names(name):
    with pytest.raises(DatasetError):
        parse_clip_name(f"fan/train/{name}")


def make_tree(root: Path, merged_test: bool) -> None:
    for i in range(3):
        touch(root / "fan/train" / f"section_00_source_train_normal_{i:04d}_a.wav")
    touch(root / "fan/train/section_00_target_train_normal_0000_b.wav")
    touch(root / "fan/train/section_01_source_train_normal_0000_a.wav")
    touch(root / "fan/train/notes.txt")
    for domain in ("source", "target"):
        folder = "test" if merged_test else f"{domain}_test"
        for label in ("normal", "anomaly"):
            touch(root / "fan" / folder / f"section_00_{domain}_test_{label}_0000.wav")


@pytest.mark.parametrize("merged_test", [False, True])
def test_list_clips_on_both_layouts(tmp_path, merged_test):
    make_tree(tmp_path, merged_test)
    train = list_clips(tmp_path, "fan", 0, "train")
    assert len(train) == 4 and {c.domain for c in train} == {"source", "target"}
    test = list_clips(tmp_path, "fan", 0, "test")
    assert len(test) == 4
    check_test_labels(test)


def test_list_clips_errors_are_clear(tmp_path):
    make_tree(tmp_path, merged_test=False)
    with pytest.raises(DatasetError, match="unknown machine type 'fann'.*fan"):
        list_clips(tmp_path, "fann", 0, "train")
    with pytest.raises(DatasetError, match="does not exist"):
        list_clips(tmp_path / "missing", "fan", 0, "train")
    with pytest.raises(DatasetError, match=r"section 02.*sections found: \[0, 1\]"):
        list_clips(tmp_path, "fan", 2, "train")
    (tmp_path / "valve").mkdir()
    with pytest.raises(DatasetError, match="no test folder"):
        list_clips(tmp_path, "valve", 0, "test")


def test_single_label_test_split_is_refused(tmp_path):
    touch(tmp_path / "fan/source_test/section_00_source_test_normal_0000.wav")
    touch(tmp_path / "fan/source_test/section_00_source_test_normal_0001.wav")
    with pytest.raises(DatasetError, match="needs both"):
        check_test_labels(list_clips(tmp_path, "fan", 0, "test"))


def test_real_dcase2020_clips_are_listed(realdata):
    clips = list_clips(realdata / "dcase2020-zyy438", "unknown_machine", 0, "train")
    assert len(clips) == 75 and all(c.label == "normal" for c in clips)
    pump = list_clips(realdata / "dcase2020-yos95", "pump", 4, "test")
    assert {c.label for c in pump} == {"normal", "anomaly"}


def test_fuzzed_file_names_parse_or_raise_dataset_error():
    rng = np.random.default_rng(1)
    alphabet = list("section_0123456789sourcetargettrainestnormalanomalyid_.wav-")
    for _ in range(2000):
        name = "".join(rng.choice(alphabet, int(rng.integers(0, 60))))
        try:
            info = parse_clip_name(f"fan/train/{name}")
        except DatasetError:
            continue
        assert isinstance(info, ClipInfo) and info.path.name == name
        # every field the parser returns is spelled out in the name it came from
        if name.startswith("section_"):  # DCASE 2021
            assert name.startswith(f"section_{info.section:02d}_{info.domain}_{info.split}_")
        else:  # DCASE 2020: source domain only
            assert info.domain == "source" and f"id_{info.section:02d}_" in name
        assert info.label == "unknown" or info.label in name


def test_dcase_2020_and_2021_names_in_one_folder_are_listed_with_one_warning_naming_the_counts(tmp_path, caplog):
    train = tmp_path / "fan" / "train"
    for i in range(3):
        touch(train / f"section_00_source_train_normal_{i:04d}_a.wav")
    for i in range(2):
        touch(train / f"normal_id_00_{i:08d}.wav")
    with caplog.at_level("WARNING", logger="asd_ganomaly.data.dcase"):
        clips = list_clips(tmp_path, "fan", 0, "train")
        assert len(list_clips(tmp_path, "fan", 0, "train")) == len(clips) == 5  # both kept, listed twice
    (warning,) = [r.getMessage() for r in caplog.records if "mixes" in r.getMessage()]
    assert f"{train} mixes 3 DCASE 2021 clip names" in warning and "and 2 DCASE 2020 names" in warning
    (tmp_path / "fan" / "test").mkdir()
    touch(tmp_path / "fan" / "test" / "anomaly_id_00_00000000.wav")  # one convention: no warning
    caplog.clear()
    with caplog.at_level("WARNING", logger="asd_ganomaly.data.dcase"):
        list_clips(tmp_path, "fan", 0, "test")
    assert not caplog.records
