"""The MLflow side of an area model: logged and registered as one model, loaded by version or
alias, aliases kept in line with the DVC-tracked promotion decision.

* :func:`register` logs an :class:`~riskml.area_model.AreaModel` as **one** MLflow model (a
  pyfunc whose artifacts are the saved model folder: native Booster files and ``model.json``),
  with a signature, an input example, the model card as the version's description and the
  model's facts as tags, registered as ``riskml-<area>``. Registration is idempotent: the version
  is tagged with :meth:`AreaModel.content_hash`, and a model whose hash is already registered is
  not logged again (its version is reused).
* :func:`load` returns the whole area model of ``models:/riskml-<area>/<version>`` or
  ``@<alias>`` (``mlflow.pyfunc.load_model`` of the same URI gives the pyfunc wrapper, whose
  ``unwrap_python_model().model`` is the same object).
* :func:`list_model` is the model the candidate lists, case files and the service use: the
  champion named by ``metrics/promotion.json`` (the DVC-tracked decision), else the
  ``champion`` alias.
* :func:`sync` moves the aliases to what ``metrics/promotion.json`` says (after a cached
  ``dvc repro`` or a ``dvc exp apply``, which restore files but run no code): ``riskml registry
  sync``.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from riskml import catalog, tracking
from riskml.area_model import REGISTRATION_FILE, AreaModel
from riskml.catalog import Catalog
from riskml.contract import RiskmlError

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
#: Tag of a model version: the content hash of its area model (idempotent registration).
HASH_TAG = "content_hash"
#: Tag of a model version: the hash of its fitted estimator alone, shared by the versions that
#: bind other list policies to the same training (:meth:`AreaModel.estimator_hash`).
ESTIMATOR_TAG = "estimator_hash"
PROMOTION_PATH = catalog.PROMOTION
INPUT_EXAMPLE_ROWS = 5
ARTIFACT_KEY = "area_model"


def registered_model_name(area: str) -> str:
    """Name of the area's model in the MLflow registry."""
    return f"riskml-{area}"


@dataclass
class Registration:
    """Which registered version an area model is, and how it got there."""

    registered_model: str
    version: str
    content_hash: str
    run_id: str = ""
    model_id: str = ""
    aliases: tuple[str, ...] = ()
    reused: bool = False

    @property
    def model_uri(self) -> str:
        return f"models:/{self.registered_model}/{self.version}"

    def __str__(self) -> str:
        alias = f" ({', '.join(self.aliases)})" if self.aliases else ""
        return f"{self.registered_model} v{self.version}{alias}"

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["aliases"] = list(self.aliases)
        out["model_uri"] = self.model_uri
        return out

    def with_aliases(self, client: MlflowClient) -> Registration:
        """The same version with its current aliases read from the registry."""
        out = Registration(**{**asdict(self), "aliases": ()})
        out.aliases = tuple(
            sorted(
                a for a, v in aliases(client, self.registered_model).items() if v == self.version
            )
        )
        return out


class AreaPyfunc(mlflow.pyfunc.PythonModel):
    """The MLflow face of an area model: ``predict`` gives ``probability``,
    ``expected_recovery`` and ``rank_key`` per row; ``model`` is the whole
    :class:`~riskml.area_model.AreaModel` (loaded from the logged artifacts, Boosters native)."""

    def load_context(self, context: Any) -> None:
        self.model = AreaModel.load(Path(context.artifacts[ARTIFACT_KEY]))

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        proba = self.model.predict_proba(model_input)
        out = self.model.rank_key(model_input, proba)
        out.insert(0, "probability", proba)
        return out.reset_index(drop=True)


# --- the registry ---------------------------------------------------------------------------


def client_for(root: Path, tracking_uri: str | None = None) -> MlflowClient:
    """A client of the project's store (:func:`riskml.tracking.open_store`)."""
    return tracking.open_store(root, tracking_uri)


def aliases(client: MlflowClient, name: str) -> dict[str, str]:
    """Alias → version (as str) of registered model ``name``; RiskmlError when it is missing."""
    try:
        model = client.get_registered_model(name)
    except MlflowException as exc:
        raise RiskmlError(
            f"MLflow registry: no registered model {name!r}; train the area first (`riskml train`)"
        ) from exc
    # The SQLite store returns versions as int, a server as str: normalise to str.
    return {a: str(v) for a, v in model.aliases.items()}


def find_version(client: MlflowClient, name: str, content_hash: str) -> Any | None:
    """The registered version of ``name`` tagged with ``content_hash`` (the oldest), or None."""
    try:
        found = client.search_model_versions(
            f"name = '{name}' and tags.{HASH_TAG} = '{content_hash}'"
        )
    except MlflowException:
        return None
    return min(found, key=lambda v: int(v.version)) if found else None


def _tags(model: AreaModel, content_hash: str) -> dict[str, str]:
    facts = model.facts_
    return {
        HASH_TAG: content_hash,
        ESTIMATOR_TAG: model.estimator_hash(),
        "area": model.area,
        "rank_by": model.rank_by,
        "recovery_exponent": f"{model.recovery_exponent:g}",
        "fingerprint": model.fingerprint_,
        "train_window": " to ".join(facts.get("train_window", [])),
        "valid_window": " to ".join(facts.get("valid_window", [])),
        "labels_known_before": str(facts.get("labels_known_before", "")),
        "threshold": "none" if model.threshold_ == float("inf") else f"{model.threshold_:.6g}",
        "two_stage": str(facts.get("pretrain") is not None).lower(),
        "recovery_model": str(model.recovery_ is not None).lower(),
    }


def register(
    model: AreaModel,
    *,
    root: Path,
    experiment: str,
    run_params: dict[str, Any],
    run_metrics: dict[str, float],
    card: Any,
    tracking_uri: str | None = None,
    sample: pd.DataFrame | None = None,
) -> Registration:
    """Register ``model`` as a version of ``riskml-<area>``, once per content.

    When a version with the same :meth:`~AreaModel.content_hash` exists it is reused (no run, no
    new version); otherwise one run logs the params, metrics and the model (a pyfunc whose
    artifacts are the model's saved files, signature and input example from ``sample``) and a
    version is created with the card (``card(registration) -> str``) as description and the
    model's facts as tags. Either way ``challenger`` points at the version afterwards
    (``champion`` too when the model has none)."""
    client = client_for(root, tracking_uri)
    name = registered_model_name(model.area)
    content_hash = model.content_hash()
    found = find_version(client, name, content_hash)
    if found is not None:
        reg = Registration(
            name,
            str(found.version),
            content_hash,
            found.run_id or "",
            _model_id(found),
            reused=True,
        )
        log.info("%s: content already registered as %s; not registered again", model.area, reg)
    else:
        with tempfile.TemporaryDirectory(prefix="riskml-area-model-") as tmp:
            folder = Path(tmp) / ARTIFACT_KEY
            model.save(folder)  # the artifacts: the model's own files, nothing beside them
            reg = _log_and_register(
                model, folder, client, root, experiment, run_params, run_metrics, sample
            )
        client.update_model_version(name, reg.version, description=card(reg))
    client.set_registered_model_alias(name, CHALLENGER, reg.version)
    if CHAMPION not in aliases(client, name):
        client.set_registered_model_alias(name, CHAMPION, reg.version)
    model.registration = reg.with_aliases(client)
    return model.registration


