"""A non-editable install: the wheel ships the configs, and asd-train runs from any folder."""

import os
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import CSV_ONLY, TRAIN, find_run, run_cli, train_args

REPO = Path(__file__).resolve().parents[1]


def _sh(*args: str | Path, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """``args`` run without ``PYTHONPATH``: the installed package, not a checkout on the path, is under test."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv holding the package's wheel (no editable link to this checkout); the other packages come
    from the test environment through a path file."""
    work = tmp_path_factory.mktemp("wheel")
    build = _sh(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        work / "dist",
        REPO,
        cwd=work,
        timeout=600,
    )
    assert "would be ignored" not in build.stdout + build.stderr, "setuptools warns about undeclared data folders"
    wheel = next((work / "dist").glob("asd_ganomaly-*.whl"))
    shipped = set(zipfile.ZipFile(wheel).namelist())
    configs = {f"asd_ganomaly/conf/{p.relative_to(REPO / 'conf').as_posix()}" for p in (REPO / "conf").rglob("*.yaml")}
    assert configs and configs <= shipped, f"configs missing from the wheel: {sorted(configs - shipped)}"
    venv = work / "venv"
    _sh(sys.executable, "-m", "venv", venv, cwd=work)
    purelib = Path(
        _sh(
            venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=work
        ).stdout.strip()
    )
    (purelib / "outer_env.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    _sh(venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel, cwd=work)
    return venv


@pytest.mark.slow
def test_wheel_ships_the_configs_and_asd_train_runs_from_another_folder(installed, synthetic_root, tmp_path):
    python = installed / "bin" / "python"
    where = _sh(python, "-c", "import asd_ganomaly.train as t; print(t.__file__); print(t.CONF_DIR)", cwd=tmp_path)
    module_file, conf = where.stdout.split()
    assert module_file.startswith(str(installed)) and conf.startswith(str(installed)), where.stdout
    assert (Path(conf) / "train.yaml").is_file() and (Path(conf) / "model" / "ganomaly.yaml").is_file()

    job = _sh(installed / "bin" / "asd-train", "--cfg", "job", "model=ae_baseline", cwd=tmp_path)
    assert "asd_ganomaly.models.lit_ae.AutoencoderModule" in job.stdout

    one_step = ["trainer.max_epochs=1", "+trainer.limit_train_batches=1", *CSV_ONLY]
    args = train_args(synthetic_root, tmp_path, *one_step)[1:]  # the overrides only
    _sh(installed / "bin" / "asd-train", *args, cwd=tmp_path)
    assert (find_run(tmp_path / "logs", "fan") / "metrics.json").exists()


@pytest.mark.slow
def test_a_users_config_folder_on_the_search_path_is_found(tmp_path):
    mine = tmp_path / "my_conf" / "experiment"
    mine.mkdir(parents=True)
    (mine / "my_plant.yaml").write_text("# @package _global_\ntask_name: my_plant\nmodel:\n  loss:\n    w_rec: 12.5\n")
    args = [TRAIN, f"hydra.searchpath=[file://{tmp_path / 'my_conf'}]", "experiment=my_plant"]
    result = run_cli([*args, "--cfg", "job"], cwd=tmp_path)
    assert "task_name: my_plant" in result.stdout and "w_rec: 12.5" in result.stdout
