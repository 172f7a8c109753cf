"""Two models of one area on the same test window, judged on the truth of every item (paired).

Usage::

    python scripts/compare_scores.py BASE_PROJECT NEW_PROJECT AREA RATE

Each project's ``data/scores/<area>/`` is what ``riskml evaluate`` writes (every test-window
item's ``score``, its truth ``offence`` and ``true_prob``); the items are matched by key. Per
test month and for the whole window: average precision on the truth, precision of the top
``RATE`` (the area's operating rate) on the truth, and expected precision (the mean
``true_prob`` of those picks over the oracle's own top ``RATE``, the development worlds'
metric, far less noisy than the window's offences); the months are the paired units (how many
months the new model's expected precision is above / below the base's). Prints JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from riskml import io
from riskml.contract import KEY
from riskml.metrics import average_precision


def _scores(project: Path, area: str) -> pd.DataFrame:
    columns = [*KEY, "accepted_date", "score", "offence", "true_prob"]
    frame = io.read_partitioned(project / "data/scores" / area, columns=columns)
    frame["declaration_id"] = frame["declaration_id"].astype("string")
    return frame


def _figures(y: np.ndarray, p: np.ndarray, score: np.ndarray, rate: float) -> dict[str, float]:
    k = max(1, int(round(rate * len(y))))
    top = np.argsort(-score, kind="stable")[:k]
    oracle = np.sort(p)[::-1][:k]
    return {
        "average_precision": average_precision(y, score),
        "precision": float(y[top].mean()),
        "expected_precision": float(p[top].mean() / oracle.mean()),
    }


def compare(base: Path, new: Path, area: str, rate: float) -> dict:
    a, b = _scores(base, area), _scores(new, area)
    both = a.merge(b[[*KEY, "score"]], on=KEY, suffixes=("_base", "_new"), validate="one_to_one")
    if len(both) != len(a) or len(both) != len(b):
        raise SystemExit(f"{area}: the projects scored different items ({len(a)}, {len(b)})")
    both["month"] = pd.to_datetime(both["accepted_date"]).dt.strftime("%Y-%m")
    out: dict = {"area": area, "rate": rate, "items": len(both), "months": {}}

    def pair(frame: pd.DataFrame) -> dict:
        y = frame["offence"].to_numpy(float)
        p = frame["true_prob"].to_numpy(float)
        base_f = _figures(y, p, frame["score_base"].to_numpy(), rate)
        new_f = _figures(y, p, frame["score_new"].to_numpy(), rate)
        return {"offences": int(y.sum()), "base": base_f, "new": new_f}

    for month, frame in both.groupby("month"):
        out["months"][month] = pair(frame)
    out["window"] = pair(both)
    per_month = [m["new"]["expected_precision"] - m["base"]["expected_precision"]
                 for m in out["months"].values()]  # fmt: skip
    out["months_better_worse"] = [sum(d > 0 for d in per_month), sum(d < 0 for d in per_month)]
    return out


if __name__ == "__main__":
    base, new, area, rate = sys.argv[1:5]
    print(json.dumps(compare(Path(base), Path(new), area, float(rate)), indent=1))