def _log_and_register(
    model: AreaModel,
    folder: Path,
    client: MlflowClient,
    root: Path,
    experiment: str,
    run_params: dict[str, Any],
    run_metrics: dict[str, float],
    sample: pd.DataFrame | None,
) -> Registration:
    from mlflow.models import infer_signature

    uri = client.tracking_uri
    exp_id = tracking.ensure_experiment(root, experiment, uri)
    name = registered_model_name(model.area)
    content_hash = model.content_hash()
    signature = example = None
    if sample is not None and len(sample):
        x = sample[model.feature_names_].astype("float64").reset_index(drop=True)
        out = AreaPyfunc()
        out.model = model
        signature = infer_signature(x, out.predict(None, x))
        example = x.head(INPUT_EXAMPLE_ROWS)
    tags = tracking.run_tags(root, area=model.area, stage="register")
    with mlflow.start_run(experiment_id=exp_id, run_name=f"model-{model.area}", tags=tags) as run:
        mlflow.log_params(run_params)
        mlflow.log_metrics(run_metrics)
        mlflow.set_tags({HASH_TAG: content_hash, ESTIMATOR_TAG: model.estimator_hash()})
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=AreaPyfunc(),
            artifacts={ARTIFACT_KEY: str(folder)},
            signature=signature,
            input_example=example,
            # Stated, not inferred: inference imports the model in a subprocess (~8 s a run).
            pip_requirements=_requirements(),
            tags={HASH_TAG: content_hash},
        )
    version = client.create_model_version(
        name=_ensure_registered(client, name),
        source=info.model_uri,
        run_id=run.info.run_id,
        tags=_tags(model, content_hash),
        model_id=info.model_id,
    )
    return Registration(name, str(version.version), content_hash, run.info.run_id, info.model_id)


def _ensure_registered(client: MlflowClient, name: str) -> str:
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(
            name,
            description="riskml area model (classifier(s), recovery regression, rank key, "
            "threshold, calibration); aliases champion / challenger",
        )
    return name


def _requirements() -> list[str]:
    from importlib.metadata import version

    pkgs = ("riskml", "lightgbm", "mlflow", "pandas", "numpy", "scikit-learn", "pandera")
    out = []
    for pkg in pkgs:
        try:
            out.append(f"{pkg}=={version(pkg)}")
        except Exception:  # noqa: BLE001 - a package missing from the metadata is left out
            continue
    return out


def _model_id(mv: Any) -> str:
    """The MLflow 3 logged-model id of a version (``models:/m-...`` source when the store
    leaves ``model_id`` empty)."""
    mid = getattr(mv, "model_id", None)
    if mid:
        return str(mid)
    source = str(getattr(mv, "source", "") or "")
    return source.removeprefix("models:/") if source.startswith("models:/m-") else ""


def resolve(
    client: MlflowClient, area: str, *, version: str | None = None, alias: str | None = None
) -> Registration:
    """The registration of ``riskml-<area>`` version ``version`` or alias ``alias``."""
    name = registered_model_name(area)
    try:
        mv = (
            client.get_model_version(name, str(version))
            if version is not None
            else client.get_model_version_by_alias(name, alias or CHAMPION)
        )
    except MlflowException as exc:
        which = f"version {version}" if version is not None else f"alias {alias or CHAMPION!r}"
        raise RiskmlError(
            f"MLflow registry: {name} has no {which}; train the area (`riskml train --area "
            f"{area}`) and promote (`riskml promote`), or run `riskml registry sync`"
        ) from exc
    reg = Registration(
        name,
        str(mv.version),
        (mv.tags or {}).get(HASH_TAG, ""),
        mv.run_id or "",
        _model_id(mv),
    )
    return reg.with_aliases(client)


def load(
    root: Path,
    area: str,
    *,
    version: str | None = None,
    alias: str | None = None,
    tracking_uri: str | None = None,
) -> AreaModel:
    """The whole area model of ``models:/riskml-<area>/<version>`` (or ``@alias``, default
    ``champion``), its :attr:`~AreaModel.registration` set; the content hash is checked."""
    client = client_for(root, tracking_uri)
    reg = resolve(client, area, version=version, alias=alias)
    # a local copy of a few files: MLflow's download bar would only clutter the stage logs
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        with tempfile.TemporaryDirectory(prefix="riskml-model-") as tmp:
            path = mlflow.artifacts.download_artifacts(
                artifact_uri=f"{reg.model_uri}/artifacts/{ARTIFACT_KEY}",
                dst_path=tmp,
                tracking_uri=client.tracking_uri,
            )
            model = AreaModel.load(Path(path))
    except (MlflowException, OSError) as exc:
        raise RiskmlError(
            f"{reg}: its files cannot be read from the MLflow store ({exc}); retrain the area "
            f"(`riskml train --area {area}`)"
        ) from exc
    if reg.content_hash and model.content_hash() != reg.content_hash:
        raise RiskmlError(f"{reg}: the files do not match the registered content hash")
    model.registration = reg
    return model


