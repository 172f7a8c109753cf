"""External CSV/Parquet files -> the canonical raw tables, through a YAML column mapping.

A mapping says, for each canonical declarations column, where its values come from (a source
column, a constant, a numbering or a product of other columns) and how to convert them (date
format, scale factor, zero padding, recoding). Control results come either from label columns
inside the declaration file (several columns, each to its own area; an empty label means "not
inspected" and gives no outcome) or from a control-results table of its own (``outcomes`` in the
mapping, one row per control). See ``docs/data-contract.md`` for every key.

Conversion failures of single values are never dropped: the raw value is kept, so that
``validate`` quarantines the row with a reason. A column that fails entirely (a wrong date
format, text in a numeric column), an empty or header-only file stop with a :class:`RiskmlError`
naming the file, the column and the mapping's format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from riskml.catalog import table_file
from riskml.contract import (
    ALLOWED_VALUES,
    CONTROL_KINDS,
    CONTROL_REASONS,
    DECLARATION_COLUMNS,
    KEY,
    OUTCOME_COLUMNS,
    RISK_AREAS,
    SEIZURE_COLUMNS,
    SOURCE_ERROR,
    SOURCE_ERROR_COLUMN,
    SOURCE_FILE,
    SOURCE_ROW,
    Column,
    RiskmlError,
    as_text,
    column_names,
    empty_table,
    parse_bool,
)

_DECL = {c.name: c for c in DECLARATION_COLUMNS}
_OUTC = {c.name: c for c in OUTCOME_COLUMNS}
_SEIZ = {c.name: c for c in SEIZURE_COLUMNS}
_COLUMNS = {"declarations": _DECL, "outcomes": _OUTC, "seizures": _SEIZ}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ColumnSpec(_Model):
    """Where one canonical column comes from, and how its values are converted."""

    from_: str | None = Field(None, alias="from")
    value: str | int | float | bool | None = None
    sequence_within: str | None = None
    product: list[str] | None = None
    date_format: str | None = None
    scale: float | None = None
    zfill: int | None = Field(None, ge=1, le=20)
    values: dict[str, str] | None = None
    # a source value not listed in `values`: `unknown` (the default; counted in the summary),
    # `keep` it as it is, or `quarantine` the row with the reason
    unmapped: Literal["unknown", "keep", "quarantine"] = "unknown"

    @field_validator("values", mode="before")
    @classmethod
    def _keys_as_text(cls, v: Any) -> Any:
        return {str(k): str(x) for k, x in v.items()} if isinstance(v, dict) else v

    @model_validator(mode="after")
    def _one_source(self) -> ColumnSpec:
        given = [
            k
            for k in ("from", "value", "sequence_within", "product")
            if getattr(self, "from_" if k == "from" else k) is not None
        ]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of from, value, sequence_within, product"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self


class LabelSpec(_Model):
    """A label column of the declaration file, turned into one outcome per labelled row.

    An empty label means "not inspected": no outcome, counted in the summary.
    """

    offence_found: str
    # values of the label column that mean "offence found" (e.g. ["2"] for KCS Critical Fraud);
    # any other present value is a clean result. Unset: the column holds booleans (1/0, yes/no).
    positive_values: list[str] | None = None
    additional_duty: str | None = None
    additional_duty_scale: float = Field(1.0, gt=0)
    offence_code: str | None = None
    control_kind: str
    # why the labelled rows were controlled (profile, intelligence, random, other), when the
    # file says it for all of them; unset: not recorded
    control_reason: str | None = None
    risk_area: str
    clean_scope: Literal["all_areas", "risk_area"] = "all_areas"
    label_delay_days: int = Field(ge=0)

    @field_validator("positive_values", mode="before")
    @classmethod
    def _values_as_text(cls, v: Any) -> Any:
        return [str(x) for x in v] if isinstance(v, list) else v

    @field_validator("control_kind")
    @classmethod
    def _kind(cls, v: str) -> str:
        if v not in CONTROL_KINDS:
            raise ValueError(f"unknown control kind {v!r}; allowed: {', '.join(CONTROL_KINDS)}")
        return v

    @field_validator("control_reason")
    @classmethod
    def _reason(cls, v: str | None) -> str | None:
        if v is not None and v not in CONTROL_REASONS:
            raise ValueError(f"unknown control reason {v!r}; allowed: {', '.join(CONTROL_REASONS)}")
        return v

    @field_validator("risk_area")
    @classmethod
    def _area(cls, v: str) -> str:
        if v not in RISK_AREAS:
            raise ValueError(f"unknown risk area {v!r}; allowed: {', '.join(RISK_AREAS)}")
        return v


class CsvOptions(_Model):
    """How to read a CSV source."""

    sep: str = ","
    encoding: str = "utf-8"


def _shorthand(v: Any) -> Any:
    # `office: office.id` is short for `office: {from: office.id}`
    if isinstance(v, dict):
        return {k: {"from": x} if isinstance(x, str) else x for k, x in v.items()}
    return v


def _canonical_specs(v: dict[str, ColumnSpec], table: str) -> dict[str, ColumnSpec]:
    columns = _COLUMNS[table]
    unknown = [k for k in v if k not in columns]
    if unknown:
        raise ValueError(f"unknown canonical column(s) {unknown}; allowed: {', '.join(columns)}")
    missing = [c for c in column_names(table, required_only=True) if c not in v]
    if missing:
        raise ValueError(
            f"required column(s) {missing} not mapped; give each a source "
            "(`col: source_col`) or a constant (`col: {value: ...}`)"
        )
    for name, spec in v.items():
        _check_spec(columns[name], spec, v, columns)
    return v


class OutcomeTableSpec(_Model):
    """A control-results table of its own: one row per control, any number of areas."""

    description: str = ""
    columns: dict[str, ColumnSpec]

    @field_validator("columns", mode="before")
    @classmethod
    def _short(cls, v: Any) -> Any:
        return _shorthand(v)

    @field_validator("columns")
    @classmethod
    def _canonical(cls, v: dict[str, ColumnSpec]) -> dict[str, ColumnSpec]:
        return _canonical_specs(v, "outcomes")


class Mapping(_Model):
    """A whole mapping file."""

    description: str = ""
    format: Literal["auto", "csv", "parquet"] = "auto"
    csv: CsvOptions = CsvOptions()
    declarations: dict[str, ColumnSpec]
    labels: list[LabelSpec] = []
    outcomes: OutcomeTableSpec | None = None

    @field_validator("declarations", mode="before")
    @classmethod
    def _short(cls, v: Any) -> Any:
        return _shorthand(v)

    @field_validator("labels", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        # one label column (a mapping) or several (a list of them)
        return [] if v is None else [v] if isinstance(v, dict) else v

    @model_validator(mode="after")
    def _distinct_outcome_keys(self) -> Mapping:
        seen: set[tuple[str, str]] = set()
        for spec in self.labels:
            key = (spec.control_kind, spec.risk_area)
            if key in seen:
                raise ValueError(
                    f"two label columns give {spec.control_kind} results for {spec.risk_area}; "
                    "give each column its own area or control kind"
                )
            seen.add(key)
        return self

    def label_areas(self) -> list[str]:
        """The risk areas the mapping's labels can name (inline columns; an outcome table can
        name any area, so its areas are known only from the data)."""
        return [spec.risk_area for spec in self.labels]

    @field_validator("declarations")
    @classmethod
    def _canonical(cls, v: dict[str, ColumnSpec]) -> dict[str, ColumnSpec]:
        return _canonical_specs(v, "declarations")


class SeizureMapping(_Model):
    """A mapping of a seizure-intelligence file (WCO CEN style) to the ``seizures`` table."""

    description: str = ""
    format: Literal["auto", "csv", "parquet"] = "auto"
    csv: CsvOptions = CsvOptions()
    seizures: dict[str, ColumnSpec]

    @field_validator("seizures", mode="before")
    @classmethod
    def _short(cls, v: Any) -> Any:
        return _shorthand(v)

    @field_validator("seizures")
    @classmethod
    def _canonical(cls, v: dict[str, ColumnSpec]) -> dict[str, ColumnSpec]:
        return _canonical_specs(v, "seizures")


def _check_spec(
    col: Column, spec: ColumnSpec, specs: dict[str, ColumnSpec], columns: dict[str, Column]
) -> None:
    if spec.date_format is not None and col.dtype != "date":
        raise ValueError(f"{col.name}: date_format applies to date columns only")
    if spec.scale is not None and col.dtype not in ("float", "int"):
        raise ValueError(f"{col.name}: scale applies to numeric columns only")
    if spec.zfill is not None and col.dtype != "string":
        raise ValueError(f"{col.name}: zfill applies to text columns only")
    if spec.sequence_within is not None and spec.sequence_within not in specs:
        raise ValueError(
            f"{col.name}: sequence_within names unmapped column {spec.sequence_within!r}"
        )
    for other in spec.product or []:
        if other not in specs or columns[other].dtype not in ("float", "int") or other == col.name:
            raise ValueError(
                f"{col.name}: product needs other mapped numeric columns, not {other!r}"
            )


# --- loading --------------------------------------------------------------------------------


def resolve_mapping(name_or_path: str | Path) -> Path:
    """A mapping file path; a missing path without suffix names a packaged mapping.

    ``date_bacuda`` (also ``<root>/date_bacuda``, as ``params.yaml`` paths are joined to the
    project root) means ``riskml/mappings/date_bacuda.yaml``.
    """
    path = Path(name_or_path)
    if path.exists():
        return path
    packaged = resources.files("riskml") / "mappings" / f"{path.name}.yaml"
    if not path.suffix and packaged.is_file():
        return Path(str(packaged))
    shipped = ", ".join(sorted(p.stem for p in packaged_mappings()))
    raise RiskmlError(
        f"{name_or_path}: mapping file not found; give a path or one of the "
        f"packaged mappings: {shipped}"
    )


def packaged_mappings() -> list[Path]:
    """The mapping files shipped in ``riskml/mappings``."""
    folder = resources.files("riskml") / "mappings"
    return sorted(Path(str(p)) for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_mapping(path: str | Path, kind: type[_Model] | None = None) -> Any:
    """Read and validate a mapping: a :class:`SeizureMapping` when its top level has
    ``seizures`` (or ``kind`` says so), else a :class:`Mapping` of a declaration file; raise
    :class:`RiskmlError` naming the file and bad keys."""
    path = resolve_mapping(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise RiskmlError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise RiskmlError(f"{path}: expected a mapping (key: value) at the top level")
    try:
        if kind is None:
            kind = SeizureMapping if "seizures" in data else Mapping
        return kind.model_validate(data)
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise RiskmlError(
            f"{path}: invalid ingest mapping, fix these keys:\n" + "\n".join(lines)
        ) from exc


_CSV_SUFFIXES = (".csv", ".txt", ".tsv", ".gz", ".zip")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_source(file: str | Path, mapping: Mapping, *, nrows: int | None = None) -> pd.DataFrame:
    """The source file as read: CSV columns as text (no leading zero or code is lost).

    The file suffix decides the format (.parquet/.pq, .csv/.txt/.tsv/.gz/.zip); the mapping's
    ``format`` applies to other suffixes. An empty, header-only or unreadable file is a
    :class:`RiskmlError` naming the file and the mapping's format. ``nrows``: the first rows only.
    """
    file = Path(file)
    if not file.exists():
        raise RiskmlError(f"{file}: file not found")
    suffix = file.suffix.lower()
    kind = (
        "parquet"
        if suffix in (".parquet", ".pq")
        else "csv"
        if suffix in _CSV_SUFFIXES
        else mapping.format
        if mapping.format != "auto"
        else "csv"
    )
    fmt = (
        "Parquet"
        if kind == "parquet"
        else f"CSV with sep {mapping.csv.sep!r} and encoding {mapping.csv.encoding}"
    )
    if file.stat().st_size == 0:
        raise RiskmlError(f"{file}: empty file (no header, no rows); nothing to ingest")
    try:
        if kind == "parquet":
            raw = pd.read_parquet(file)
            raw = raw.head(nrows) if nrows else raw
        else:
            raw = pd.read_csv(
                file,
                dtype="str",
                keep_default_na=False,
                na_values=[""],
                sep=mapping.csv.sep,
                encoding=mapping.csv.encoding,
                nrows=nrows,
            )
    except Exception as exc:  # parser, codec and Arrow errors all mean the same to the user
        raise RiskmlError(
            f"{file}: cannot be read as {fmt} ({_first_line(exc)}); check the file or the "
            "mapping's format/csv settings"
        ) from exc
    if raw.empty:
        raise RiskmlError(f"{file}: header only, no data rows ({fmt}); nothing to ingest")
    return raw


def source_columns(mapping: Mapping) -> dict[str, str]:
    """Source column of the declaration file -> the mapping key that uses it."""
    used = {s.from_: f"declarations.{k}" for k, s in mapping.declarations.items() if s.from_}
    for i, spec in enumerate(mapping.labels):
        for key in ("offence_found", "additional_duty", "offence_code"):
            src = getattr(spec, key)
            if src:
                used.setdefault(src, f"labels[{i}].{key}")
    return used


def outcome_source_columns(mapping: Mapping) -> dict[str, str]:
    """Source column of the control-results file -> the mapping key that uses it."""
    if mapping.outcomes is None:
        return {}
    return {s.from_: f"outcomes.{k}" for k, s in mapping.outcomes.columns.items() if s.from_}


def check_source(
    raw: pd.DataFrame,
    mapping: Mapping,
    *,
    file: str = "",
    mapping_file: str = "",
    used: dict[str, str] | None = None,
) -> None:
    """Raise :class:`RiskmlError` when a column the mapping names is not in the file."""
    used = source_columns(mapping) if used is None else used
    absent = {src: key for src, key in used.items() if src not in raw.columns}
    if absent:
        listed = "; ".join(f"{src!r} (for {key})" for src, key in absent.items())
        present = ", ".join(map(str, raw.columns[:30]))
        hint = (
            f"; the file has one column only: is the separator right (mapping csv.sep is "
            f"{mapping.csv.sep!r})?"
            if raw.shape[1] == 1
            else "; fix the mapping's source names or use a file with them"
        )
        raise RiskmlError(
            f"{file}: column(s) {listed} named in mapping {mapping_file} not found in the file "
            f"(it has: {present[:300]}){hint}"
        )


# --- conversion -----------------------------------------------------------------------------


class ColumnFailure(RiskmlError):
    """Every present value of a mapped column failed to convert (raised with the context)."""


@dataclass
class Converted:
    """One converted column: values, how many present values failed to convert, and the
    source values outside the mapping's ``values`` (with where they must be quarantined)."""

    values: pd.Series
    failed: int = 0
    unmapped: dict[str, int] = field(default_factory=dict)
    quarantine: np.ndarray | None = None


