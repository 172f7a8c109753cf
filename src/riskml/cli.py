"""The ``riskml`` command: one sub-command per pipeline stage (see ``dvc.yaml``)."""

from __future__ import annotations

import functools
import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from riskml.catalog import Catalog
from riskml.config import (
    AreaSpec,
    Params,
    describe_overrides,
    load_area_specs,
    load_params,
    train_overrides,
)
from riskml.contract import RISK_AREAS, RiskmlError

app = typer.Typer(
    help="riskml: customs risk models per WCO risk area, as a DVC pipeline tracked in MLflow.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)

RootOpt = Annotated[Path, typer.Option("--root", help="project folder (holds params.yaml)")]


def _handle_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn user errors into a one-paragraph message and exit code 2, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except RiskmlError as exc:
            console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=2) from None

    return wrapper


def _config(root: Path) -> tuple[Params, dict[str, AreaSpec]]:
    """params.yaml and the specs of the areas it lists (``areas``)."""
    params = load_params(root / "params.yaml")
    specs = load_area_specs(Catalog(root).pipelines)
    missing = [a for a in params.areas if a not in specs]
    if missing:
        raise RiskmlError(
            f"params.yaml lists area(s) {missing} without a spec; add pipelines/<area>.yaml"
        )
    return params, {a: specs[a] for a in params.areas}


@contextmanager
def _progress(description: str) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar; yields ``update(done, total)``. Silent when not on a terminal."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not sys.stderr.isatty(),
    ) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _done(stage: str, started: float, summary: str) -> None:
    console.print(f"[green]✓[/] {stage}: {summary} [dim]({time.perf_counter() - started:.1f} s)[/]")


class _StderrHandler(logging.StreamHandler):
    """A handler on whatever ``sys.stderr`` is when a line is written."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _log_progress() -> None:
    """riskml's INFO log lines (progress per area and backtest window) on stderr, with the time;
    other libraries' loggers stay at their level."""
    logger = logging.getLogger("riskml")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def _run_stage(
    name: str, entry: Callable[[Path, Params, dict[str, AreaSpec]], Any], root: Path
) -> None:
    """Run a stage entry ``entry(root, params, specs)`` and print its one-line summary; the
    stage's progress lines (riskml's INFO log: per area, per backtest window) go to stderr."""
    _log_progress()
    params, specs = _config(root)
    started = time.perf_counter()
    _done(name, started, _fmt_counts(entry(root.resolve(), params, specs)))


def _areas(specs: dict[str, AreaSpec], area: str | None) -> list[str]:
    if area is None:
        return list(specs)
    if area not in specs:
        raise RiskmlError(
            f"unknown area {area!r}; areas with a spec in pipelines/: {', '.join(specs)} "
            f"(known risk areas: {', '.join(RISK_AREAS)})"
        )
    return [area]


@app.command()
@_handle_errors
def simulate(
    root: RootOpt = Path("."),
    out: Annotated[Path | None, typer.Option(help="output folder")] = None,
    n_items: Annotated[int | None, typer.Option(help="override simulate.n_items")] = None,
) -> None:
    """Generate the simulated customs world (declarations, outcomes, truth) as Parquet."""
    from riskml.simulate import run

    params, specs = _config(root)
    sim = (
        params.simulate
        if n_items is None
        else params.simulate.model_copy(update={"n_items": n_items})
    )
    started = time.perf_counter()
    with _progress("simulating months") as update:
        summary = run(out or Catalog(root).raw, sim, specs, progress=update)
    _done("simulate", started, _fmt_counts(summary))


@app.command()
@_handle_errors
def ingest(
    file: Annotated[list[Path], typer.Argument(help="external CSV or Parquet file(s), one layout")],
    mapping: Annotated[Path, typer.Option(help="YAML column mapping (path or packaged name)")],
    root: RootOpt = Path("."),
    out: Annotated[Path | None, typer.Option(help="output folder")] = None,
    outcomes: Annotated[
        list[Path] | None,
        typer.Option(help="control-results file (the mapping's `outcomes` section); repeatable"),
    ] = None,
) -> None:
    """Map external declarations (and control results) into the canonical tables."""
    from riskml.ingest import run_ingest

    started = time.perf_counter()
    summary = run_ingest(file, mapping, out or Catalog(root).raw, outcomes_file=outcomes or None)
    _done("ingest", started, _fmt_counts(summary))