def local_registration(root: Path, area: str) -> dict[str, Any]:
    """``models/<area>/registration.json`` (the version the train stage registered), or {}."""
    path = Catalog(root).model(area) / REGISTRATION_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def load_trained(root: Path, area: str, *, tracking_uri: str | None = None) -> AreaModel:
    """The area model the train stage wrote (``models/<area>/``, a DVC output), with its
    registration (version and current aliases) when the registry has its content."""
    model = AreaModel.load(Catalog(root).model(area))
    try:
        client = client_for(root, tracking_uri)
        found = find_version(client, registered_model_name(area), model.content_hash())
    except MlflowException:
        found = None
    if found is not None:
        reg = Registration(
            registered_model_name(area),
            str(found.version),
            model.content_hash(),
            found.run_id or "",
            _model_id(found),
        )
        model.registration = reg.with_aliases(client)
    return model


def promoted_versions(root: Path) -> dict[str, dict[str, str]]:
    """Area → ``{"champion": v, "challenger": v}`` from ``metrics/promotion.json`` (the
    DVC-tracked decision); {} before the first promotion."""
    path = Catalog(root).promotion
    if not path.exists():
        return {}
    doc = json.loads(path.read_text(encoding="utf-8"))
    out = {}
    for area, r in doc.items():
        if isinstance(r, dict) and r.get("champion_version_after"):
            out[area] = {
                CHAMPION: str(r["champion_version_after"]),
                CHALLENGER: str(r.get("challenger_version") or r["champion_version_after"]),
            }
    return out


def list_model(root: Path, area: str, *, tracking_uri: str | None = None) -> AreaModel:
    """The model behind the area's candidate lists, case files and the service: the champion
    that ``metrics/promotion.json`` names, else the registry's ``champion`` alias.

    The registry's aliases are first brought in line with that file (:func:`sync`, which
    moves nothing when they agree): a cached ``dvc repro`` or a ``dvc exp apply`` restores the
    file but runs no code, so every consumer of a model (select, explain, ``riskml score``, the
    service, ``riskml registry show``) ends the disagreement before it loads anything."""
    promoted = promoted_versions(root).get(area)
    if promoted is not None:
        moved = sync(root, [area], tracking_uri=tracking_uri)[area]["moved"]
        if moved:
            log.info("%s: registry aliases moved to match %s: %s", area, PROMOTION_PATH, moved)
        return load(root, area, version=promoted[CHAMPION], tracking_uri=tracking_uri)
    return load(root, area, alias=CHAMPION, tracking_uri=tracking_uri)


def sync(root: Path, areas: list[str], *, tracking_uri: str | None = None) -> dict[str, Any]:
    """Point each area's ``champion`` and ``challenger`` aliases at the versions
    ``metrics/promotion.json`` names (the DVC-tracked state); return what moved. Areas the file
    does not name are left alone."""
    client = client_for(root, tracking_uri)
    promoted = promoted_versions(root)
    out: dict[str, Any] = {}
    for area in areas:
        want = promoted.get(area)
        if want is None:
            out[area] = {"note": "not in metrics/promotion.json: left alone"}
            continue
        name = registered_model_name(area)
        have = aliases(client, name)
        moved = {}
        for alias, version in want.items():
            try:
                client.get_model_version(name, version)
            except MlflowException as exc:
                raise RiskmlError(
                    f"{PROMOTION_PATH}: {name} v{version} is not in the registry at "
                    f"{client.tracking_uri}; rerun the pipeline (`dvc repro --force`) there"
                ) from exc
            if have.get(alias) != version:
                client.set_registered_model_alias(name, alias, version)
                moved[alias] = [have.get(alias), version]
        out[area] = {"champion": want[CHAMPION], "challenger": want[CHALLENGER], "moved": moved}
    return out