def _typed_or_raw(parsed: pd.Series, text: pd.Series, render: Any) -> tuple[pd.Series, int]:
    """``parsed`` when every present value parsed; else text with the raw value where it failed.

    Raises :class:`ColumnFailure` when values are present and none parsed."""
    failed = text.notna() & parsed.isna()
    n = int(failed.sum())
    if n == 0:
        return parsed, 0
    if n == int(text.notna().sum()):
        raise ColumnFailure(f"none of its {n:,} values converts (e.g. {text[failed].iat[0]!r})")
    return render(parsed).astype("str").where(~failed, text), n


def _recode(text: pd.Series, col: Column, spec: ColumnSpec) -> Converted:
    """Apply ``spec.values``; values outside it follow ``spec.unmapped``."""
    values = spec.values or {}
    mapped = text.map(values, na_action="ignore")
    outside = (text.notna() & mapped.isna()).to_numpy(bool)
    counts = text[outside].value_counts()
    unmapped = {str(k): int(v) for k, v in counts.items()}
    allowed = ALLOWED_VALUES.get(col.name)
    mode = spec.unmapped
    if mode == "unknown" and allowed is not None and "unknown" not in allowed:
        mode = "keep"  # no `unknown` value for this column: validate quarantines the code
    if mode == "unknown":
        filler: Any = "unknown" if col.dtype == "string" else None
        out = mapped.where(~outside, filler)
    else:
        out = mapped.where(~outside, text)
    return Converted(
        out.astype("str") if col.dtype == "string" else out,
        unmapped=unmapped,
        quarantine=outside if mode == "quarantine" else None,
    )


