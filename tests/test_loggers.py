"""logger=tensorboard and logger=mlflow in real training runs: what they wrote in the run folder, read back with
the trackers' own formats (TensorBoard event files, MLflow's tracking client)."""

import json
import struct
from pathlib import Path

import pytest
from conftest import find_run, run_cli, train_args

pytestmark = pytest.mark.slow  # each test trains through the CLI

TEST_METRICS = ("test/source/auc", "test/target/auc", "test/source/pauc", "test/hmean/auc", "test/dcase_score")


def train_with(logger: str, root: Path, work: Path) -> Path:
    """The run folder of a one-epoch run of fan section 0 with ``logger``."""
    overrides = ("data.machine_type=fan", "data.section=0", "trainer.max_epochs=1", "plots=false", f"logger={logger}")
    run_cli(train_args(root, work, *overrides), cwd=work)
    return find_run(work / "logs")


def read_event_scalars(folder: Path) -> dict[str, float]:
    """The last value of each scalar in the TensorBoard event files below ``folder``. An event file is a series of
    records: length (uint64), its CRC (uint32), an ``Event`` protocol buffer, its CRC (uint32)."""
    from tensorboardX.proto.event_pb2 import Event

    scalars = {}
    for path in sorted(folder.rglob("events.out.tfevents.*")):
        data, offset = path.read_bytes(), 0
        while offset < len(data):
            (length,) = struct.unpack_from("<Q", data, offset)
            event = Event.FromString(data[offset + 12 : offset + 12 + length])
            scalars |= {value.tag: value.simple_value for value in event.summary.value}
            offset += 12 + length + 4
    return scalars


def test_tensorboard_event_files_hold_the_test_metrics(synthetic_root, tmp_path):
    run = train_with("tensorboard", synthetic_root, tmp_path)
    logged = json.loads((run / "metrics.json").read_text())["logged"]
    scalars = read_event_scalars(run / "tensorboard")
    for name in TEST_METRICS:
        assert scalars[name] == pytest.approx(logged[name], abs=1e-6), name
    assert "train/loss_g_epoch" in scalars
    hparams = (run / "tensorboard" / "hparams.yaml").read_text()
    assert "model.loss.w_rec: 50.0" in hparams, "the run's config, flattened, as hyperparameters"


def test_mlflow_store_holds_the_metrics_and_params_of_the_run(synthetic_root, tmp_path):
    from mlflow.tracking import MlflowClient

    run = train_with("mlflow", synthetic_root, tmp_path)
    logged = json.loads((run / "metrics.json").read_text())["logged"]
    client = MlflowClient(tracking_uri=f"sqlite:///{run / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("train")
    (mlflow_run,) = client.search_runs([experiment.experiment_id])
    assert mlflow_run.info.status == "FINISHED" and mlflow_run.info.run_name == "ganomaly_small fan sec0"
    for name in TEST_METRICS:
        assert mlflow_run.data.metrics[name] == pytest.approx(logged[name], abs=1e-6), name
    assert "train/loss_g_epoch" in mlflow_run.data.metrics
    params = mlflow_run.data.params
    assert params["model.loss.w_rec"] == "50.0" and params["data.machine_type"] == "fan", "the config, flattened"
    assert Path(mlflow_run.info.artifact_uri.removeprefix("file://")).is_relative_to(run / "mlartifacts")
