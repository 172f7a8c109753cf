"""The layers of docs/architecture.md, enforced (issue 11, part 5): import-linter checks the
contracts of ``pyproject.toml`` ([tool.importlinter]) on the installed package's source.

applications (cli, serve) > stages (evaluate, backtest, promote, explain, select, score) > area
model (train, tracking) > domain (features, simulate, labels, rules, metrics, ...) > schema
(config > contract > io > errors); inside the service, app > routers > dependencies > data,
models, schemas and security; no import cycle between sibling modules; the pure domain modules
read no files, registry or database. Known violations are listed as ignored imports,
each with the issue that removes it.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
import warnings
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


def test_each_ignored_import_is_a_known_violation_still_present(tmp_path):
    """Without its ignore list the layer contract breaks on each listed import that still exists
    (so the check can fail, and every ignore is a real upward or sideways import). An ignore
    whose import is gone is reported as a warning naming it: delete it from pyproject.toml."""
    config = _contracts()
    layers = next(c for c in config["contracts"] if c["id"] == "layers")
    ignored = layers.pop("ignore_imports")
    assert ignored, "no known violation left: drop this test's premise"
    config["contracts"] = [layers]
    path = tmp_path / "strict.toml"
    path.write_text(_toml({"tool": {"importlinter": config}}))
    proc = _lint(path)
    assert proc.returncode != 0
    stale = []
    for entry in ignored:
        importer, imported = (part.strip() for part in entry.split("->"))
        if f"{importer} is not allowed to import {imported}" not in proc.stdout:
            stale.append(entry)
    if stale:
        warnings.warn(
            f"ignored imports no longer present, delete them from pyproject.toml: {stale}",
            stacklevel=1,
        )
    assert len(stale) < len(ignored), "the strict contract broke on none of the known imports"


def test_an_upward_import_in_new_code_is_caught(tmp_path):
    """A copy of the package where a feature module imports the scoring stage breaks the layer
    contract (the check has teeth for new code, not only for the listed violations)."""
    import shutil

    src = tmp_path / "src"
    shutil.copytree(ROOT / "src" / "riskml", src / "riskml")
    row = src / "riskml" / "features" / "row.py"
    row.write_text(row.read_text() + "\n\ndef _upward():\n    from riskml import score\n")
    proc = subprocess.run(
        [str(LINT), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=tmp_path,
        env={"PATH": str(LINT.parent), "PYTHONPATH": str(src)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    assert "riskml.features is not allowed to import riskml.score" in proc.stdout, proc.stdout


def _toml(value: dict, prefix: str = "") -> str:
    """A small TOML writer for the import-linter tables (strings, booleans, lists, tables)."""
    lines, tables = [], []
    for key, item in value.items():
        if isinstance(item, dict):
            tables.append((key, item))
        elif isinstance(item, list) and item and isinstance(item[0], dict):
            tables.extend((key, [entry]) for entry in item)
        else:
            lines.append(f"{key} = {_scalar(item)}")
    out = "\n".join(lines) + "\n"
    for key, item in tables:
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(item, list):
            out += f"\n[[{name}]]\n" + _toml(item[0], name)
        else:
            out += f"\n[{name}]\n" + _toml(item, name)
    return out


def _scalar(item: object) -> str:
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, list):
        return "[" + ", ".join(_scalar(i) for i in item) + "]"
    return '"' + str(item).replace("\\", "\\\\").replace('"', '\\"') + '"'