def _pad(text: pd.Series, width: int) -> pd.Series:
    """All-digit values one digit short of ``width`` get their lost leading zero back; other
    lengths are left as they are (a 5-digit HS code is not padded into chapter 00)."""
    short = text.str.fullmatch(r"\d+").fillna(False).astype(bool) & text.str.len().eq(width - 1)
    return text.where(~short, "0" + text)


def convert_column(raw: pd.Series, col: Column, spec: ColumnSpec) -> Converted:
    """One source column converted for canonical column ``col``."""
    text = as_text(raw)
    conv = Converted(text)
    if spec.values:
        conv = _recode(text, col, spec)
        text = conv.values.astype("str").mask(conv.values.isna())
    if col.dtype == "date":
        if spec.date_format:
            parsed = pd.to_datetime(text, format=spec.date_format, errors="coerce")
        else:
            parsed = pd.to_datetime(text, format="ISO8601", errors="coerce")
        conv.values, conv.failed = _typed_or_raw(parsed, text, lambda s: s.dt.strftime("%Y-%m-%d"))
        return conv
    if col.dtype in ("float", "int") and (
        spec.scale is not None or spec.values or not pd.api.types.is_numeric_dtype(raw)
    ):
        parsed = pd.to_numeric(text, errors="coerce")
        if spec.scale is not None:
            parsed = parsed * spec.scale
        conv.values, conv.failed = _typed_or_raw(
            parsed, text, lambda s: s.map(repr, na_action="ignore")
        )
        return conv
    if col.dtype == "string" and spec.zfill:
        conv.values = _pad(text, spec.zfill)
        return conv
    if col.dtype == "string" or raw.dtype == object or pd.api.types.is_string_dtype(raw):
        conv.values = text  # validate parses text and quarantines what does not parse
        return conv
    conv.values = raw
    return conv