@app.command("ingest-seizures")
@_handle_errors
def ingest_seizures(
    file: Annotated[Path, typer.Argument(help="seizure records, CSV or Parquet (e.g. CEN)")],
    mapping: Annotated[Path, typer.Option(help="YAML column mapping")] = Path("cen_seizures"),
    root: RootOpt = Path("."),
    out: Annotated[Path | None, typer.Option(help="output folder")] = None,
) -> None:
    """Map a seizure-intelligence file into the canonical seizures table (data/raw)."""
    from riskml.ingest import run_ingest_seizures

    started = time.perf_counter()
    summary = run_ingest_seizures(file, mapping, out or Catalog(root).raw)
    _done("ingest-seizures", started, _fmt_counts(summary))


@app.command()
@_handle_errors
def source(root: RootOpt = Path(".")) -> None:
    """Produce data/raw from the source chosen in params (``data.source``: simulate or ingest)."""
    from riskml.feedback import EXPORT_PATH, append_feedback

    params, _ = _config(root)
    if params.data.source == "simulate":
        simulate(root=root, out=None, n_items=None)
    elif not params.data.ingest_file or not params.data.ingest_mapping:
        raise RiskmlError(
            "params.yaml: data.source is 'ingest' but data.ingest_file or data.ingest_mapping "
            "is empty; set both (the file under data/external/)"
        )
    else:
        ingest(
            file=[root / params.data.ingest_file],
            mapping=root / params.data.ingest_mapping,
            root=root,
            out=None,
            outcomes=[root / params.data.ingest_outcomes] if params.data.ingest_outcomes else None,
        )
        if params.data.seizures_file:
            ingest_seizures(
                file=root / params.data.seizures_file,
                mapping=root / params.data.seizures_mapping,
                root=root,
                out=None,
            )
    # audit outcomes recorded through the service (`riskml outcomes export`) join the raw
    # outcomes; the validate stage checks them like any other
    added = append_feedback(Catalog(root).raw, Catalog(root).feedback_export)
    if added:
        console.print(f"[green]✓[/] source: {added:,} feedback outcome(s) from {EXPORT_PATH}")


@app.command()
@_handle_errors
def validate(root: RootOpt = Path(".")) -> None:
    """Check the raw tables against the data contract; good rows to the validated tables, the rest
    quarantined (paths: riskml.catalog)."""
    from riskml.contract import run_validate

    started = time.perf_counter()
    catalog = Catalog(root)
    report = run_validate(catalog.raw, catalog.interim, catalog.validation)
    _done("validate", started, _fmt_counts(report))


@app.command()
@_handle_errors
def features(
    root: RootOpt = Path("."),
    month: Annotated[
        list[str] | None,
        typer.Option(help="recompute only this month's partition (YYYY-MM; repeatable)"),
    ] = None,
) -> None:
    """Build the causal features of every declaration item (data/features/month=YYYY-MM/);
    where they run: compute in params.yaml (local, out of core, or a Dask cluster)."""
    from riskml.features_stage import run_features

    params, specs = _config(root)
    started = time.perf_counter()
    with _progress("building features") as update:
        summary = run_features(root, params, specs, months=month, progress=update)
    _done(
        "features",
        started,
        f"{summary['items']:,} items × {summary['model_features']} model features, "
        f"{summary['months']} month partition(s), {summary['backend']}",
    )


