"""The ``explain`` stage: reasons, SHAP images and case files for the picks ``select`` made.

It reads each area's picks (``data/selection/picks/<area>.parquet``, written by the ``select``
stage with the champion) and never draws a selection itself: one stage's output is the next
one's input. The reasons come from :mod:`riskml.reasons` (TreeSHAP contributions, computed in
chunks and checked for additivity, turned into plain-language sentences).

With ``compute.backend: dask`` the TreeSHAP contributions (the picks', the shadow picks' and the
global sample's) are computed on the cluster (:meth:`riskml.area_model.AreaModel.contributions`
with the stage's client): the same values bit for bit, so the same files (tests/test_compute.py).
The picks' rows are read, and the sentences, images and case files written, in this process.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from riskml import compute
from riskml.catalog import Catalog
from riskml.config import AreaSpec, Params
from riskml.contract import KEY
from riskml.ranking import KEY_PROBABILITY
from riskml.reasons import (
    candidate_rows,
    no_reason_rows,
    reasons,
    validate_explanations,
    waterfall_steps,
)

log = logging.getLogger(__name__)


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


def _wrap(text: str, width: int) -> str:
    import textwrap

    lines = textwrap.wrap(text, width)
    return "\n".join(lines[:2]) + ("…" if len(lines) > 2 else "")


def plot_waterfall(reasons_of: list[Mapping[str, Any]], path: Path, *, title: str) -> Path | None:
    """The waterfall of one candidate in its reasons' words (:func:`waterfall_steps`): from the
    base (the average item) through each listed reason and "other" to the score, on the
    log-odds scale, with both ends also given as probabilities (the end is the score the header
    shows). ``None`` when the candidate has no reasons.

    Drawn with plain matplotlib (shap's waterfall costs ~10x more per image for the same bars).
    """
    from matplotlib.figure import Figure

    from riskml.io import atomic_path

    fall = waterfall_steps(reasons_of)
    if not fall:
        return None
    steps = fall["steps"]
    labels = [f"{s['name']}: {_wrap(s['sentence'], 60)}" if s["sentence"] else s["name"]
              for s in steps]  # fmt: skip
    labels = [f"base: the average item (p = {fall['base_probability']:.3f})", *labels,
              f"score (p = {fall['probability']:.3f})"]  # fmt: skip
    n = len(labels)
    fig = Figure(figsize=(10, 0.55 * n + 1.6))
    ax = fig.add_subplot()
    y = np.arange(n)[::-1]
    colors = {"raises": "#c0392b", "lowers": "#2e6db4", "other": "#999999"}
    ax.plot([fall["base"]], [y[0]], marker="D", color="#333")
    for yi, s in zip(y[1:-1], steps, strict=True):
        ax.barh(yi, s["push"], left=s["start"], color=colors[s["direction"]], height=0.6)
        end = s["start"] + s["push"]
        ax.text(end, yi, f" {s['push']:+.2f} ", va="center",
                ha="left" if s["push"] > 0 else "right", fontsize=8)  # fmt: skip
    ax.plot([fall["total"]], [y[-1]], marker="D", color="#333")
    ax.axvline(fall["base"], color="#888", lw=0.8, ls="--")
    ax.axvline(fall["total"], color="#333", lw=0.8)
    ax.set_yticks(y, labels, fontsize=7.5)
    ax.set_xlabel(
        f"log-odds of an offence: base {fall['base']:+.2f} (probability "
        f"{fall['base_probability']:.3f}) -> score {fall['total']:+.2f} (probability "
        f"{fall['probability']:.3f}, the score shown)",
        fontsize=8,
    )
    ax.set_title(title, fontsize=9)
    fig.subplots_adjust(left=0.5, right=0.97, top=0.92, bottom=0.9 / fig.get_figheight())
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


def log_to_run(root: Path, run_id: str, folders: Mapping[str, Path], *, area: str) -> str:
    """Log each folder of ``folders`` (artifact path → folder) as artifacts of the model's MLflow
    training run, or, when that run belongs to another DVC experiment, of one ``explain-<area>``
    run beside it; return the run logged to."""
    from riskml import tracking

    client = tracking.open_store(root)
    run_id = tracking.writable_run(client, run_id, root, f"explain-{area}", area=area,
                                   stage="explain")  # fmt: skip
    for artifact_path, folder in folders.items():
        client.log_artifacts(run_id, str(folder), artifact_path=artifact_path)
    return run_id


def explain_one_area(
    root: Path,
    area: str,
    spec: AreaSpec,
    params: Params,
    *,
    features: pd.DataFrame,
    catalogue: Mapping[str, Any],
    sample: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Explain one area's picks (the ``select`` stage's, by the champion): reasons table, SHAP
    plots, case files, artifacts in its MLflow run. ``features``: rows of the scored period
    holding at least every pick's (:func:`explained_rows`); ``sample``: the global sample
    (:func:`global_sample` of the whole period), drawn from ``features`` when not given."""
    from riskml import casefile
    from riskml.fairness import check_protected
    from riskml.io import write_parquet
    from riskml.registry import list_model

    p = params.explain
    catalog = Catalog(root)
    model = list_model(root, area)  # the champion: the lists are its lists
    names = model.feature_names_
    check_protected(names, params.fairness.protected_features, where=str(model.registration))
    selected = picks_of(catalog, area, model)
    table, rows = explain_picks(model, selected, features, catalogue, params)
    write_parquet(table, catalog.explanations(area))
    shadow = explain_shadow(root, area, params, features=features, catalogue=catalogue)

    plots = catalog.explain_plots(area)
    if sample is None:
        sample = global_sample(features, params, size=p.global_sample, seed=p.seed)
    sample_contrib = model.contributions(
        sample, chunk_size=p.chunk_size, client=compute.active_client()
    )
    plot_global(shap_explanation(sample_contrib, sample, names), plots, area=area)
    images: dict[str, Path] = {}
    n_img = min(p.case_images, len(rows))
    by_key = {k: g.to_dict("records") for k, g in table.groupby(KEY, sort=False)}
    for i, row in enumerate(rows.iloc[:n_img].to_dict("records")):
        name = case_image_name(row)
        title = f"{area} candidate {i + 1}: {row['declaration_id']} item {int(row['item_no'])}"
        path = plots / "cases" / f"{name}.png"
        key = (row["declaration_id"], row["item_no"])
        drawn = plot_waterfall(by_key.get(key, []), path, title=title)
        if drawn is not None:
            images[name] = drawn

    mlf = model.registration.as_dict()
    context = casefile.CaseContext(
        area=area,
        title=spec.title,
        capacity=len(selected),
        rank_words=model.rank_words,
        random_share=params.select.random_share,
        model=casefile.model_version(mlf),
        snapshot=casefile.data_snapshot(root),
        created=casefile.today(),
        with_recovery=model.rank_source != KEY_PROBABILITY,
    )
    pages = casefile.write_case_files(
        selected,
        table,
        candidate_rows(selected, features, names),
        images,
        context,
        catalog.casefiles(area),
    )
    if mlf.get("run_id"):
        folders = {"explain": plots, "explain/casefiles": pages.parent}
        log_to_run(root, mlf["run_id"], folders, area=area)
    random = selected["selection_kind"] == "random_control"
    return {
        "explained": int((~random).sum()),
        "random_control": int(random.sum()),
        "case_files": len(selected),
        "model": str(model.registration),
        "shadow": shadow,
    }


def explain_picks(
    model: Any,
    selected: pd.DataFrame,
    features: pd.DataFrame,
    catalogue: Mapping[str, Any],
    params: Params,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The reasons of ``selected`` (picks) by ``model`` (TreeSHAP, :func:`reasons`; on the
    cluster of the enclosing :func:`riskml.compute.running_on`, if any), validated, and the
    explained picks' feature rows. Random-control picks carry no reasons: the scored picks
    (model, rule, watch list) have them."""
    p = params.explain
    top = selected[selected["selection_kind"] != "random_control"]
    rows = candidate_rows(top, features, model.feature_names_)
    contrib = model.contributions(rows, chunk_size=p.chunk_size, client=compute.active_client())
    table = reasons(rows, contrib, catalogue, n_up=p.n_reasons, n_down=p.n_lowering)
    randoms = no_reason_rows(selected[selected["selection_kind"] == "random_control"])
    table = pd.concat([table, randoms], ignore_index=True) if len(randoms) else table
    return validate_explanations(table, where=str(model.registration)), rows


def explain_shadow(
    root: Path,
    area: str,
    params: Params,
    *,
    features: pd.DataFrame,
    catalogue: Mapping[str, Any],
) -> str | None:
    """The reasons of the area's shadow picks (drawn by the challenger that lost its
    promotion), by that challenger, with the same code as the champion's:
    ``data/explanations/<area>.shadow.parquet``; the challenger's version, or None when there
    is no shadow list (a stale file is removed)."""
    from riskml.fairness import check_protected
    from riskml.io import write_parquet
    from riskml.registry import load_trained

    catalog = Catalog(root)
    out = catalog.explanations(area, shadow=True)
    if not catalog.picks(area, shadow=True).exists():
        out.unlink(missing_ok=True)
        return None
    challenger = load_trained(root, area)  # models/<area>/: the version the register stage made
    if challenger.registration is None:
        from riskml.contract import RiskmlError

        raise RiskmlError(
            f"{catalog.model(area)}: not in the registry, yet its shadow picks exist; rerun the "
            f"register and select stages (`riskml register --area {area}`, `riskml select`)"
        )
    check_protected(
        challenger.feature_names_,
        params.fairness.protected_features,
        where=str(challenger.registration),
    )
    picks = picks_of(catalog, area, challenger, shadow=True)
    table, _ = explain_picks(challenger, picks, features, catalogue, params)
    write_parquet(table, out)
    return str(challenger.registration)


def picks_of(catalog: Catalog, area: str, model: Any, *, shadow: bool = False) -> pd.DataFrame:
    """The area's picks (``shadow``: its shadow picks) as the ``select`` stage wrote them; a
    clear error when they are missing or were drawn by another model than ``model`` (the
    champion; for the shadow picks, the challenger)."""
    from riskml.contract import RiskmlError
    from riskml.io import read_parquet

    path = catalog.picks(area, shadow=shadow)
    if not path.exists():
        raise RiskmlError(f"{path}: not found; run the select stage first (`riskml select`)")
    picks = read_parquet(path)
    reg = model.registration
    expected = f"{reg.registered_model} v{reg.version}"
    drawn_by = {v.split(" (")[0] for v in picks["model_version"].astype(str)}
    if drawn_by - {expected}:
        role = "the challenger" if shadow else "the champion"
        raise RiskmlError(
            f"{path}: drawn by {sorted(drawn_by)}, but {role} is {model.registration}; "
            "rerun the select stage (`riskml select`)"
        )
    return picks


def explained_rows(
    root: Path, params: Params, areas: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What the explain stage reads of the scored period's features: the rows of every pick of
    ``areas`` (the champion's and the shadow's) and of the global sample, read month by month
    by key (peak memory those rows plus one month, not the period's ~440 columns of every
    item); and the global sample: the rows, in the order, that :func:`global_sample` draws from
    the whole period (it draws positions from the period's length alone, so drawing them from
    the period's keys gives the same rows)."""
    from riskml import io
    from riskml.io import read_parquet
    from riskml.train import key_hashes, key_in

    catalog, split, p = Catalog(root), params.split, params.explain
    folder = catalog.features
    months = io.months_overlapping(folder, split.test_start, split.test_end)
    keys = io.read_partitioned(folder, months=months, columns=[*KEY, "accepted_date"])
    drawn = global_sample(keys, params, size=p.global_sample, seed=p.seed)[KEY]
    picks = [
        read_parquet(path, columns=list(KEY))
        for area in areas
        for path in (catalog.picks(area), catalog.picks(area, shadow=True))
        if path.exists()
    ]
    wanted = np.unique(key_hashes(pd.concat([drawn, *picks], ignore_index=True)))
    del keys

    def chosen(table: Any) -> np.ndarray:
        return key_in(table.select(list(KEY)).to_pandas(), wanted)

    features = io.read_partitioned(folder, months=months, where=chosen)
    at = features[KEY].assign(_at=np.arange(len(features)))
    at = drawn.merge(at, on=KEY, how="left", validate="one_to_one")["_at"].to_numpy()
    return features, features.iloc[at]


def run_explain(root: Path, params: Params, specs: dict[str, AreaSpec]) -> dict[str, Any]:
    """Stage entry: explain each area's picks (``data/selection/picks/<area>.parquet``, the
    ``select`` stage's) into ``data/explanations/<area>.parquet``, SHAP images in
    ``plots/explain/<area>/`` and case files in ``data/casefiles/<area>/``; the TreeSHAP
    contributions on the Dask cluster of ``params.compute`` when its backend is dask."""
    with compute.running_on(params.compute):
        return _explain_areas(root, params, specs)


def _explain_areas(root: Path, params: Params, specs: dict[str, AreaSpec]) -> dict[str, Any]:
    from riskml.features import catalogue_for
    from riskml.train import split_trained

    catalogue = catalogue_for(specs)
    specs, skipped = split_trained(root, specs)  # areas the train stage skipped: no model
    for area, record in skipped.items():
        log.info("explain %s %s", area, record["reason"])
    # the picks and the global sample are items of the scored period: those rows only
    features, sample = explained_rows(root, params, list(specs))
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
            catalogue=catalogue,
            sample=sample,
        )
        summary[area] = out["explained"]
        models[area] = out["model"]
    out: dict[str, Any] = {"explained": summary, "models": models}
    return out | {a: r["reason"] for a, r in skipped.items()}