def _format_of(col: Column, spec: ColumnSpec) -> str:
    if col.dtype == "date":
        if spec.date_format:
            return f"a date in the mapping's date_format {spec.date_format!r}"
        return "a date in ISO format YYYY-MM-DD (the mapping gives no date_format)"
    return "a number (decimal point '.')" + (f", scaled by {spec.scale:g}" if spec.scale else "")


@dataclass
class MappedTable:
    """A canonical table mapped from source rows, with what the mapping could not convert."""

    frame: pd.DataFrame
    failures: dict[str, int]
    unmapped: dict[str, dict[str, int]]


def map_table(
    raw: pd.DataFrame,
    specs: dict[str, ColumnSpec],
    columns: dict[str, Column],
    *,
    table: str = "declarations",
    file: str = "",
    mapping_file: str = "",
) -> MappedTable:
    """A canonical table from the source rows (same order) through the column ``specs``.

    Source values outside a ``values`` recoding with ``unmapped: quarantine`` are marked in
    ``source_error``/``source_error_column`` for ``validate`` to quarantine. Raises
    :class:`RiskmlError` when a column fails entirely, naming the column and its format.
    """
    out: dict[str, pd.Series] = {}
    failures: dict[str, int] = {}
    unmapped: dict[str, dict[str, int]] = {}
    n = len(raw)
    index = pd.RangeIndex(n)
    raw = raw.reset_index(drop=True)
    errors = np.full(n, None, dtype=object)
    error_cols = np.full(n, None, dtype=object)
    for name, spec in specs.items():
        if spec.from_ is not None:
            col = columns[name]
            try:
                conv = convert_column(raw[spec.from_], col, spec)
            except ColumnFailure as exc:
                raise RiskmlError(
                    f"{file}: column {spec.from_!r} ({table}.{name}): {exc}; every value must be "
                    f"{_format_of(col, spec)}: fix the mapping {mapping_file} or the file"
                ) from None
            out[name], failures[name] = conv.values, conv.failed
            if conv.unmapped:
                unmapped[name] = conv.unmapped
            if conv.quarantine is not None and conv.quarantine.any():
                text = as_text(raw[spec.from_])
                for i in np.flatnonzero(conv.quarantine):
                    reason = f"column {name}: {text.iat[i]!r} is not one of the mapping's values"
                    errors[i] = reason if errors[i] is None else f"{errors[i]}; {reason}"
                    error_cols[i] = name if error_cols[i] is None else f"{error_cols[i]}, {name}"
        elif spec.value is not None:
            out[name] = pd.Series([spec.value] * n, index=index)
    for name, spec in specs.items():
        if spec.sequence_within is not None:
            group = out[spec.sequence_within]
            out[name] = group.groupby(group, sort=False, dropna=False).cumcount() + 1
    for name, spec in specs.items():
        if spec.product:
            nums = [pd.to_numeric(out[c], errors="coerce") for c in spec.product]
            out[name] = pd.Series(np.prod(nums, axis=0), index=index) * (spec.scale or 1.0)
    frame = pd.DataFrame(out, index=index)
    frame = frame[[c for c in columns if c in frame.columns]]
    for extra in (SOURCE_FILE, SOURCE_ROW):
        if extra in raw.columns:
            frame[extra] = raw[extra].to_numpy()
    if SOURCE_ROW not in frame.columns:
        frame[SOURCE_ROW] = np.arange(n, dtype="int64")
    if any(e is not None for e in errors):
        frame[SOURCE_ERROR] = pd.Series(errors, index=index, dtype="str")
        frame[SOURCE_ERROR_COLUMN] = pd.Series(error_cols, index=index, dtype="str")
    return MappedTable(frame, {k: v for k, v in failures.items() if v}, unmapped)


