"""The project's own files (what a fresh clone holds), for tests that copy the project."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Written by a local `dvc repro`, not part of a clone: a copy must not inherit its hashes.
LOCAL_STATE = {"dvc.lock"}


def project_files(root: Path = ROOT) -> list[str]:
    """Tracked and untracked-but-not-ignored files of ``root``, minus local pipeline state."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    return [f for f in out if f and f not in LOCAL_STATE and (root / f).is_file()]


def copy_project(dest: Path, root: Path = ROOT) -> Path:
    """Copy the project's files into ``dest``; return ``dest``."""
    for rel in project_files(root):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, target)
    return dest


def run_checked(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run ``cmd`` in ``cwd``; an AssertionError with the end of its output when it fails."""
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n"
            f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc
