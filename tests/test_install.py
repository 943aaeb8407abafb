"""The install: the environment holds exactly the lock's versions, the triple is pinned, the load check speaks."""

import importlib
import re
from importlib import metadata
from pathlib import Path

import pytest
import tomllib
from packaging.markers import Marker
from packaging.requirements import Requirement

from asd_ganomaly import stack

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "requirements.lock"


def _locked_pins() -> dict[str, str]:
    """Name -> version of every lock line whose marker holds for this interpreter."""
    pins = {}
    for line in LOCK.read_text().splitlines():
        if not line or line[0] in "# -":
            continue
        spec, _, marker = line.partition(";")
        if marker.strip() and not Marker(marker.strip()).evaluate():
            continue
        name, version = spec.strip().split("==")
        pins[name.lower()] = version
    return pins


def test_the_environment_holds_exactly_the_locked_versions():
    pins = _locked_pins()
    assert len(pins) > 100 and {"torch", "torchaudio", "torchvision", "lightning", "setuptools"} <= set(pins)
    wrong = {}
    for name, version in pins.items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = "missing"
        if installed != version:
            wrong[name] = (version, installed)
    assert not wrong, f"locked (version, installed) differ: {wrong}"


def test_pyproject_pins_one_exact_triple_and_the_lock_holds_it():
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pinned = {}
    for dependency in dependencies:
        requirement = Requirement(dependency)
        if requirement.name in stack.STACK:
            (specifier,) = requirement.specifier
            assert specifier.operator == "==" and not re.search(r"[*]", specifier.version), dependency
            pinned[requirement.name] = specifier.version
    assert set(pinned) == set(stack.STACK)
    locked = _locked_pins()
    assert {name: locked[name] for name in stack.STACK} == pinned


def test_the_load_check_prints_the_three_versions(capsys):
    assert stack.main() == 0
    line = capsys.readouterr().out.strip()
    for name in stack.STACK:
        assert f"{name} {metadata.version(name)}" in line


def test_a_library_that_does_not_load_fails_the_check_with_one_line_naming_the_versions(monkeypatch, capsys):
    real_import = importlib.import_module

    def broken_torchaudio(name, *args):
        if name == "torchaudio":
            raise OSError("libtorchaudio.so: undefined symbol: torch_exception_get_what_without_backtrace\nmore")
        return real_import(name, *args)

    monkeypatch.setattr(stack.importlib, "import_module", broken_torchaudio)
    monkeypatch.setattr(
        stack, "installed_versions", lambda: {"torch": "2.11.0", "torchaudio": "2.11.1", "torchvision": "0.26.0"}
    )
    assert stack.main() == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "torchaudio does not load beside torch 2.11.0, torchaudio 2.11.1, torchvision 0.26.0" in err
    assert "undefined symbol" in err and "requirements.lock" in err


def test_a_missing_library_is_named_missing():
    versions = stack.installed_versions(("torch", "no-such-distribution-here"))
    assert versions["no-such-distribution-here"] == "missing" and versions["torch"] == metadata.version("torch")


@pytest.mark.parametrize("folder", sorted(p for p in (REPO / "conf").rglob("*") if p.is_dir()))
def test_every_config_folder_is_a_declared_package(folder):
    """An undeclared config folder makes setuptools warn at every install (and ships nothing in old versions)."""
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    assert "asd_ganomaly.conf." + ".".join(folder.relative_to(REPO / "conf").parts) in packages


@pytest.mark.parametrize("folder", sorted(p.parent for p in (REPO / "asd_ganomaly").rglob("__init__.py")))
def test_every_subpackage_is_declared(folder):
    """The package list is explicit (the config folders need it): a new subpackage must be in it, or the wheel
    ships without it."""
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    assert ".".join(folder.relative_to(REPO).parts) in packages