@app.command()
@_handle_errors
def train(
    root: RootOpt = Path("."),
    area: Annotated[str | None, typer.Option(help="one risk area (default: every area)")] = None,
) -> None:
    """Fit each risk area's estimator (LightGBM classifier(s), recovery regression) into
    models/estimators/<area>/, without its list policy: `riskml register` binds and registers."""
    from riskml.train_stage import run_train

    params, specs = _config(root)
    for name in _areas(specs, area):
        started = time.perf_counter()
        # Global settings an area changes are said, not silent (also in the model card).
        overrides = describe_overrides(specs[name], train_overrides(params, specs[name]))
        console.print(f"train {name}: {overrides}", highlight=False, soft_wrap=True)
        summary = run_train(name, root.resolve(), params, specs[name])
        if "skipped" in summary:  # the data does not support the area: said, not an error
            _done(f"train {name}", started, summary["skipped"])
            continue
        _done(f"train {name}", started, _fmt_counts(summary))


@app.command()
@_handle_errors
def register(
    root: RootOpt = Path("."),
    area: Annotated[str | None, typer.Option(help="one risk area (default: every area)")] = None,
) -> None:
    """Bind each area's list policy (rank key, recovery exponent, operating threshold) to its
    trained estimator without refitting, register the area model in MLflow (once per content)
    and write models/<area>/."""
    from riskml.train_stage import run_register

    params, specs = _config(root)
    for name in _areas(specs, area):
        started = time.perf_counter()
        summary = run_register(name, root.resolve(), params, specs[name])
        _done(f"register {name}", started, summary.get("skipped") or _fmt_counts(summary))


@app.command()
@_handle_errors
def tune(
    area: Annotated[str, typer.Option(help="the risk area to tune")],
    root: RootOpt = Path("."),
    trials: Annotated[int | None, typer.Option(help="trials (default: tune.n_trials)")] = None,
) -> None:
    """Opt-in random search of one area's LightGBM settings (MLflow nested runs); prints the
    best as a YAML snippet for pipelines/<area>.yaml. Not part of dvc repro."""
    from riskml.train import run_tune

    params, specs = _config(root)
    (name,) = _areas(specs, area)
    started = time.perf_counter()
    result = run_tune(name, root.resolve(), params, specs[name], n_trials=trials)
    for r in result["trials"]:
        typer.echo(
            f"AP {r['valid_average_precision']:.4f}  trees {r['best_iteration']:4d}  "
            + "  ".join(
                f"{k}={v}"
                for k, v in r.items()
                if k not in ("valid_average_precision", "best_iteration")
            )
        )
    typer.echo(result["yaml"])
    _done(f"tune {name}", started, f"{len(result['trials'])} trials, run {result['run_id']}")


@app.command()
@_handle_errors
def evaluate(root: RootOpt = Path(".")) -> None:
    """Score the test window and measure every area against random and legacy-rule baselines."""
    from riskml.evaluate import run_evaluate

    _run_stage("evaluate", run_evaluate, root)


@app.command()
@_handle_errors
def backtest(
    root: RootOpt = Path("."),
    area: Annotated[
        str | None, typer.Option(help="one risk area, windows only (default: every area + report)")
    ] = None,
) -> None:
    """Rolling-origin backtests: consecutive test windows, each model trained on its past only.
    With --area (the DVC stage backtest@<area>): that area's windows trained and scored into
    data/backtest/<area>/; without: every area, then the report."""
    from riskml.backtest import run_backtest, run_backtest_area

    if area is None:
        _run_stage("backtest", run_backtest, root)
        return
    _log_progress()
    params, specs = _config(root)
    (name,) = _areas(specs, area)
    started = time.perf_counter()
    summary = run_backtest_area(name, root.resolve(), params, specs)
    _done(f"backtest {name}", started, _fmt_counts(summary))


@app.command("backtest-report")
@_handle_errors
def backtest_report(root: RootOpt = Path(".")) -> None:
    """Measure the backtest windows of data/backtest/ (each area's list key included) into
    metrics/backtest/ and plots/backtest/; no model is trained here."""
    from riskml.backtest import run_backtest_report

    _run_stage("backtest report", run_backtest_report, root)


@app.command()
@_handle_errors
def promote(root: RootOpt = Path(".")) -> None:
    """Move each area's champion alias to its challenger only if it wins by the margin."""
    from riskml.promote import run_promote

    _run_stage("promote", run_promote, root)


