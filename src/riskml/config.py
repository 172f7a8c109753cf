"""Typed configuration: ``params.yaml`` (one section per stage) and ``pipelines/<area>.yaml``."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from riskml.contract import CONTROL_KINDS, CONTROL_REASONS, RISK_AREAS, RiskmlError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataParams(_Section):
    source: Literal["simulate", "ingest"] = "simulate"
    ingest_file: str = ""
    ingest_mapping: str = ""
    seizures_file: str = ""  # with source=ingest: seizure intelligence (e.g. a CEN export)
    seizures_mapping: str = "cen_seizures"
    ingest_outcomes: str = ""  # optional control-results file (the mapping's `outcomes` section)


class SimulateParams(_Section):
    seed: int = 42
    n_items: int = Field(300_000, gt=0)
    start_date: date = date(2023, 1, 1)
    months: int = Field(24, ge=6)
    n_importers: int = Field(3000, gt=10)
    n_declarants: int = Field(300, gt=2)
    n_suppliers: int = Field(6000, gt=10)
    random_control_rate: float = Field(0.02, ge=0, le=1)
    targeted_rate: float = Field(0.03, ge=0, le=1)
    pca_rate: float = Field(0.01, ge=0, le=1)
    drift_month: int = Field(15, ge=0)


class SplitParams(_Section):
    train_start: date
    valid_start: date
    test_start: date
    test_end: date

    @model_validator(mode="after")
    def _ordered(self) -> SplitParams:
        if not (self.train_start < self.valid_start < self.test_start < self.test_end):
            raise ValueError(
                "split dates must satisfy train_start < valid_start < test_start < test_end"
            )
        return self


class FeatureParams(_Section):
    reference_months: int = Field(12, ge=1)
    min_reference_count: int = Field(5, ge=1)
    prior_strength: float = Field(20.0, ge=0)


class TrainParams(_Section):
    objective: Literal["binary"] = "binary"
    num_leaves: int = Field(31, ge=2)
    learning_rate: float = Field(0.05, gt=0, le=1)
    num_boost_round: int = Field(1000, ge=1)
    early_stopping_rounds: int = Field(50, ge=1)
    min_valid_positives: int = Field(10, ge=1)
    # An area with fewer positives than this in [train_start, test_start) is not trained: the
    # train stage writes models/<area>/skipped.json and every later stage skips the area.
    min_positives: int = Field(20, ge=1)
    min_child_samples: int = Field(20, ge=1)
    feature_fraction: float = Field(0.8, gt=0, le=1)
    bagging_fraction: float = Field(0.8, gt=0, le=1)
    bagging_freq: int = Field(1, ge=0)
    lambda_l2: float = Field(1.0, ge=0)
    # LightGBM's extremely randomised trees: each feature's split threshold is drawn at random
    # and the best of those kept (a regulariser for a few dozen positives); false: the best
    # threshold of the histogram, as LightGBM's default.
    extra_trees: bool = False
    seed: int = 42
    num_threads: int = Field(2, ge=1)
    # Recency weighting: a training row's weight halves every this many months of its age at the
    # end of the training window (weights scaled to mean 1); 0 = every row weighs the same.
    recency_half_life_months: float = Field(0.0, ge=0)
    # Refit on every labelled row known before the cut (train and early-stopping windows) with
    # the early-stopped number of trees scaled by the rows gained; false: keep the early-stopped
    # model, which never sees the latest labelled months.
    refit: bool = True
    # The refit's tree count chosen by this many expanding-window time-series folds instead of
    # the one early-stopping slice (1: the slice, as before): the last months before the cut,
    # reaching back until they hold tree_folds x min_valid_positives positives, are cut into
    # this many blocks of whole months; fold k trains on every labelled row before its block
    # and validates on it; the folds boost in lockstep and the count is the first maximum of the
    # average precision of their pooled out-of-fold predictions (riskml.train.fold_tree_count).
    tree_folds: int = Field(1, ge=1)
    # The refit grows at least this many trees of its own stage, whatever early stopping or the
    # folds chose (0: no floor): a slice with a handful of positives can peak after 3 trees.
    min_refit_trees: int = Field(0, ge=0)
    # The refit model holds at least this many trees, both stages together (0: no floor): the
    # own stage grows what the first stage's refit leaves missing, so the floor binds only where
    # both stages stopped early (a collapse of the early-stopping slice), never on an own stage
    # that is short because its first stage carries the model. A first stage ignores it.
    min_model_trees: int = Field(0, ge=0)
    # Rows each tree of a fit is grown on, at most (about): a fit whose trees would see more
    # (bagging_fraction x its rows) grows each tree on this many by gradient-based one-side
    # sampling instead of bagging (LightGBM GOSS: the half with the largest gradients, the
    # positives among them, plus a random half of the others weighted up, so the probabilities
    # stay unbiased); null: every fit bags bagging_fraction of its rows. Keeps a fit's cost
    # linear in its rows when more rows let early stopping keep more trees
    # (riskml.train.row_sampling, docs/performance.md, issue 13).
    max_rows_per_tree: int | None = Field(None, ge=100)
    # Rows a fit is trained on, at most (about): a fit (train, early-stopping or refit rows) with
    # more keeps every positive and a random share of its negatives (by key hash and seed), each
    # kept negative weighted by the inverse of that share, so the gradients, leaf values and
    # probabilities stay unbiased; null: every labelled row. Bounds the rows and, since early
    # stopping on as many rows keeps about as many trees, the trees of a fit once the labelled
    # rows pass it (riskml.train.negative_sampling, docs/performance.md, issue 13).
    max_training_rows: int | None = Field(None, ge=100)
    # The area's own stage may only raise its score with more of the area's own intelligence:
    # past findings and hit rates of the area, seizures of the area reported elsewhere, the
    # area's legacy-rule score (LightGBM monotone constraints, riskml.train.monotone_constraints).
    # A prior for areas with a few dozen biased labels; see docs/results.md (issue 15).
    monotone_own_intelligence: bool = False
    # Weight of a labelled row by why its deciding control was made (outcomes.control_reason:
    # profile, intelligence, random, other), e.g. {intelligence: 0.25}; a reason not listed, or
    # not recorded, weighs 1. Tip-offs follow the hidden risk, so their hit rates overstate the
    # population's; see riskml.train.reason_weights and docs/results.md (issue 15, session 8).
    reason_weights: dict[str, float] = {}
    # How many times as likely a control made for this reason is to find an offence as a
    # profile control of an item that looks the same, e.g. {intelligence: 6}: its positives
    # weigh 1 / that (a case-control correction: the weighted odds are the population's).
    reason_odds: dict[str, float] = {}
    # Positive-unlabelled learning: this share of the items never controlled for the area (as
    # known before the cut; a fixed sample by key) join the training rows as negatives, each
    # weighing unlabelled_weight (a labelled row weighs 1). Offences are rare among items nobody
    # checked; the sample restores the contrast that selective controls hide (the legacy rules'
    # goods look no riskier than others among controlled items). 0 = labelled rows only.
    # riskml.labels.with_unlabelled_negatives; docs/results.md (issue 15, session 11).
    unlabelled_share: float = Field(0.0, ge=0, le=1)
    unlabelled_weight: float = Field(1.0, gt=0)
    # Reliable negatives: this share of the sampled never-controlled items, those a first fit
    # on the labels alone (the same settings, no sample) scores highest, is left out of the
    # negatives: the items nobody checked that look most like the findings are the ones most
    # likely to be offences (0 = every sampled item is a negative; riskml.train.screen_unlabelled).
    unlabelled_screen: float = Field(0.0, ge=0, lt=1)

    @field_validator("reason_weights", "reason_odds")
    @classmethod
    def _known_reasons(cls, v: dict[str, float], info: Any) -> dict[str, float]:
        bad = sorted(set(v) - set(CONTROL_REASONS))
        if bad:
            raise ValueError(
                f"{info.field_name}: unknown control reason(s) {bad}; allowed: "
                f"{', '.join(CONTROL_REASONS)}"
            )
        low = 0.0 if info.field_name == "reason_weights" else 1e-9
        out_of_range = sorted(k for k, w in v.items() if not w >= low)
        if out_of_range:
            sign = ">= 0" if low == 0 else "> 0"
            raise ValueError(f"{info.field_name}: values must be {sign} (got {out_of_range})")
        return v


class TuneParams(_Section):
    """``riskml tune --area A`` (opt-in random search; not a pipeline stage)."""

    n_trials: int = Field(12, ge=1)
    seed: int = 42


class EvaluateParams(_Section):
    seed: int = 42


class BacktestParams(_Section):
    """Rolling-origin backtest (``riskml backtest``): windows, protocols, bootstrap."""

    n_windows: int = Field(3, ge=1)
    window_months: int = Field(2, ge=1)
    protocols: list[Literal["rolling", "static"]] = Field(["rolling", "static"], min_length=1)
    n_boot: int = Field(500, ge=10)
    ci_level: float = Field(0.95, gt=0, lt=1)
    label_delay_days: int = Field(60, ge=0)  # result date of outcomes that have none
    num_threads: int = Field(1, ge=1)  # LightGBM threads of the backtest's many small models
    seed: int = 42


class PromoteParams(_Section):
    """Promotion (``riskml promote``): challenger becomes champion only if better by margin."""

    metric: Literal[
        "precision", "recall", "revenue_share", "precision_normalised", "average_precision"
    ] = "precision"
    margin: float = Field(0.0, ge=0)  # absolute: challenger > champion + margin


class ExplainParams(_Section):
    n_reasons: int = Field(5, ge=1, le=10)
    n_lowering: int = Field(2, ge=0, le=10)  # reasons that lower the risk, per candidate
    chunk_size: int = Field(2000, ge=1)
    global_sample: int = Field(2000, ge=10)  # scored rows behind the importance and beeswarm plots
    case_images: int = Field(20, ge=0)  # waterfall images per area, for its first candidates
    seed: int = 42


class FairnessParams(_Section):
    # names or shell-style patterns (case-insensitive) of features no model may use
    protected_features: list[str] = ["*nationality*", "*ethnic*", "*religion*", "*gender*"]


class SelectParams(_Section):
    random_share: float = Field(0.1, ge=0, lt=1)
    max_per_importer: int = Field(10, ge=1)
    seed: int = 42
    overall_capacity: float = Field(0, ge=0)  # 0: no overall cap; < 1: share; >= 1: a count
    aggregate_period: Literal["", "M", "Q"] = "Q"  # importer-period list ("" = none)
    aggregate_top_items: int = Field(3, ge=1)
    watchlists: str = "pipelines/rules/watchlists.yaml"  # rule profiles and watch lists


class ServeParams(_Section):
    database_url: str = "sqlite:///data/feedback/feedback.db"  # or postgresql+psycopg://...
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    max_batch: int = Field(100_000, ge=1)  # rows per POST /score
    page_size: int = Field(50, ge=1, le=1000)
    max_body_mb: float = Field(64, gt=0)  # POST /score body; other bodies: 64 KB
    session_hours: float = Field(8, gt=0)  # a reviewer-page sign-in lasts this long
    token_days: float = Field(90, ge=0)  # new and rotated tokens expire (0: never)
    cookie_secure: bool = False  # true behind TLS: the session cookie is sent over HTTPS only
    currency: str = "LCU"  # code shown beside amounts on the pages (LCU: local currency unit)
    # service processes (`riskml serve --workers`); each holds its own models and data
    workers: int = Field(1, ge=1)


class ComputeParams(_Section):
    """Where the features, training and scoring run (docs/cluster.md)."""

    backend: Literal["local", "dask"] = "local"
    # with dask: a scheduler address ("tcp://host:8786"); None: a LocalCluster on this machine
    scheduler: str | None = None
    n_workers: int = Field(2, ge=1)  # LocalCluster worker processes (scheduler None)
    connect_timeout_s: float = Field(30, gt=0)
    # local: build the features month by month from the history's profiles (peak memory: the
    # profiles plus one month's features) instead of all items at once; same values bit for bit
    out_of_core: bool = False


class MlflowParams(_Section):
    experiment: str = "riskml"


class Params(_Section):
    """The whole of ``params.yaml``."""

    areas: list[str] = list(RISK_AREAS)
    data: DataParams = DataParams()
    simulate: SimulateParams = SimulateParams()
    split: SplitParams
    features: FeatureParams = FeatureParams()
    train: TrainParams = TrainParams()
    tune: TuneParams = TuneParams()
    evaluate: EvaluateParams = EvaluateParams()
    backtest: BacktestParams = BacktestParams()
    promote: PromoteParams = PromoteParams()
    explain: ExplainParams = ExplainParams()
    fairness: FairnessParams = FairnessParams()
    select: SelectParams = SelectParams()
    serve: ServeParams = ServeParams()
    mlflow: MlflowParams = MlflowParams()
    compute: ComputeParams = ComputeParams()

    @field_validator("areas")
    @classmethod
    def _known_areas(cls, v: list[str]) -> list[str]:
        return _check_areas(v)


def _check_areas(v: list[str]) -> list[str]:
    """``v`` when every name is a risk area, else a ValueError naming the unknown ones."""
    bad = sorted(set(v) - set(RISK_AREAS))
    if bad:
        raise ValueError(f"unknown risk area(s) {bad}; allowed: {', '.join(RISK_AREAS)}")
    return v


class Rule(_Section):
    """A transparent targeting rule: every condition must hold (AND); a list is a set of values.

    For ``hs_code`` the values are prefixes (chapter, heading, subheading).
    """

    name: str
    when: dict[str, list[Any]]
    weight: float = 1.0


def _check_train_keys(v: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(v) - set(TrainParams.model_fields))
    if unknown:
        allowed = ", ".join(TrainParams.model_fields)
        raise ValueError(f"unknown train setting(s) {unknown}; allowed: {allowed}")
    return v


class FirstStage(_Section):
    """``first_stage`` of ``pipelines/<area>.yaml``: train the area's model in two stages.

    The first stage learns on the findings of any area of ``pool`` (positives) and the area's own
    negatives (controls of a kind that can detect it and found nothing of it); the area's own
    labels then continue from its trees (one Booster, see :mod:`riskml.train`).
    """

    pool: list[str] = Field(min_length=1)  # areas whose labelled rows and findings feed it
    train: dict[str, Any] = {}  # overrides of the area's train settings, first stage only

    @field_validator("pool")
    @classmethod
    def _known_pool(cls, v: list[str]) -> list[str]:
        _check_areas(v)
        if len(set(v)) != len(v):
            raise ValueError(f"an area is listed twice in {v}")
        return v

    @field_validator("train")
    @classmethod
    def _train_keys(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _check_train_keys(v)


# Sections of ``pipelines/<area>.yaml``, by concern, and the AreaSpec fields each holds. A stage
# lists in dvc.yaml only the sections and keys it reads (``pipelines/<area>.yaml: [policy]``), so
# that an edit reruns only the stages that read it (docs/architecture.md).
SPEC_SECTIONS: dict[str, tuple[str, ...]] = {
    "labels": ("positive", "detectable_by"),
    "features": ("legacy_rules",),
    "training": ("exclude_features", "negative_kinds", "train", "first_stage"),
    "policy": ("rank_by", "recovery_exponent", "capacity", "capacity_share"),
    "evaluation": ("inspection_rates", "operating_rate"),
}
SPEC_TOP_LEVEL = ("name", "title")
_SECTION_OF = {field: section for section, fields in SPEC_SECTIONS.items() for field in fields}
_REMOVED = {
    "hs_scope": "it was never applied (every HS code was scored); leave features out with "
    "training.exclude_features and target codes with features.legacy_rules",
}


class AreaSpec(_Section):
    """One risk area's spec, from ``pipelines/<area>.yaml``.

    The file groups the fields in sections (:data:`SPEC_SECTIONS`); the object keeps them flat
    (``spec.recovery_exponent`` is the file's ``policy.recovery_exponent``).
    """

    name: str
    title: str
    # labels: what counts as a positive, and which control kinds can find one
    positive: str
    detectable_by: list[str]
    # features: the legacy targeting rules (the feature rule_<area>, the simulated legacy
    # controls and the legacy-rule baseline)
    legacy_rules: list[Rule] = []
    # training
    exclude_features: list[str] = []
    # The control kinds whose clean results train the area as negatives; None: every kind of
    # detectable_by. A kind that misses many of the offences it meets (a documentary check finds
    # half of environment's) leaves them among its clean results. Training only: the simulated
    # controls, the features' hit rates and every measurement on labelled rows keep every kind
    # of detectable_by (riskml.labels.build_labels).
    negative_kinds: list[str] | None = None
    train: dict[str, Any] = {}  # overrides of params.yaml's train section for this area
    first_stage: FirstStage | None = None  # set: two-stage training (see FirstStage)
    # policy: how the lists are drawn
    rank_by: Literal["probability", "expected_recovery"] = "probability"
    # With rank_by expected_recovery: key = probability x predicted recovered duty ** this.
    # 1 ranks by expected recovery (most duty), 0 by probability (most hits); in between trades
    # one for the other (chosen on development windows, see docs/results.md).
    recovery_exponent: float = Field(default=1.0, ge=0.0, le=1.0)
    capacity: int = Field(gt=0)
    capacity_share: float | None = Field(None, gt=0, le=1)  # set: share of the period's items
    # evaluation
    inspection_rates: list[float]
    operating_rate: float = Field(gt=0, le=1)

    @field_validator("train")
    @classmethod
    def _train_keys(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _check_train_keys(v)

    @model_validator(mode="after")
    def _pool_holds_the_area(self) -> AreaSpec:
        if self.first_stage is not None and self.name not in self.first_stage.pool:
            raise ValueError(
                f"first_stage.pool {self.first_stage.pool} must include the area itself "
                f"({self.name!r}): its first stage learns its own findings too"
            )
        return self

    @field_validator("name")
    @classmethod
    def _known_area(cls, v: str) -> str:
        if v not in RISK_AREAS:
            raise ValueError(f"unknown risk area {v!r}; allowed: {', '.join(RISK_AREAS)}")
        return v

    @field_validator("detectable_by")
    @classmethod
    def _known_controls(cls, v: list[str]) -> list[str]:
        bad = sorted(set(v) - set(CONTROL_KINDS))
        if bad:
            raise ValueError(f"unknown control kind(s) {bad}; allowed: {', '.join(CONTROL_KINDS)}")
        return v

    @model_serializer(mode="wrap")
    def _unset_negative_kinds_left_out(
        self, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> dict[str, Any]:
        # Unset, the key is left out of the dump: every digest of a spec (the features' setup,
        # riskml.features_stage.setup_digest) is what it was before the setting existed; the
        # features never read it (labels of training only).
        out = handler(self)
        if self.negative_kinds is None:
            out.pop("negative_kinds", None)
        return out

    @field_validator("negative_kinds")
    @classmethod
    def _negative_kinds(cls, v: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if v is None:
            return v
        detectable = info.data.get("detectable_by")
        if detectable is None:  # detectable_by itself invalid: reported on its own
            return v
        outside = [k for k in v if k not in detectable]
        if outside:
            raise ValueError(
                f"control kind(s) {outside} not in labels.detectable_by {detectable}: only a "
                "kind that can detect the area gives negatives; allowed: "
                f"{', '.join(detectable)}"
            )
        if not v:
            raise ValueError(
                "no control kind: the area would have no negative; leave the key out for every "
                "kind of labels.detectable_by"
            )
        if len(set(v)) != len(v):
            raise ValueError(f"a control kind is listed twice in {v}")
        return v

    @field_validator("inspection_rates")
    @classmethod
    def _rates(cls, v: list[float]) -> list[float]:
        if not v or any(not 0 < r <= 1 for r in v):
            raise ValueError("inspection_rates must be a non-empty list of fractions in (0, 1]")
        return sorted(v)


def spec_document(spec: AreaSpec) -> dict[str, Any]:
    """``spec`` as the sectioned mapping of ``pipelines/<area>.yaml`` (for writing the file)."""
    flat = spec.model_dump(mode="json")
    doc: dict[str, Any] = {k: flat[k] for k in SPEC_TOP_LEVEL}
    for section, fields in SPEC_SECTIONS.items():
        doc[section] = {f: flat[f] for f in fields if f in flat}  # an unset key is left out
    return doc


def _misplaced(where: str, field: str, allowed: tuple[str, ...]) -> str:
    """The problem line for ``field`` found at ``where`` (a section, or "" for the top level)."""
    at = f"{where}.{field}" if where else field
    if field in _REMOVED:
        return f"  {at}: no longer a setting ({_REMOVED[field]}); delete it"
    if field in _SECTION_OF:
        section = _SECTION_OF[field]
        return f"  {at}: belongs in section {section}: (as {section}.{field})"
    return f"  {at}: unknown entry; allowed{f' in {where}' if where else ''}: {', '.join(allowed)}"


def _flatten_spec(path: Path, data: dict[str, Any]) -> dict[str, Any]:
    """The sectioned file ``data`` as AreaSpec's flat fields; a misplaced entry is named with
    the section it belongs in."""
    problems: list[str] = []
    flat = {k: data[k] for k in SPEC_TOP_LEVEL if k in data}
    for key, value in data.items():
        if key in SPEC_TOP_LEVEL:
            continue
        if key not in SPEC_SECTIONS:
            problems.append(_misplaced("", key, (*SPEC_TOP_LEVEL, *SPEC_SECTIONS)))
        elif not isinstance(value, dict):
            problems.append(f"  {key}: expected a mapping of {', '.join(SPEC_SECTIONS[key])}")
        else:
            for field, v in value.items():
                if field in SPEC_SECTIONS[key]:
                    flat[field] = v
                else:
                    problems.append(_misplaced(key, field, SPEC_SECTIONS[key]))
    if problems:
        raise RiskmlError(f"{path}: invalid area spec, fix these entries:\n" + "\n".join(problems))
    return flat


def area_train_params(params: Params, spec: AreaSpec) -> TrainParams:
    """The ``train`` section with the area's own overrides applied (and validated)."""
    try:
        return TrainParams.model_validate(params.train.model_dump() | spec.train)
    except ValidationError as exc:
        raise _explain(Path(f"pipelines/{spec.name}.yaml"), exc, prefix="training.train") from exc


def train_overrides(params: Params, spec: AreaSpec) -> dict[str, tuple[Any, Any]]:
    """The ``train`` settings the area's spec changes, as ``{key: (before, after)}``:
    ``training.train.<k>`` against params.yaml's ``train``, and (two-stage areas)
    ``training.first_stage.train.<k>`` against the area's own settings. Equal values are not
    overrides."""
    out: dict[str, tuple[Any, Any]] = {}
    area = area_train_params(params, spec).model_dump()
    for key in spec.train:
        if area[key] != getattr(params.train, key):
            out[f"training.train.{key}"] = (getattr(params.train, key), area[key])
    if spec.first_stage is not None:
        first = first_stage_train_params(area_train_params(params, spec), spec).model_dump()
        for key in spec.first_stage.train:
            if first[key] != area[key]:
                out[f"training.first_stage.train.{key}"] = (area[key], first[key])
    return out


def describe_overrides(spec: AreaSpec, overrides: dict[str, tuple[Any, Any]]) -> str:
    """One line naming the spec file and each override of :func:`train_overrides`."""
    if not overrides:
        return f"pipelines/{spec.name}.yaml overrides no train setting of params.yaml"
    changes = ", ".join(f"{k} {before} -> {after}" for k, (before, after) in overrides.items())
    return f"pipelines/{spec.name}.yaml overrides params.yaml's train settings: {changes}"


def first_stage_train_params(params: TrainParams, spec: AreaSpec) -> TrainParams:
    """``params`` (the area's train settings) with ``spec.first_stage.train`` applied."""
    overrides = spec.first_stage.train if spec.first_stage is not None else {}
    try:
        return TrainParams.model_validate(params.model_dump() | overrides)
    except ValidationError as exc:
        raise _explain(
            Path(f"pipelines/{spec.name}.yaml"), exc, prefix="training.first_stage.train"
        ) from exc


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except FileNotFoundError as exc:
        raise RiskmlError(f"{path}: file not found") from exc
    except yaml.YAMLError as exc:
        raise RiskmlError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise RiskmlError(f"{path}: expected a mapping at the top level")
    return data


def _explain(
    path: Path, exc: ValidationError, prefix: str = "", sections: dict[str, str] | None = None
) -> RiskmlError:
    """The validation errors of ``path`` as one message; ``sections`` maps a top-level field to
    the file section that holds it."""
    lines = []
    for err in exc.errors():
        loc = list(err["loc"])
        if sections and loc and loc[0] in sections:
            loc.insert(0, sections[loc[0]])
        where = ".".join(str(p) for p in (prefix, *loc) if p != "")
        lines.append(f"  {where}: {err['msg']}" if where else f"  {err['msg']}")
    return RiskmlError(f"{path}: invalid configuration, fix these entries:\n" + "\n".join(lines))


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate ``params.yaml``; raise :class:`RiskmlError` naming the bad entries."""
    path = Path(path)
    try:
        return Params.model_validate(_read_yaml(path))
    except ValidationError as exc:
        raise _explain(path, exc) from exc


def load_area_spec(path: str | Path) -> AreaSpec:
    """Read and validate one ``pipelines/<area>.yaml`` (sections: :data:`SPEC_SECTIONS`)."""
    path = Path(path)
    try:
        return AreaSpec.model_validate(_flatten_spec(path, _read_yaml(path)))
    except ValidationError as exc:
        raise _explain(path, exc, sections=_SECTION_OF) from exc


def load_area_specs(folder: str | Path = "pipelines") -> dict[str, AreaSpec]:
    """Every area spec in ``folder``, keyed by area name, in the canonical area order."""
    folder = Path(folder)
    loaded = [(p, load_area_spec(p)) for p in sorted(folder.glob("*.yaml"))]
    paths = {spec.name: p for p, spec in loaded}
    specs = {spec.name: spec for _, spec in loaded}
    if not specs:
        raise RiskmlError(f"{folder}: no area spec (*.yaml) found")
    for name, spec in specs.items():
        missing = [a for a in (spec.first_stage.pool if spec.first_stage else []) if a not in specs]
        if missing:
            raise RiskmlError(
                f"{paths[name]}: training.first_stage.pool names area(s) {missing} without a "
                f"spec in {folder}; add {folder}/<area>.yaml or take them out of the pool"
            )
    return {a: specs[a] for a in RISK_AREAS if a in specs}
