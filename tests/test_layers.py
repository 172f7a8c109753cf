"""The layers of docs/architecture.md, enforced (issue 11, part 5): import-linter checks the
contracts of ``pyproject.toml`` ([tool.importlinter]) on the installed package's source.

applications (cli, serve) > stages (evaluate, backtest, promote, explain, select, score) > area
model (train, tracking) > domain (features, simulate, labels, rules, metrics, ...) > schema
(config > contract > io > errors); inside the service, app > routers > dependencies > data,
models, schemas and security; no import cycle between sibling modules; the pure domain modules
read no files, registry or database. No stage imports another stage: the contract has no
ignored import left.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).parent / "lint-imports"


def _lint(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT), "--config", str(config), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _contracts() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]


def test_the_layer_contracts_are_kept():
    proc = _lint(ROOT / "pyproject.toml")
    assert proc.returncode == 0, (
        "an import breaks the layers (docs/architecture.md): import only downwards, or place a new "
        f"module in a layer of pyproject.toml [tool.importlinter]\n{proc.stdout[-6000:]}"
    )
    assert "Contracts: 4 kept, 0 broken." in proc.stdout


def test_no_stage_imports_another_stage():
    """The layer contract has no exception left (issue 11, part 5): a stage reads the files
    the previous one wrote, never its code; an ignore entry would have to match a real import
    (``unmatched_ignore_imports_alerting = "error"``)."""
    layers = next(c for c in _contracts()["contracts"] if c["id"] == "layers")
    assert layers.get("ignore_imports", []) == []
    assert layers["unmatched_ignore_imports_alerting"] == "error"


def test_a_stage_importing_another_stage_is_caught(tmp_path):
    """A copy of the package where promote imports evaluate's code (as it once did) breaks the
    contract: stages are independent of each other."""
    proc = _lint_copy(tmp_path, "promote.py", "riskml.evaluate")
    assert proc.returncode != 0
    assert "riskml.promote is not allowed to import riskml.evaluate" in proc.stdout, proc.stdout


def test_an_upward_import_in_new_code_is_caught(tmp_path):
    """A copy of the package where a feature module imports the scoring stage breaks the layer
    contract (the check has teeth for new code, not only for the listed violations)."""
    proc = _lint_copy(tmp_path, "features/row.py", "riskml.score")
    assert proc.returncode != 0
    assert "riskml.features is not allowed to import riskml.score" in proc.stdout, proc.stdout


def _lint_copy(tmp_path: Path, module: str, imported: str) -> subprocess.CompletedProcess[str]:
    """import-linter on a copy of the package where ``module`` imports ``imported``."""
    import shutil

    src = tmp_path / "src"
    shutil.copytree(ROOT / "src" / "riskml", src / "riskml")
    path = src / "riskml" / module
    path.write_text(path.read_text() + f"\n\ndef _added():\n    import {imported}\n")
    return subprocess.run(
        [str(LINT), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=tmp_path,
        env={"PATH": str(LINT.parent), "PYTHONPATH": str(src)},
        capture_output=True,
        text=True,
        timeout=300,
    )