@app.command()
@_handle_errors
def headline(root: RootOpt = Path(".")) -> None:
    """A few figures per area in metrics/headline.json (what `dvc metrics show` displays)."""
    from riskml.headline import run_headline

    _run_stage("headline", run_headline, root)


@app.command()
@_handle_errors
def explain(root: RootOpt = Path(".")) -> None:
    """TreeSHAP reasons in plain words and case files for the picks `riskml select` made."""
    from riskml.explain import run_explain

    _run_stage("explain", run_explain, root)


@app.command(name="select")
@_handle_errors
def select_(root: RootOpt = Path(".")) -> None:
    """Each area's picks by its champion, within capacity, with a random-control share."""
    from riskml.select import run_select

    _run_stage("select", run_select, root)


@app.command()
@_handle_errors
def lists(root: RootOpt = Path(".")) -> None:
    """The candidate lists (CSV per area, combined, importer periods, XLSX) from the picks and
    their reasons."""
    from riskml.select import run_lists

    _run_stage("lists", run_lists, root)


@app.command()
@_handle_errors
def score(
    file: Annotated[Path, typer.Argument(help="new declarations (CSV or Parquet)")],
    root: RootOpt = Path("."),
    out: Annotated[Path | None, typer.Option(help="output folder")] = None,
    mapping: Annotated[
        Path | None,
        typer.Option(help="ingest mapping of the file's layout (path or packaged name)"),
    ] = None,
) -> None:
    """Score new declarations with each area's champion model (scores, selection, quarantine)."""
    from riskml.score import run_score

    params, specs = _config(root)
    started = time.perf_counter()
    folder = out or Catalog(root).scored_batch(file.stem)
    summary = run_score(file, root.resolve(), params, specs, out=folder, mapping=mapping)
    _done("score", started, f"{_fmt_counts(summary)} -> {folder}")


@app.command()
@_handle_errors
def serve(
    root: RootOpt = Path("."),
    host: Annotated[str | None, typer.Option(help="override serve.host")] = None,
    port: Annotated[int | None, typer.Option(help="override serve.port")] = None,
    database_url: Annotated[
        str | None, typer.Option(help="override serve.database_url (SQLite file or PostgreSQL)")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="override serve.workers: service processes, each with its own copy of the "
            "models and data (about one per core)",
        ),
    ] = None,
) -> None:
    """Run the audit service (API, OpenAPI docs at /docs, reviewer pages at /ui) with uvicorn."""
    import json
    import os

    import uvicorn

    params, _ = _config(root)
    root = root.resolve()
    # tokens create makes the database; opened here first, so that its tables exist before
    # the worker processes open it
    store = _store(root, database_url, create=False)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    n = workers or params.serve.workers
    where = {"host": host or params.serve.host, "port": port or params.serve.port}
    settings = {"access_log": False, "log_level": "info"}  # the app logs method, route, status
    if n == 1:
        console.print("loading and checking each area's champion ...")
        uvicorn.run(_service_app(root, store), **where, **settings)  # type: ignore[arg-type]
        return
    import tempfile

    store.engine.dispose()
    console.print(f"starting {n} service processes; each loads and checks the champions ...")
    with tempfile.TemporaryDirectory(prefix="riskml-serve-") as folder:
        failed = Path(folder) / "failed"  # a worker whose models do not load writes why here
        os.environ[_WORKER_ENV] = json.dumps(
            {"root": str(root), "database_url": database_url, "failed": str(failed)}
        )
        uvicorn.run(
            "riskml.cli:service_worker",
            factory=True,
            workers=n,
            timeout_worker_healthcheck=60,  # a worker scoring a large batch answers late
            **where,  # type: ignore[arg-type]
            **settings,  # type: ignore[arg-type]
        )
        if failed.exists():  # uvicorn stopped the service: exit non-zero, saying why
            raise RiskmlError(failed.read_text(encoding="utf-8"))


_WORKER_ENV = "RISKML_SERVE_WORKER"


