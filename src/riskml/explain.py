"""TreeSHAP contributions for audit candidates, turned into reasons in plain words.

LightGBM computes exact TreeSHAP values with ``Booster.predict(X, pred_contrib=True)`` (the values
``shap.TreeExplainer`` gives); the cost is ~1000x a plain predict, so only candidates are
explained, in chunks, never the whole population. Contributions are in log-odds and, with the
bias column, add up to the raw score: :func:`check_additivity` verifies it on every chunk.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pandera.pandas as pa

from riskml.area_model import check_additivity, contributions
from riskml.config import AreaSpec, Params
from riskml.contract import KEY, RiskmlError
from riskml.features.catalogue import fill_reason

__all__ = ["check_additivity", "contributions"]  # TreeSHAP lives with the area model

log = logging.getLogger(__name__)

EXPLANATION_COLUMNS = [
    "declaration_id",
    "item_no",
    "rank",
    "direction",
    "feature",
    "group",
    "value",
    "contribution",
    "sentence",
]

#: The one row a random-control pick gets in the explanations table (direction ``none``).
NO_REASONS = "random control: chosen at random to measure compliance, no risk reasons"

DIRECTIONS = ("raises", "lowers", "none")


def _signs_agree(df: pd.DataFrame) -> pd.Series:
    sign = np.sign(df["contribution"])
    want = df["direction"].map({"raises": 1.0, "lowers": -1.0, "none": 0.0})
    return (sign == want) | ((df["direction"] == "none") & df["contribution"].isna())


#: What ``data/explanations/<area>.parquet`` holds: one row per reason of a candidate.
EXPLANATION_SCHEMA = pa.DataFrameSchema(
    {
        "declaration_id": pa.Column(str),
        "item_no": pa.Column("int64", pa.Check.ge(1)),
        "rank": pa.Column("int64", pa.Check.ge(1)),
        "direction": pa.Column(str, pa.Check.isin(DIRECTIONS)),
        "feature": pa.Column(str, nullable=True),
        "group": pa.Column(str, nullable=True),
        "value": pa.Column(float, nullable=True),
        "contribution": pa.Column(float, nullable=True),
        "sentence": pa.Column(str, pa.Check.str_length(min_value=1)),
    },
    checks=[
        pa.Check(_signs_agree, error="a reason's contribution has the wrong sign"),
        pa.Check(
            lambda df: ~df.duplicated([*KEY, "direction", "rank"]),
            error="two reasons share a candidate, direction and rank",
        ),
    ],
    strict=True,
    ordered=True,
    coerce=False,
)


def validate_explanations(table: pd.DataFrame, *, where: str = "explanations") -> pd.DataFrame:
    """``table`` checked against :data:`EXPLANATION_SCHEMA` (all failures reported at once);
    raises :class:`RiskmlError` naming the column, the check and a failing row."""
    try:
        return EXPLANATION_SCHEMA.validate(table, lazy=True)
    except (pa.errors.SchemaErrors, pa.errors.SchemaError) as exc:
        cases = getattr(exc, "failure_cases", None)
        detail = str(exc).splitlines()[0] if cases is None else cases.head(5).to_string()
        raise RiskmlError(f"{where}: the explanations table breaks its schema:\n{detail}") from exc


def sentence(feature: str, row: Mapping[str, Any], catalogue: Mapping[str, Any]) -> str:
    """The plain-language sentence for ``feature`` on ``row``, from its catalogue template."""
    info = catalogue.get(feature)
    if info is None:
        return f"{feature} = {_plain(row.get(feature))}"
    text = fill_reason(info, row)
    if text is None:
        text = f"{info.description}: {_plain(row.get(feature))}"
    return text


def _plain(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return "unknown" if math.isnan(value) else f"{value:,.3g}"
    return str(value)


def reasons(
    rows: pd.DataFrame,
    contrib: pd.DataFrame,
    catalogue: Mapping[str, Any],
    *,
    n_up: int = 5,
    n_down: int = 2,
) -> pd.DataFrame:
    """The strongest contributions of each row as sentences: ``n_up`` that raise the risk
    (rank 1 = strongest) and ``n_down`` that lower it (direction ``lowers``).

    ``rows`` holds, for the same index as ``contrib``, the key, the feature values and the
    ``ctx_`` peer facts the templates refer to.
    """
    feats = contrib.drop(columns="bias")
    records = []
    values = feats.to_numpy()
    names = np.asarray(feats.columns)
    # Once a direction has its reasons, a further feature only matters if it can repeat a
    # sentence already given; repeats come from features of one group (a price gap per kg and per
    # quantity unit in kg), so features of other groups are not formatted.
    group_of = {name: getattr(catalogue.get(name), "group", name) for name in names}
    for i, row in enumerate(rows.to_dict("records")):
        order = np.argsort(-values[i], kind="stable")
        for direction, sequence, limit in (
            ("raises", order, n_up),
            ("lowers", order[::-1], n_down),
        ):
            # Two features can say the same thing (a gap as a z-score and as a percentage):
            # a sentence is given once, with the contributions of the features behind it.
            said: dict[str, dict[str, Any]] = {}
            said_groups: set[str] = set()
            for j in sequence:
                value = values[i, j]
                if (direction == "raises" and value <= 0) or (direction == "lowers" and value >= 0):
                    break
                if len(said) == limit and group_of[names[j]] not in said_groups:
                    continue
                text = sentence(names[j], row, catalogue)
                if text in said:
                    said[text]["contribution"] += float(value)
                    continue
                if len(said) == limit:
                    continue
                info = catalogue.get(names[j])
                said_groups.add(group_of[names[j]])
                said[text] = {
                    "declaration_id": row["declaration_id"],
                    "item_no": row["item_no"],
                    "rank": len(said) + 1,
                    "direction": direction,
                    "feature": names[j],
                    "group": getattr(info, "group", "other"),
                    "value": _as_float(row.get(names[j])),
                    "contribution": float(value),
                    "sentence": text,
                }
            records.extend(said.values())
    out = pd.DataFrame.from_records(records, columns=EXPLANATION_COLUMNS)
    return out.astype({"item_no": "int64", "rank": "int64"})


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def candidate_rows(
    candidates: pd.DataFrame, features: pd.DataFrame, names: list[str]
) -> pd.DataFrame:
    """The feature rows (model features and ``ctx_`` facts) of ``candidates``, in their order."""
    rows = candidates[KEY].merge(features, on=KEY, how="left", validate="one_to_one")
    if len(rows) and rows[names].isna().all(axis=1).any():
        raise RiskmlError("some candidates have no features; rerun the features stage")
    return rows


def explain_area(
    model: Any,
    candidates: pd.DataFrame,
    features: pd.DataFrame,
    catalogue: Mapping[str, Any],
    *,
    n_reasons: int,
    chunk_size: int,
    n_lowering: int = 2,
) -> pd.DataFrame:
    """Reasons for ``candidates`` (a frame with the key), using their rows of ``features``;
    ``model``: an :class:`~riskml.area_model.AreaModel` (or a bare LightGBM Booster)."""
    if isinstance(model, lgb.Booster):
        rows = candidate_rows(candidates, features, model.feature_name())
        contrib = contributions(model, rows, chunk_size=chunk_size)
    else:
        rows = candidate_rows(candidates, features, model.feature_names_)
        contrib = model.contributions(rows, chunk_size=chunk_size)
    return reasons(rows, contrib, catalogue, n_up=n_reasons, n_down=n_lowering)


def no_reason_rows(picks: pd.DataFrame) -> pd.DataFrame:
    """One row per random-control pick saying that it carries no risk reasons."""
    out = pd.DataFrame(
        {
            "declaration_id": picks["declaration_id"].astype(str).to_numpy(),
            "item_no": picks["item_no"].astype("int64").to_numpy(),
            "rank": np.ones(len(picks), dtype="int64"),
            "direction": "none",
            "feature": None,
            "group": None,
            "value": np.full(len(picks), np.nan),
            "contribution": np.full(len(picks), np.nan),
            "sentence": NO_REASONS,
        },
        columns=EXPLANATION_COLUMNS,
    )
    return out.astype({"feature": object, "group": object})


def group_contributions(contrib: pd.DataFrame, catalogue: Mapping[str, Any]) -> pd.DataFrame:
    """Contributions summed by catalogue group (all ``imp_*`` features → ``importer history``),
    one column per group in order of first appearance, ``bias`` kept; the raw values stay in
    ``contrib``."""
    feats = contrib.drop(columns="bias", errors="ignore")
    groups = [getattr(catalogue.get(c), "group", "other") for c in feats.columns]
    out = feats.T.groupby(np.asarray(groups), sort=False).sum().T
    if "bias" in contrib:
        out["bias"] = contrib["bias"]
    return out


def shap_explanation(contrib: pd.DataFrame, rows: pd.DataFrame, names: list[str]) -> Any:
    """A ``shap.Explanation`` of the contributions (for shap's plots), without recomputing them."""
    import shap

    return shap.Explanation(
        values=contrib[names].to_numpy(),
        base_values=contrib["bias"].to_numpy(),
        data=rows[names].to_numpy(dtype=float),
        feature_names=names,
    )


def _save_figure(draw: Any, path: Path, *, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from riskml.io import atomic_path

    plt.close("all")
    draw()
    fig = plt.gcf()
    fig.suptitle(title, fontsize=10)
    fig.set_size_inches(8, max(4.0, fig.get_size_inches()[1]))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_global(explanation: Any, folder: Path, *, area: str, max_display: int = 15) -> list[Path]:
    """Global importance (mean |SHAP|, bar) and beeswarm images of ``explanation`` in
    ``folder``."""
    import shap

    n = len(explanation.values)
    return [
        _save_figure(
            lambda: shap.plots.bar(explanation, max_display=max_display, show=False),
            folder / "importance.png",
            title=f"{area}: mean |SHAP| (log-odds) on {n} scored test-window items",
        ),
        _save_figure(
            lambda: shap.plots.beeswarm(explanation, max_display=max_display, show=False),
            folder / "beeswarm.png",
            title=f"{area}: SHAP values of {n} scored test-window items",
        ),
    ]


def plot_waterfall(
    contrib: pd.Series, values: Mapping[str, Any], path: Path, *, title: str, max_display: int = 9
) -> Path:
    """The waterfall of one candidate: from the base value (``bias``) through its strongest
    contributions (the rest summed) to its raw score, in log-odds.

    Drawn with plain matplotlib (shap's waterfall costs ~10x more per image for the same bars).
    """
    from matplotlib.figure import Figure

    from riskml.io import atomic_path

    feats = contrib.drop("bias").astype(float)
    top = feats.reindex(feats.abs().sort_values(ascending=False).index[:max_display])
    rest = float(feats.sum() - top.sum())
    labels = [f"{n} = {_plain(values.get(n))}" for n in top.index]
    steps = list(top.to_numpy())
    if len(feats) > len(top):
        labels.append(f"{len(feats) - len(top)} other features")
        steps.append(rest)
    base = float(contrib["bias"])
    starts = base + np.concatenate([[0.0], np.cumsum(steps)[:-1]])
    fig = Figure(figsize=(8, 0.38 * len(steps) + 1.4))
    ax = fig.add_subplot()
    y = np.arange(len(steps))[::-1]
    colors = ["#c0392b" if v > 0 else "#2e6db4" for v in steps]
    ax.barh(y, steps, left=starts, color=colors, height=0.6)
    for yi, start, v in zip(y, starts, steps, strict=True):
        ax.text(
            start + v, yi, f" {v:+.2f} ", va="center", ha="left" if v > 0 else "right", fontsize=8
        )
    ax.axvline(base, color="#888", lw=0.8, ls="--")
    ax.axvline(base + sum(steps), color="#333", lw=0.8)
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlabel(f"log-odds: base {base:+.2f} -> score {base + sum(steps):+.2f}", fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.subplots_adjust(left=0.42, right=0.97, top=0.9, bottom=0.8 / fig.get_figheight())
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    return path


def case_image_name(row: Mapping[str, Any]) -> str:
    """File name of a candidate's waterfall image (and stem of its case file)."""
    return f"{row['declaration_id']}-{int(row['item_no'])}"


def global_sample(features: pd.DataFrame, params: Params, *, size: int, seed: int) -> pd.DataFrame:
    """A uniform random sample of the scored (test-window) rows, for global SHAP views."""
    dates = pd.to_datetime(features["accepted_date"])
    window = features[
        (dates >= pd.Timestamp(params.split.test_start))
        & (dates < pd.Timestamp(params.split.test_end))
    ]
    return window.sample(min(size, len(window)), random_state=seed)


def log_to_run(root: Path, run_id: str, folder: Path, *, artifact_path: str, area: str) -> None:
    """Log ``folder`` as artifacts of the model's MLflow training run (or, when that run belongs
    to another DVC experiment, of an ``explain-<area>`` run beside it)."""
    from riskml import tracking

    client = tracking.open_store(root)
    run_id = tracking.writable_run(client, run_id, root, f"explain-{area}", area=area,
                                   stage="explain")  # fmt: skip
    client.log_artifacts(run_id, str(folder), artifact_path=artifact_path)


def area_selection(
    root: Path,
    spec: AreaSpec,
    params: Params,
    model: Any,
    *,
    declarations: pd.DataFrame,
    outcomes: pd.DataFrame,
    features: pd.DataFrame,
) -> pd.DataFrame:
    """The area's candidate list by ``model`` (the champion), drawn by
    :func:`riskml.select.draw_area` on :func:`riskml.select.list_scores` as the ``select``
    stage draws it."""
    from riskml.select import draw_area, list_scores
    from riskml.watchlists import load_profile

    scores = list_scores(root, spec, model, {"frame": features})
    profile = load_profile(root / params.select.watchlists)
    return draw_area(scores, declarations, outcomes, spec, params, profile, model)[2]


def explain_one_area(
    root: Path,
    area: str,
    spec: AreaSpec,
    params: Params,
    *,
    features: pd.DataFrame,
    declarations: pd.DataFrame,
    outcomes: pd.DataFrame,
    catalogue: Mapping[str, Any],
) -> dict[str, Any]:
    """Explain one area: reasons table, SHAP plots, case files, artifacts in its MLflow run."""
    from riskml import casefile
    from riskml.fairness import check_protected
    from riskml.io import write_parquet
    from riskml.registry import list_model

    p = params.explain
    model = list_model(root, area)  # the champion: the lists are its lists
    names = model.feature_names_
    check_protected(names, params.fairness.protected_features, where=str(model.registration))
    selected = area_selection(
        root, spec, params, model, declarations=declarations, outcomes=outcomes, features=features
    )
    # random-control picks carry no reasons: the scored picks (model, rule, watch list) have them
    top = selected[selected["selection_kind"] != "random_control"]
    rows = candidate_rows(top, features, names)
    contrib = model.contributions(rows, chunk_size=p.chunk_size)
    table = reasons(rows, contrib, catalogue, n_up=p.n_reasons, n_down=p.n_lowering)
    randoms = no_reason_rows(selected[selected["selection_kind"] == "random_control"])
    table = pd.concat([table, randoms], ignore_index=True) if len(randoms) else table
    table = validate_explanations(table, where=f"data/explanations/{area}.parquet")
    write_parquet(table, root / "data/explanations" / f"{area}.parquet")

    plots = root / "plots/explain" / area
    sample = global_sample(features, params, size=p.global_sample, seed=p.seed)
    sample_contrib = model.contributions(sample, chunk_size=p.chunk_size)
    plot_global(shap_explanation(sample_contrib, sample, names), plots, area=area)
    images: dict[str, Path] = {}
    n_img = min(p.case_images, len(rows))
    for i, row in enumerate(rows.iloc[:n_img].to_dict("records")):
        name = case_image_name(row)
        title = f"{area} candidate {i + 1}: {row['declaration_id']} item {int(row['item_no'])}"
        path = plots / "cases" / f"{name}.png"
        images[name] = plot_waterfall(contrib.iloc[i], row, path, title=title)

    mlf = model.registration.as_dict()
    context = casefile.CaseContext(
        area=area,
        title=spec.title,
        capacity=len(selected),
        rank_by=spec.rank_by,
        random_share=params.select.random_share,
        model=casefile.model_version(mlf),
        snapshot=casefile.data_snapshot(root),
        created=casefile.today(),
    )
    grouped = pd.concat([rows[KEY], group_contributions(contrib, catalogue)], axis=1)
    pages = casefile.write_case_files(
        selected,
        table,
        candidate_rows(selected, features, names),
        grouped,
        images,
        context,
        root / "data/casefiles" / area,
    )
    if mlf.get("run_id"):
        log_to_run(root, mlf["run_id"], plots, artifact_path="explain", area=area)
        log_to_run(root, mlf["run_id"], pages.parent, artifact_path="explain/casefiles", area=area)
    return {
        "explained": len(top),
        "random_control": len(randoms),
        "case_files": len(selected),
        "model": str(model.registration),
    }


def run_explain(root: Path, params: Params, specs: dict[str, AreaSpec]) -> dict[str, Any]:
    """Stage entry: explain each area's model-selected candidates (the same selection the
    ``select`` stage makes) into ``data/explanations/<area>.parquet``, SHAP images in
    ``plots/explain/<area>/`` and case files in ``data/casefiles/<area>/``."""
    from riskml.features import catalogue_for
    from riskml.io import read_parquet

    features = read_parquet(root / "data/features/features.parquet")
    declarations = read_parquet(root / "data/interim/declarations.parquet")
    outcomes = read_parquet(root / "data/interim/outcomes.parquet")
    catalogue = catalogue_for(specs)
    summary: dict[str, Any] = {}
    models: dict[str, str] = {}
    for i, (area, spec) in enumerate(specs.items()):
        log.info("explain %s (area %d/%d)", area, i + 1, len(specs))
        out = explain_one_area(
            root,
            area,
            spec,
            params,
            features=features,
            declarations=declarations,
            outcomes=outcomes,
            catalogue=catalogue,
        )
        summary[area] = out["explained"]
        models[area] = out["model"]
    return {"explained": summary, "models": models}
