"""The model-review notebook runs top to bottom against a finished (small) pipeline run."""

from __future__ import annotations

from pathlib import Path

import pytest
from explain_project import AREA, small_project

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_executes_on_pipeline_outputs(path, monkeypatch):
    project = small_project()
    monkeypatch.setenv("RISKML_ROOT", str(project))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the project's own store
    nb = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(project)}}
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert f"case file: data/casefiles/{AREA}/" in text
    assert f"{AREA}: riskml-{AREA} v1 (challenger, champion)" in text  # the lists' model
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 4  # plots were drawn


def test_there_is_a_model_review_notebook():
    assert any("model-review" in p.name for p in NOTEBOOKS)