def _service_app(root: Path, store: Any) -> Any:
    """The service app on ``root``, its champions loaded and checked (RiskmlError otherwise)."""
    import gc

    from riskml.serve import create_app

    params, specs = _config(root)
    app = create_app(root, params, specs, store=store, check_models=True)
    # What is loaded now (history, feature store, models: some 350,000 tracked objects) lives
    # as long as the process: out of the collector's sight, a full collection no longer walks
    # it (about 0.4 s with the default run's data, a pause every few hundred requests).
    gc.collect()
    gc.freeze()
    return app


def service_worker() -> Any:
    """The app of one process of ``riskml serve --workers N`` (uvicorn's factory; the root and
    database come from the parent through the environment). A worker whose models do not load
    exits with uvicorn's start-up failure code, which stops the service instead of restarting
    the worker over and over."""
    import json
    import os

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    where = json.loads(os.environ[_WORKER_ENV])
    root = Path(where["root"])
    try:
        return _service_app(root, _store(root, where["database_url"], create=False))
    except RiskmlError as exc:
        Path(where["failed"]).write_text(str(exc), encoding="utf-8")
        sys.exit(3)  # uvicorn.config.STARTUP_FAILURE: the parent stops the service


tokens_app = typer.Typer(help="API tokens of the audit service (stored hashed).")
app.add_typer(tokens_app, name="tokens")
outcomes_app = typer.Typer(help="Audit outcomes recorded through the service.")
app.add_typer(outcomes_app, name="outcomes")
DbOpt = Annotated[str | None, typer.Option("--database-url", help="override serve.database_url")]


def _store(root: Path, database_url: str | None, *, create: bool = True) -> Any:
    from riskml.feedback import FeedbackStore
    from riskml.feedback import database_url as _db_url

    params, _ = _config(root)
    url = _db_url(database_url or params.serve.database_url, root.resolve(), create=create)
    return FeedbackStore(url, create=create)


@tokens_app.command("create")
@_handle_errors
def tokens_create(
    name: Annotated[str, typer.Argument(help="who will use the token")],
    role: Annotated[str, typer.Option(help="auditor, reviewer or admin")] = "reviewer",
    days: Annotated[
        float | None, typer.Option(help="validity in days (default serve.token_days; 0: never)")
    ] = None,
    root: RootOpt = Path("."),
    database_url: DbOpt = None,
) -> None:
    """Create a token; it is printed once (only its hash is stored)."""
    params, _ = _config(root)
    days = params.serve.token_days if days is None else days
    token = _store(root, database_url).create_token(name, role, days=days)
    until = f"valid {days:g} days" if days else "no expiry"
    console.print(
        f"[green]✓[/] token for {name} ({role}, {until}); keep it now, it is not shown again:"
    )
    typer.echo(token)


@tokens_app.command("rotate")
@_handle_errors
def tokens_rotate(
    name: Annotated[str, typer.Argument(help="the token's name")],
    root: RootOpt = Path("."),
    database_url: DbOpt = None,
) -> None:
    """Give a token a new secret (same name and role, new expiry); the old one stops working."""
    params, _ = _config(root)
    token = _store(root, database_url).rotate_token(name, days=params.serve.token_days)
    console.print(f"[green]✓[/] new token for {name}; the old one no longer works:")
    typer.echo(token)


@tokens_app.command("revoke")
@_handle_errors
def tokens_revoke(
    name: Annotated[str, typer.Argument(help="the token's name")],
    root: RootOpt = Path("."),
    database_url: DbOpt = None,
) -> None:
    """Revoke a token by name."""
    _store(root, database_url).revoke_token(name)
    console.print(f"[green]✓[/] revoked {name}")


@tokens_app.command("list")
@_handle_errors
def tokens_list(root: RootOpt = Path("."), database_url: DbOpt = None) -> None:
    """Names, roles and dates of the tokens (never a token or a hash)."""
    table = _store(root, database_url).list_tokens()
    typer.echo(table.to_string(index=False) if len(table) else "no token")


