"""The notebooks run top to bottom on small synthetic data and a real (tiny) sweep."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.slow  # every test here trains through the CLI

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.mark.parametrize("name", ["1.0-data-exploration.ipynb", "2.0-results.ipynb"])
def test_notebook_runs(name, synthetic_root, tiny_sweep, tmp_path, monkeypatch):
    sweep_dir, _ = tiny_sweep
    monkeypatch.setenv("ASD_DATA_ROOT", str(synthetic_root))
    monkeypatch.setenv("ASD_SWEEP_DIR", str(sweep_dir))
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), "stored with outputs"
    NotebookClient(
        notebook, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any(o.output_type in ("display_data", "execute_result") for o in outputs)
