"""CPU time per phase of one area's training at scale: ``bench/scale_bench.py``'s
``train:<area>`` step (the train and register stages, one LightGBM thread, out of core) with
CPU timers around the stage's functions (inputs read, each fit and refit, the first stage,
the policy binding that scores the test window, MLflow registration).

Usage:  nice python bench/train_phases.py AREA N_ITEMS PROJECT

``RISKML_BENCH_TRAIN='{"max_training_rows": 50000}'``: train settings over params.yaml's (as
``scale_bench.py --train-set``). ``PROJECT`` as ``scale_bench.py --project`` leaves it
(``data/interim`` the scaled world, ``data/features`` its features). Prints one JSON line: the
step's record (wall, CPU, peak RSS, load) and ``phases`` (label, CPU and wall seconds, rows,
trees), in the order they ended.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("RISKML_BENCH_THREADS", "1")

import scale_bench  # noqa: E402

import riskml.train as train  # noqa: E402
import riskml.train_stage as stage  # noqa: E402

PHASES: list[dict] = []


def _timed(module, name: str, label: str) -> None:
    inner = getattr(module, name)

    def timed(*args, **kwargs):
        c0, w0 = time.process_time(), time.perf_counter()
        out = inner(*args, **kwargs)
        rows = next((len(a) for a in args if hasattr(a, "columns")), None)
        booster = out[0] if isinstance(out, tuple) else out
        PHASES.append(
            {
                "phase": label,
                "cpu_s": round(time.process_time() - c0, 1),
                "wall_s": round(time.perf_counter() - w0, 1),
                "rows": rows,
                "trees": booster.num_trees() if hasattr(booster, "num_trees") else None,
            }
        )
        return out

    setattr(module, name, timed)


for module, name, label in (
    (train, "_fit", "fit"),
    (train, "_refit", "refit"),
    (train, "_pretrain", "first stage (fit and refit)"),
    (train, "train_recovery", "recovery regression"),
    (stage, "_stage_inputs", "read inputs"),
    (stage, "label_support", "label support"),
    (stage, "fit_estimator", "fit_estimator (every fit, calibration)"),
    (stage, "bind_policy_scored", "bind_policy_scored (the test window scored: threshold)"),
    (stage, "signature_sample", "signature sample"),
    (stage, "register_area_model", "register (MLflow)"),
):
    _timed(module, name, label)

if __name__ == "__main__":
    area, n_items, project = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    record = scale_bench._step(f"train:{area}", n_items, "ooc", project, None)
    print(json.dumps(record | {"phases": PHASES}))