@outcomes_app.command("export")
@_handle_errors
def outcomes_export(
    root: RootOpt = Path("."),
    out: Annotated[Path | None, typer.Option(help="output Parquet file")] = None,
    database_url: DbOpt = None,
) -> None:
    """Export the recorded outcomes to data/external/feedback_outcomes.parquet, which the next
    `dvc repro` adds to the raw outcomes (source stage) and learns from."""
    from riskml.feedback import EXPORT_PATH, export_outcomes

    path = out or root / EXPORT_PATH
    store = _store(root, database_url)
    n = export_outcomes(store, path)
    console.print(f"[green]✓[/] outcomes export: {n:,} outcome(s) -> {path}")
    review = store.outcomes()
    review = review[review["needs_review"].astype(bool)]
    if len(review):
        ids = ", ".join(str(i) for i in review["id"].head(20))
        console.print(
            f"[yellow]![/] {len(review):,} contradicting outcome(s) held back (ids {ids}); keep "
            "the right one with `riskml outcomes resolve ID`"
        )


@outcomes_app.command("resolve")
@_handle_errors
def outcomes_resolve(
    outcome_id: Annotated[int, typer.Argument(help="the outcome to keep")],
    root: RootOpt = Path("."),
    database_url: DbOpt = None,
) -> None:
    """Resolve a contradiction: keep outcome ID; the others of its item, area and control
    kind are superseded (left out of the export)."""
    n = _store(root, database_url).resolve_outcome(outcome_id)
    console.print(f"[green]✓[/] kept outcome {outcome_id}; {n} other(s) superseded")


def _fmt_counts(summary: Any) -> str:
    """A one-line rendering of a stage's summary dict (scalars only, nested dicts flattened)."""
    if not isinstance(summary, dict):
        return str(summary)
    parts = []
    for key, value in summary.items():
        if isinstance(value, dict):
            inner = ", ".join(
                f"{k}={_fmt_scalar(v)}" for k, v in value.items() if not isinstance(v, dict | list)
            )
            if inner:
                parts.append(f"{key}({inner})")
        elif not isinstance(value, list):
            parts.append(f"{key}={_fmt_scalar(value)}")
    return "; ".join(parts)


def _fmt_scalar(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


if __name__ == "__main__":  # pragma: no cover
    app()


registry_app = typer.Typer(help="The MLflow model registry of the area models.")
app.add_typer(registry_app, name="registry")


@registry_app.command("sync")
@_handle_errors
def registry_sync(root: RootOpt = Path(".")) -> None:
    """Point the champion/challenger aliases at the versions metrics/promotion.json names
    (a cached `dvc repro` or `dvc exp apply` restores files but runs no code; `make run` ends
    with this, and every command that loads a model does it first)."""
    from riskml.registry import sync

    params, _ = _config(root)
    started = time.perf_counter()
    out = sync(root.resolve(), params.areas)
    for area, r in out.items():
        console.print(f"{area}: {r}", highlight=False)
    _done("registry sync", started, f"{len(out)} area(s)")


@registry_app.command("show")
@_handle_errors
def registry_show(root: RootOpt = Path(".")) -> None:
    """Each area's champion and challenger versions in the registry and in
    metrics/promotion.json (the aliases are first brought in line with the file, as every
    consumer of a model does)."""
    from riskml.registry import aliases, client_for, promoted_versions, registered_model_name, sync
    from riskml.train import skip_record

    params, _ = _config(root)
    try:
        sync(root.resolve(), params.areas)
    except RiskmlError as exc:  # show what disagrees rather than nothing
        console.print(f"[yellow]warning:[/] {exc}", highlight=False, soft_wrap=True)
    client = client_for(root.resolve())
    promoted = promoted_versions(root.resolve())
    for area in params.areas:
        skipped = skip_record(root.resolve(), area)
        if skipped is not None:  # the train stage skipped it: no registered model
            console.print(f"{area}: {skipped['reason']}", highlight=False)
            continue
        have = aliases(client, registered_model_name(area))
        console.print(
            f"{area}: registry {have}; metrics/promotion.json {promoted.get(area, {})}",
            highlight=False,
        )
