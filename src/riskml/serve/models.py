"""The one place the service gets its models: each area's registered champion, through
:class:`riskml.score.Scorer` (features from the feature store, models from the MLflow registry).

Loaded and checked at start-up by ``riskml serve`` (a clear message and no start when a model
or the registry is missing or unusable), reported by ``/health/ready``; a missing MLflow store is
never created empty.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from riskml.config import AreaSpec, Params
from riskml.contract import RiskmlError
from riskml.feedback import sqlite_path


class ModelSource:
    """Loads the scorer once (``load``), remembers whether it is ready or why it failed."""

    def __init__(
        self,
        root: Path,
        params: Params,
        specs: dict[str, AreaSpec],
        history: tuple[pd.DataFrame, pd.DataFrame],
        scorer: Any = None,
    ) -> None:
        self.root, self.params, self.specs, self.history = root, params, specs, history
        self._scorer = scorer
        self._lock = threading.Lock()
        self.error: str | None = None
        self.versions: dict[str, str] = {}

    @property
    def ready(self) -> bool:
        """True once the models are loaded and answered a probe."""
        return self._scorer is not None and self.error is None and bool(self.versions)

    def tracking_store(self) -> str:
        """The MLflow tracking URI; a SQLite store must exist (it is never created here)."""
        from riskml import tracking

        uri = tracking.default_tracking_uri(self.root)
        path = sqlite_path(uri)
        if path is not None and not path.exists():
            raise RiskmlError(
                f"no MLflow store at {path}: the models cannot be loaded (the service does not "
                "create an empty store); run the pipeline (`make run`) or set MLFLOW_TRACKING_URI"
            )
        return uri

    def load(self) -> Any:
        """The scorer with every area's champion loaded and probed; RiskmlError naming the
        problem otherwise."""
        with self._lock:
            if self.ready:
                return self._scorer
            try:
                self.tracking_store()
                scorer = self._scorer
                if scorer is None:
                    from riskml.score import Scorer

                    scorer = Scorer(self.root, self.params, self.specs, history=self.history)
                scorer.warm()
                self.versions = {a: _probe(a, m) for a, m in scorer.models.items()}
            except RiskmlError as exc:
                self.error = str(exc)
                raise
            except Exception as exc:  # a corrupt model or store fails in many ways
                self.error = f"the models cannot be loaded ({type(exc).__name__}: {exc})"
                raise RiskmlError(self.error) from exc
            self._scorer, self.error = scorer, None
            return scorer

    def scorer(self) -> Any:
        """The ready scorer (loaded now when it was not)."""
        return self._scorer if self.ready else self.load()

    def status(self) -> dict[str, Any]:
        """``ready``, the loaded versions, or the reason it is not ready."""
        if self.ready:
            return {"status": "ready", "models": self.versions}
        if self.error:
            return {"status": "failed", "reason": self.error}
        try:
            self.tracking_store()
        except RiskmlError as exc:
            return {"status": "failed", "reason": str(exc)}
        return {"status": "not loaded", "reason": "the models load on the first POST /score"}


def _probe(area: str, model: Any) -> str:
    """The model's version after one prediction on a row of zeros gave a probability."""
    row = np.zeros((1, len(model.feature_names_)), dtype=np.float32)
    p = model.predict_proba(row)
    if p.shape != (1,) or not np.isfinite(p).all() or not 0 <= float(p[0]) <= 1:
        raise RiskmlError(f"{model.describe()} ({area}) gives no probability on a probe row")
    return model.describe()