def map_declarations(raw: pd.DataFrame, mapping: Mapping) -> tuple[pd.DataFrame, dict[str, int]]:
    """Canonical declarations from the source rows (same order) and failures per column."""
    mapped = map_table(raw, mapping.declarations, _DECL)
    return mapped.frame, mapped.failures


def _label_rows(
    raw: pd.DataFrame, declarations: pd.DataFrame, spec: LabelSpec
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The outcomes one label column gives (labelled rows only) and its counts."""
    text = as_text(raw[spec.offence_found]).reset_index(drop=True)
    present = text.notna().to_numpy(bool)
    if spec.positive_values is not None:
        found = text.isin(spec.positive_values).astype("boolean").mask(~present)
        bad = pd.Series(False, index=text.index)
    else:
        found, bad = parse_bool(text)
    is_found = found.fillna(False).to_numpy(bool)
    is_clean = found.eq(False).fillna(False).to_numpy(bool)
    area = np.where(is_found, spec.risk_area, None)
    if spec.clean_scope == "risk_area":
        area = np.where(is_clean, spec.risk_area, area)
    offence = found.astype(object).where(~bad, text)  # invalid labels stay visible
    accepted = declarations["accepted_date"]
    if not pd.api.types.is_datetime64_any_dtype(accepted):
        accepted = pd.to_datetime(accepted, format="ISO8601", errors="coerce")
    out = pd.DataFrame(
        {
            "declaration_id": declarations["declaration_id"].to_numpy(),
            "item_no": declarations["item_no"].to_numpy(),
            "control_kind": spec.control_kind,
            "result_date": accepted.to_numpy() + pd.Timedelta(days=spec.label_delay_days),
            "risk_area": pd.Series(area, dtype="str"),
            "offence_found": offence.astype("str") if bad.any() else found,
        }
    )
    if spec.additional_duty:
        duty = ColumnSpec(**{"from": spec.additional_duty, "scale": spec.additional_duty_scale})
        out["additional_duty"] = convert_column(
            raw[spec.additional_duty].reset_index(drop=True), _OUTC["additional_duty"], duty
        ).values.to_numpy()
    if spec.offence_code:
        out["offence_code"] = as_text(raw[spec.offence_code]).to_numpy()
    if spec.control_reason:
        out["control_reason"] = spec.control_reason
    for extra in (SOURCE_FILE, SOURCE_ROW):
        if extra in declarations.columns:
            out[extra] = declarations[extra].to_numpy()
    counts = {
        "inspected": int(present.sum()),
        "not_inspected": int((~present).sum()),
        "offences": int(is_found.sum()),
    }
    return out[present], counts


def label_outcomes(
    raw: pd.DataFrame, declarations: pd.DataFrame, labels: list[LabelSpec] | LabelSpec | None
) -> pd.DataFrame:
    """The outcomes of the label columns: one per labelled row and column (none without
    ``labels``); an empty label gives none (not inspected)."""
    return label_outcomes_counted(raw, declarations, labels)[0]


def label_outcomes_counted(
    raw: pd.DataFrame, declarations: pd.DataFrame, labels: list[LabelSpec] | LabelSpec | None
) -> tuple[pd.DataFrame, dict[str, dict[str, int]]]:
    """:func:`label_outcomes` and, per label column, labelled / not inspected / offence rows."""
    specs = [labels] if isinstance(labels, LabelSpec) else list(labels or [])
    if not specs:
        return empty_table("outcomes"), {}
    raw = raw.reset_index(drop=True)
    frames, counts = [], {}
    for spec in specs:
        rows, counts[f"{spec.offence_found} -> {spec.risk_area}"] = _label_rows(
            raw, declarations, spec
        )
        frames.append(rows)
    out = pd.concat(frames, ignore_index=True)
    # Two columns of one control kind that both say "clean for every area" give the same row.
    clean_all = out["risk_area"].isna() & out["offence_found"].astype("string").isin(
        ["False", "false"]
    )
    dup = out.duplicated([*KEY, "control_kind", "risk_area"]) & clean_all
    return out[~dup.to_numpy(bool)].reset_index(drop=True), counts


def map_outcomes(
    raw: pd.DataFrame, mapping: Mapping, *, file: str = "", mapping_file: str = ""
) -> MappedTable:
    """Canonical outcomes from a control-results table through ``mapping.outcomes``."""
    if mapping.outcomes is None:
        raise RiskmlError(
            f"{file}: a control-results file was given but mapping {mapping_file} has no "
            "`outcomes` section; add one (see docs/data-contract.md)"
        )
    return map_table(
        raw,
        mapping.outcomes.columns,
        _OUTC,
        table="outcomes",
        file=file,
        mapping_file=mapping_file,
    )


# --- stage entry ----------------------------------------------------------------------------


def _read_all(
    files: list[Path],
    mapping: Mapping,
    used: dict[str, str],
    mapping_file: Path,
    sample: int | None,
) -> pd.DataFrame:
    """The files read and checked, one after the other, with ``source_file``/``source_row``;
    ``sample``: every k-th row of each file, about ``sample`` rows spanning its whole period."""
    parts = []
    for file in files:
        raw = read_source(file, mapping)
        check_source(raw, mapping, file=str(file), mapping_file=str(mapping_file), used=used)
        raw = raw.reset_index(drop=True)
        raw[SOURCE_FILE] = str(file)
        raw[SOURCE_ROW] = np.arange(len(raw), dtype="int64")
        if sample and len(raw) > sample:
            raw = raw.iloc[:: -(-len(raw) // sample)].reset_index(drop=True)
        parts.append(raw)
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]


def _as_list(files: str | Path | list[str | Path] | tuple[str | Path, ...]) -> list[Path]:
    return [Path(f) for f in files] if isinstance(files, list | tuple) else [Path(files)]


def ingest_declarations(
    files: str | Path | list[str | Path],
    mapping_path: str | Path,
) -> tuple[pd.DataFrame, pd.DataFrame, Mapping]:
    """The source rows and the canonical declarations mapped from them (``riskml score``).

    Label columns the mapping names need not be in the file (new declarations carry none)."""
    mapping_file = resolve_mapping(mapping_path)
    mapping = load_mapping(mapping_file)
    used = {s.from_: f"declarations.{k}" for k, s in mapping.declarations.items() if s.from_}
    raw = _read_all(_as_list(files), mapping, used, mapping_file, None)
    mapped = map_table(
        raw, mapping.declarations, _DECL, file=_names(files), mapping_file=str(mapping_file)
    )
    return raw, mapped.frame, mapping


def _names(files: Any) -> str:
    return ", ".join(str(f) for f in _as_list(files))


def run_ingest(
    file: str | Path | list[str | Path],
    mapping_path: str | Path,
    raw_dir: Path,
    *,
    outcomes_file: str | Path | list[str | Path] | None = None,
    sample: int | None = None,
) -> dict[str, Any]:
    """Stage ``ingest``: the file(s) through the mapping -> ``raw_dir/{declarations,outcomes,
    truth}``.

    ``file``: one declarations file or several of the same layout (e.g. one per period), read
    one after the other. ``outcomes_file``: the control-results table(s), mapped through the
    mapping's ``outcomes`` section; its rows join those of the inline label columns.
    ``truth.parquet`` is written empty: real data carries no truth. Every row carries
    ``source_file`` and ``source_row`` (the 0-based data row of that file) so that the
    quarantine of ``validate`` points at the source line. ``sample``: about this many rows of
    each file, every k-th (tests, quick looks). Nothing is written when a whole file or column
    is unusable. Returns a summary.
    """
    from riskml.io import write_parquet  # riskml.io imports riskml.contract

    raw_dir = Path(raw_dir)
    mapping_file = resolve_mapping(mapping_path)
    mapping = load_mapping(mapping_file)
    files = _as_list(file)
    raw = _read_all(files, mapping, source_columns(mapping), mapping_file, sample)
    decl = map_table(
        raw, mapping.declarations, _DECL, file=_names(files), mapping_file=str(mapping_file)
    )
    outcomes, label_counts = label_outcomes_counted(raw, decl.frame, mapping.labels)
    summary: dict[str, Any] = {
        "files": [str(f) for f in files],
        "mapping": str(mapping_file),
        "rows": len(raw),
        "declarations": len(decl.frame),
        "unconverted_values": decl.failures,
        "unmapped_codes": decl.unmapped,
        "labels": label_counts,
    }
    if label_counts:
        summary["not_inspected"] = sum(c["not_inspected"] for c in label_counts.values())
    if outcomes_file is not None:
        out_files = _as_list(outcomes_file)
        used = outcome_source_columns(mapping)
        if mapping.outcomes is None:
            map_outcomes(
                raw.iloc[:0], mapping, file=_names(out_files), mapping_file=str(mapping_file)
            )
        raw_out = _read_all(out_files, mapping, used, mapping_file, sample)
        table = map_outcomes(
            raw_out, mapping, file=_names(out_files), mapping_file=str(mapping_file)
        )
        summary["control_results"] = {
            "files": [str(f) for f in out_files],
            "rows": len(table.frame),
            "unconverted_values": table.failures,
            "unmapped_codes": table.unmapped,
        }
        outcomes = pd.concat(
            [f for f in (outcomes, table.frame) if len(f)] or [empty_table("outcomes")],
            ignore_index=True,
        )
    summary["outcomes"] = len(outcomes)
    write_parquet(decl.frame, table_file(raw_dir, "declarations"))
    write_parquet(outcomes, table_file(raw_dir, "outcomes"))
    # real data has no truth; an empty table keeps the stage outputs fixed and replaces a truth
    # file an earlier simulated run may have left
    write_parquet(empty_table("truth"), table_file(raw_dir, "truth"))
    # seizures come from their own file (run_ingest_seizures), never from an earlier simulation
    (table_file(raw_dir, "seizures")).unlink(missing_ok=True)
    return summary


def run_ingest_seizures(file: Path, mapping_path: Path, raw_dir: Path) -> dict[str, Any]:
    """``file`` (seizure intelligence, e.g. a CEN export) through a :class:`SeizureMapping` ->
    ``raw_dir/seizures.parquet``, with ``source_row`` so that ``validate`` quarantines bad rows
    by their line in ``file``. Returns a summary."""
    from riskml.io import write_parquet  # riskml.io imports riskml.contract

    file, raw_dir = Path(file), Path(raw_dir)
    mapping_file = resolve_mapping(mapping_path)
    mapping = load_mapping(mapping_file, SeizureMapping)
    raw = read_source(file, mapping)
    absent = [s.from_ for s in mapping.seizures.values() if s.from_ and s.from_ not in raw.columns]
    if absent:
        raise RiskmlError(
            f"{file}: column(s) {absent} named in mapping {mapping_file} not found in the file "
            f"(it has: {', '.join(map(str, raw.columns[:30]))}); fix the mapping's source names"
        )
    seizures = map_table(
        raw,
        mapping.seizures,
        _SEIZ,
        table="seizures",
        file=str(file),
        mapping_file=str(mapping_file),
    )
    write_parquet(seizures.frame, table_file(raw_dir, "seizures"))
    return {
        "file": str(file),
        "mapping": str(mapping_file),
        "seizures": len(seizures.frame),
        "unconverted_values": seizures.failures,
    }
