"""File I/O at the edges: atomic writes (temp file, then rename) and friendly reads."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from riskml.errors import RiskmlError


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    A failed run therefore never leaves a partial output behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o644)  # mkstemp creates 0600; outputs are ordinary files
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _write(path: str | Path, writer: Callable[[Path], None]) -> Path:
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def write_parquet(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` to Parquet atomically."""
    return _write(path, lambda p: df.to_parquet(p, index=False))


def write_csv(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` to CSV (UTF-8 with BOM so that Excel opens accents right) atomically."""
    return _write(path, lambda p: df.to_csv(p, index=False, encoding="utf-8-sig"))


def write_json(obj: Any, path: str | Path) -> Path:
    """Write ``obj`` as indented JSON atomically."""

    def _dump(p: Path) -> None:
        with open(p, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=2, sort_keys=False, default=str)
            fh.write("\n")

    return _write(path, _dump)


def write_text(text: str, path: str | Path) -> Path:
    """Write ``text`` atomically."""
    return _write(path, lambda p: p.write_text(text, encoding="utf-8"))


def read_parquet(path: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a Parquet file; a missing file is a :class:`RiskmlError` naming the stage to run."""
    path = Path(path)
    if not path.exists():
        raise RiskmlError(
            f"{path}: file not found; run the stage that produces it first (see `dvc dag`)"
        )
    return pd.read_parquet(path, columns=columns)


def json_safe(obj: Any) -> Any:
    """JSON-safe copy: NaN and infinities become None (strict JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float | np.floating):
        return None if not math.isfinite(obj) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def write_plot_csv(frame: pd.DataFrame, path: Path) -> Path:
    """Plot data as plain UTF-8 CSV, atomically.

    Not :func:`write_csv`: its byte-order mark (for Excel) would become part of the
    first column's name and ``dvc plots`` would not find the field.
    """
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, encoding="utf-8")
    return Path(path)
