"""One catalog of the pipeline's named datasets: each name, one path under the project root.

Every stage (``run_*``), the CLI and the service ask the catalog for a dataset by name
(``Catalog(root).declarations``, ``Catalog(root).picks("revenue")``); no other module spells a
project path. The paths are the DVC outputs of ``dvc.yaml``: change one here and there together.

The stages and what they hand each other::

    source ─► raw ─► validate ─► interim ─► features ─► train ─► models/estimators/<area>
    estimator ─► register ─► models/<area> (the area model: estimator + list policy)
    models ─► evaluate ─► scores, metrics/areas
    features ─► backtest@<area> ─► data/backtest/<area> ─► backtest_report ─► metrics/backtest
    backtest + models ─► promote ─► promotion     promotion ─► select ─► picks, scored period
    picks ─► explain ─► explanations, case files  picks + explanations ─► lists ─► candidates
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# Folders and files relative to the project root (the DVC outputs of dvc.yaml).
RAW = "data/raw"
EXTERNAL = "data/external"
INTERIM = "data/interim"
FEATURES = "data/features"
MODELS = "models"
ESTIMATORS = f"{MODELS}/estimators"
BACKTEST = "data/backtest"
SCORES = "data/scores"
SELECTION = "data/selection"
EXPLANATIONS = "data/explanations"
CASEFILES = "data/casefiles"
CANDIDATES = "data/candidates"
SCORED_BATCHES = "data/scored"
PIPELINES = "pipelines"
VALIDATION = "metrics/validation.json"
EVALUATION_SUMMARY = "metrics/summary.json"
EVALUATION_AREAS = "metrics/areas"
BACKTEST_SUMMARY = "metrics/backtest/summary.json"
BACKTEST_AREAS = "metrics/backtest/areas"
PROMOTION = "metrics/promotion.json"
HEADLINE = "metrics/headline.json"
EVALUATION_PLOTS = "plots/evaluation"
BACKTEST_PLOTS = "plots/backtest"
EXPLAIN_PLOTS = "plots/explain"
FEEDBACK_EXPORT = f"{EXTERNAL}/feedback_outcomes.parquet"
#: Marks a list drawn by a challenger that lost its promotion (written beside the champion's).
SHADOW = "shadow"


#: Partition key of the outcome and truth rows: the month of their item's ``accepted_date`` (the
#: declaration's), not a column of theirs.
ITEM_MONTH = "item"

#: The validated tables stored partitioned by month (``riskml.io``:
#: ``<table>/month=YYYY-MM/part-0.parquet``), each by the month of the column named here, or of
#: its item's acceptance (:data:`ITEM_MONTH`), so that a stage reads the period or the columns it
#: needs and a new month of data rewrites only the months whose rows changed. Outcomes and truth
#: go with their item: the labels and the truth of a month's items are in that month's
#: partition, whenever the result came (a late result rewrites its item's month). Seizure
#: reports go by ``report_date``: the features of a month read the reports before it. The
#: quarantine stays one file (small, and a row whose date cannot be read has no month).
PARTITIONED_TABLES = {
    "declarations": "accepted_date",
    "outcomes": ITEM_MONTH,
    "truth": ITEM_MONTH,
    "seizures": "report_date",
}


def table_file(folder: str | Path, table: str) -> Path:
    """The file of a canonical table (``declarations``, ``outcomes``, ``truth``, ``seizures``,
    ``quarantine``) in a folder of them (``data/raw``: source). ``simulate`` and ``ingest``
    are given their folders and name files by this; ``validate`` by :func:`interim_table`."""
    return Path(folder) / f"{table}.parquet"


def interim_table(folder: str | Path, table: str) -> Path:
    """Where ``validate`` stores a canonical table in ``folder`` (``data/interim``): a dataset
    partitioned by month for the tables of :data:`PARTITIONED_TABLES` (read with
    ``riskml.io.read_dataset``, all months or some, only the columns needed), else one file."""
    if table in PARTITIONED_TABLES:
        return Path(folder) / table
    return table_file(folder, table)


def stored_table(folder: str | Path, table: str) -> Path:
    """The stored validated ``table`` to read: :func:`interim_table`, or the one file that a
    project validated before the table was partitioned holds (``data/interim/outcomes.parquet``,
    read whole by ``riskml.io.read_dataset``, same rows) while that is all it has; run
    ``riskml validate`` (``dvc repro validate``) to store it by month."""
    path = interim_table(folder, table)
    older = table_file(folder, table)
    if table in PARTITIONED_TABLES and not path.exists() and older.is_file():
        return older
    return path


@dataclass(frozen=True)
class Catalog:
    """The named datasets of the project at ``root``."""

    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    def _at(self, relative: str) -> Path:
        return self.root / relative

    # --- inputs, validated tables and features --------------------------------------------

    @property
    def raw(self) -> Path:
        """Folder of the raw tables (``source`` writes, ``validate`` reads)."""
        return self._at(RAW)

    @property
    def feedback_export(self) -> Path:
        """Outcomes recorded by reviewers, exported for the ``source`` stage."""
        return self._at(FEEDBACK_EXPORT)

    @property
    def interim(self) -> Path:
        """Folder of the validated tables (``validate``)."""
        return self._at(INTERIM)

    @property
    def declarations(self) -> Path:
        """The validated declaration items: one partition per acceptance month (read them with
        ``riskml.io.read_dataset(path, columns, months=...)``; :func:`stored_table`)."""
        return stored_table(self.interim, "declarations")

    @property
    def outcomes(self) -> Path:
        """The validated control results, one partition per acceptance month of their items
        (``riskml.io.read_dataset(path, columns, months=...)``; :func:`stored_table`)."""
        return stored_table(self.interim, "outcomes")

    @property
    def seizures(self) -> Path:
        """Seizure intelligence, one partition per month of ``report_date`` (empty when the
        source has none)."""
        return stored_table(self.interim, "seizures")

    def truth(self) -> Path | None:
        """The simulator's truth (validated: one partition per acceptance month of its items;
        else raw); ``None`` for real data."""
        for path in (stored_table(self.interim, "truth"), table_file(self.raw, "truth")):
            if path.exists():
                return path
        return None

    @property
    def quarantine(self) -> Path:
        """Every failed data check of the validated tables, with what became of the row."""
        return interim_table(self.interim, "quarantine")

    @property
    def validation(self) -> Path:
        return self._at(VALIDATION)

    @property
    def features(self) -> Path:
        """The features dataset: one partition per acceptance month (``riskml.io``)."""
        return self._at(FEATURES)

    @property
    def pipelines(self) -> Path:
        """Folder of the area specs (``pipelines/<area>.yaml``)."""
        return self._at(PIPELINES)

    # --- models and their assessment --------------------------------------------------------

    def estimator(self, area: str) -> Path:
        """The area's fitted estimator, without its list policy (``train`` writes)."""
        return self._at(f"{ESTIMATORS}/{area}")

    def model(self, area: str) -> Path:
        """The area model's folder: the estimator bound to its list policy (``register``
        writes, DVC caches)."""
        return self._at(f"{MODELS}/{area}")

    def scores(self, area: str) -> Path:
        """Items scored by the trained area model, one partition per acceptance month
        (``riskml.io``): the test window (``evaluate``)."""
        return self._at(f"{SCORES}/{area}")

    def evaluation(self, area: str) -> Path:
        return self._at(f"{EVALUATION_AREAS}/{area}.json")

    @property
    def evaluation_summary(self) -> Path:
        return self._at(EVALUATION_SUMMARY)

    def evaluation_plots(self, area: str) -> Path:
        return self._at(f"{EVALUATION_PLOTS}/{area}")

    def backtest_windows(self, area: str) -> Path:
        """The area's backtest windows, trained and scored (``backtest@<area>``): what
        ``backtest_report`` measures."""
        return self._at(f"{BACKTEST}/{area}")

    @property
    def backtest_summary(self) -> Path:
        """The backtest's windows and headline figures (``promote`` reads its windows)."""
        return self._at(BACKTEST_SUMMARY)

    def backtest(self, area: str) -> Path:
        return self._at(f"{BACKTEST_AREAS}/{area}.json")

    def backtest_plot(self, area: str) -> Path:
        return self._at(f"{BACKTEST_PLOTS}/{area}.csv")

    @property
    def promotion(self) -> Path:
        """Champion and challenger of every area (``promote``): the lists' models."""
        return self._at(PROMOTION)

    @property
    def headline(self) -> Path:
        return self._at(HEADLINE)

    # --- selection, explanations, lists -----------------------------------------------------

    def picks(self, area: str, *, shadow: bool = False) -> Path:
        """The area's picks (``select``): what ``explain`` and ``lists`` read. ``shadow``: the
        picks of a challenger that lost its promotion."""
        suffix = f".{SHADOW}" if shadow else ""
        return self._at(f"{SELECTION}/picks/{area}{suffix}.parquet")

    def scored_period(self, area: str) -> Path:
        """Every scored item of the period as the area's champion scores it (``select``; the
        service's pages show these scores)."""
        return self._at(f"{SELECTION}/scores/{area}.parquet")

    def explanations(self, area: str, *, shadow: bool = False) -> Path:
        """The reasons of the area's picks (``explain``); ``shadow``: of the shadow picks, by
        the challenger that drew them."""
        suffix = f".{SHADOW}" if shadow else ""
        return self._at(f"{EXPLANATIONS}/{area}{suffix}.parquet")

    def casefiles(self, area: str) -> Path:
        return self._at(f"{CASEFILES}/{area}")

    def explain_plots(self, area: str) -> Path:
        return self._at(f"{EXPLAIN_PLOTS}/{area}")

    @property
    def candidates(self) -> Path:
        """Folder of the candidate lists (``lists``: CSV per area, combined, XLSX)."""
        return self._at(CANDIDATES)

    def candidate_list(self, area: str, *, shadow: bool = False) -> Path:
        suffix = f".{SHADOW}" if shadow else ""
        return self._at(f"{CANDIDATES}/{area}{suffix}.csv")

    @property
    def all_areas(self) -> Path:
        return self._at(f"{CANDIDATES}/all_areas.csv")

    @property
    def importer_periods(self) -> Path:
        return self._at(f"{CANDIDATES}/importer_periods.csv")

    @property
    def workbook(self) -> Path:
        return self._at(f"{CANDIDATES}/candidates.xlsx")

    @property
    def data_quality(self) -> Path:
        """The ranked period's declarations that failed a data check (``lists``)."""
        return self._at(f"{CANDIDATES}/data_quality.csv")

    def skip_record(self, area: str) -> Path:
        """Why the train stage skipped an area (its labels lack positives), instead of a
        model."""
        return self._at(f"{MODELS}/{area}/skipped.json")

    def scored_batch(self, stem: str) -> Path:
        """Output folder of ``riskml score FILE`` (outside the DVC pipeline)."""
        return self._at(f"{SCORED_BATCHES}/{stem}")
