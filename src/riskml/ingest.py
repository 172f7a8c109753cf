"""External CSV/Parquet files -> the canonical raw tables, through a YAML column mapping.

A mapping says, for each canonical declarations column, where its values come from (a source
column, a constant, a numbering or a product of other columns) and how to convert them (date
format, scale factor, zero padding, recoding). Label columns inside the declaration file, as in
public research sets, become outcome rows. See ``docs/data-contract.md`` for every key.

Conversion failures are never dropped: the raw value is kept, so that ``validate`` quarantines
the row with a reason.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from riskml.contract import (
    CONTROL_KINDS,
    DECLARATION_COLUMNS,
    RISK_AREAS,
    SEIZURE_COLUMNS,
    SOURCE_ROW,
    Column,
    RiskmlError,
    as_text,
    column_names,
    empty_table,
    parse_bool,
)

_DECL = {c.name: c for c in DECLARATION_COLUMNS}
_SEIZ = {c.name: c for c in SEIZURE_COLUMNS}
_COLUMNS = {"declarations": _DECL, "seizures": _SEIZ}


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
    """Label columns of the declaration file, turned into one outcome per row."""

    offence_found: str
    additional_duty: str | None = None
    additional_duty_scale: float = Field(1.0, gt=0)
    offence_code: str | None = None
    control_kind: str
    risk_area: str
    clean_scope: Literal["all_areas", "risk_area"] = "all_areas"
    label_delay_days: int = Field(ge=0)

    @field_validator("control_kind")
    @classmethod
    def _kind(cls, v: str) -> str:
        if v not in CONTROL_KINDS:
            raise ValueError(f"unknown control kind {v!r}; allowed: {', '.join(CONTROL_KINDS)}")
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


class Mapping(_Model):
    """A whole mapping file."""

    description: str = ""
    format: Literal["auto", "csv", "parquet"] = "auto"
    csv: CsvOptions = CsvOptions()
    declarations: dict[str, ColumnSpec]
    labels: LabelSpec | None = None

    @field_validator("declarations", mode="before")
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        return _shorthand_specs(v)

    @field_validator("declarations")
    @classmethod
    def _canonical(cls, v: dict[str, ColumnSpec]) -> dict[str, ColumnSpec]:
        return _canonical_specs(v, "declarations")


def _shorthand_specs(v: Any) -> Any:
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


class SeizureMapping(_Model):
    """A mapping of a seizure-intelligence file (WCO CEN style) to the ``seizures`` table."""

    description: str = ""
    format: Literal["auto", "csv", "parquet"] = "auto"
    csv: CsvOptions = CsvOptions()
    seizures: dict[str, ColumnSpec]

    @field_validator("seizures", mode="before")
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        return _shorthand_specs(v)

    @field_validator("seizures")
    @classmethod
    def _canonical(cls, v: dict[str, ColumnSpec]) -> dict[str, ColumnSpec]:
        return _canonical_specs(v, "seizures")


def _check_spec(
    col: Column,
    spec: ColumnSpec,
    specs: dict[str, ColumnSpec],
    columns: dict[str, Column] = _DECL,
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


def read_source(file: str | Path, mapping: Mapping) -> pd.DataFrame:
    """The source file as read: CSV columns as text (no leading zero or code is lost).

    The file suffix decides the format (.parquet/.pq, .csv/.txt/.tsv/.gz/.zip); the mapping's
    ``format`` applies to other suffixes.
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
    try:
        if kind == "parquet":
            return pd.read_parquet(file)
        return pd.read_csv(
            file,
            dtype="str",
            keep_default_na=False,
            na_values=[""],
            sep=mapping.csv.sep,
            encoding=mapping.csv.encoding,
        )
    except Exception as exc:  # parser, codec and Arrow errors all mean the same to the user
        raise RiskmlError(
            f"{file}: cannot be read as {kind} ({exc}); check the file or the "
            "mapping's format/csv settings"
        ) from exc


def source_columns(mapping: Mapping) -> dict[str, str]:
    """Source column -> the mapping key that uses it."""
    used = {s.from_: f"declarations.{k}" for k, s in mapping.declarations.items() if s.from_}
    if mapping.labels is not None:
        for key in ("offence_found", "additional_duty", "offence_code"):
            src = getattr(mapping.labels, key)
            if src:
                used[src] = f"labels.{key}"
    return used


def check_source(
    raw: pd.DataFrame, mapping: Mapping, *, file: str = "", mapping_file: str = ""
) -> None:
    """Raise :class:`RiskmlError` when a column the mapping names is not in the file."""
    absent = {src: key for src, key in source_columns(mapping).items() if src not in raw.columns}
    if absent:
        listed = "; ".join(f"{src!r} (for {key})" for src, key in absent.items())
        present = ", ".join(map(str, raw.columns[:30]))
        raise RiskmlError(
            f"{file}: column(s) {listed} named in mapping {mapping_file} not found in the file "
            f"(it has: {present}); fix the mapping's source names or use a file with them"
        )


# --- conversion -----------------------------------------------------------------------------


def _typed_or_raw(parsed: pd.Series, text: pd.Series, render: Any) -> tuple[pd.Series, int]:
    """``parsed`` when every present value parsed; else text with the raw value where it failed."""
    failed = text.notna() & parsed.isna()
    n = int(failed.sum())
    if n == 0:
        return parsed, 0
    return render(parsed).astype("str").where(~failed, text), n


def convert_column(raw: pd.Series, col: Column, spec: ColumnSpec) -> tuple[pd.Series, int]:
    """One source column converted for canonical column ``col``; also the failure count."""
    text = as_text(raw)
    if spec.values:
        text = text.map(lambda v: spec.values.get(v, v), na_action="ignore").astype("str")
    if col.dtype == "date" and spec.date_format:
        parsed = pd.to_datetime(text, format=spec.date_format, errors="coerce")
        return _typed_or_raw(parsed, text, lambda s: s.dt.strftime("%Y-%m-%d"))
    if col.dtype in ("float", "int") and (
        spec.scale is not None or not pd.api.types.is_numeric_dtype(raw)
    ):
        parsed = pd.to_numeric(text, errors="coerce")
        if spec.scale is not None:
            parsed = parsed * spec.scale
        return _typed_or_raw(parsed, text, lambda s: s.map(repr, na_action="ignore"))
    if col.dtype == "string" and spec.zfill:
        digits = text.str.fullmatch(r"\d+").fillna(False).astype(bool)
        return text.where(~digits, text.str.zfill(spec.zfill)), 0
    if col.dtype == "string" or raw.dtype == object or pd.api.types.is_string_dtype(raw):
        return text, 0  # validate parses text and quarantines what does not parse
    return raw, 0


def map_declarations(raw: pd.DataFrame, mapping: Mapping) -> tuple[pd.DataFrame, dict[str, int]]:
    """Canonical declarations from the source rows (same order) and failures per column."""
    return map_table(raw, mapping.declarations, "declarations")


def map_table(
    raw: pd.DataFrame, specs: dict[str, ColumnSpec], table: str
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Canonical ``table`` rows from the source rows (same order) and failures per column."""
    out: dict[str, pd.Series] = {}
    failures: dict[str, int] = {}
    columns = _COLUMNS[table]
    index = pd.RangeIndex(len(raw))
    raw = raw.reset_index(drop=True)
    for name, spec in specs.items():
        if spec.from_ is not None:
            out[name], failures[name] = convert_column(raw[spec.from_], columns[name], spec)
        elif spec.value is not None:
            out[name] = pd.Series([spec.value] * len(raw), index=index)
    for name, spec in specs.items():
        if spec.sequence_within is not None:
            group = out[spec.sequence_within]
            out[name] = group.groupby(group, sort=False, dropna=False).cumcount() + 1
    for name, spec in specs.items():
        if spec.product:
            nums = [pd.to_numeric(out[c], errors="coerce") for c in spec.product]
            out[name] = pd.Series(np.prod(nums, axis=0), index=index) * (spec.scale or 1.0)
    frame = pd.DataFrame(out, index=index)
    frame = frame[[c for c in column_names(table) if c in frame.columns]]
    frame[SOURCE_ROW] = np.arange(len(raw), dtype="int64")
    return frame, {k: v for k, v in failures.items() if v}


def label_outcomes(
    raw: pd.DataFrame, declarations: pd.DataFrame, labels: LabelSpec | None
) -> pd.DataFrame:
    """One outcome per source row from the label columns (none without ``labels``)."""
    if labels is None:
        return empty_table("outcomes")
    raw = raw.reset_index(drop=True)
    label_text = as_text(raw[labels.offence_found])
    found, bad = parse_bool(label_text)
    area = np.where(found.fillna(False).to_numpy(bool), labels.risk_area, None)
    if labels.clean_scope == "risk_area":
        area = np.where(found.eq(False).fillna(False).to_numpy(bool), labels.risk_area, area)
    offence = found.astype(object).where(~bad, label_text)  # invalid labels stay visible
    accepted = (
        pd.to_datetime(declarations["accepted_date"], format="ISO8601", errors="coerce")
        if not pd.api.types.is_datetime64_any_dtype(declarations["accepted_date"])
        else declarations["accepted_date"]
    )
    out = pd.DataFrame(
        {
            "declaration_id": declarations["declaration_id"],
            "item_no": declarations["item_no"],
            "control_kind": labels.control_kind,
            "result_date": accepted + pd.Timedelta(days=labels.label_delay_days),
            "risk_area": pd.Series(area, dtype="str"),
            "offence_found": offence.astype("str") if bad.any() else found,
        }
    )
    if labels.additional_duty:
        spec = ColumnSpec(**{"from": labels.additional_duty, "scale": labels.additional_duty_scale})
        out["additional_duty"], _ = convert_column(
            raw[labels.additional_duty], Column("additional_duty", "float", False, ""), spec
        )
    if labels.offence_code:
        out["offence_code"] = as_text(raw[labels.offence_code])
    out[SOURCE_ROW] = declarations[SOURCE_ROW].to_numpy()
    return out


# --- stage entry ----------------------------------------------------------------------------


def run_ingest(file: Path, mapping_path: Path, raw_dir: Path) -> dict[str, Any]:
    """Stage ``ingest``: ``file`` through the mapping -> ``raw_dir/{declarations,outcomes,truth}``.

    ``truth.parquet`` is written empty: real data carries no truth.
    Both tables carry ``source_row`` (the 0-based data row of ``file``) so that the quarantine
    of ``validate`` points at the source line. Returns a summary.
    """
    from riskml.io import write_parquet  # riskml.io imports riskml.contract

    file, raw_dir = Path(file), Path(raw_dir)
    mapping_file = resolve_mapping(mapping_path)
    mapping = load_mapping(mapping_file)
    raw = read_source(file, mapping)
    check_source(raw, mapping, file=str(file), mapping_file=str(mapping_file))
    declarations, failures = map_declarations(raw, mapping)
    outcomes = label_outcomes(raw, declarations, mapping.labels)
    write_parquet(declarations, raw_dir / "declarations.parquet")
    write_parquet(outcomes, raw_dir / "outcomes.parquet")
    # real data has no truth; an empty table keeps the stage outputs fixed and replaces a truth
    # file an earlier simulated run may have left
    write_parquet(empty_table("truth"), raw_dir / "truth.parquet")
    # seizures come from their own file (run_ingest_seizures), never from an earlier simulation
    (raw_dir / "seizures.parquet").unlink(missing_ok=True)
    return {
        "file": str(file),
        "mapping": str(mapping_file),
        "rows": len(raw),
        "declarations": len(declarations),
        "outcomes": len(outcomes),
        "unconverted_values": failures,
    }


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
    seizures, failures = map_table(raw, mapping.seizures, "seizures")
    write_parquet(seizures, raw_dir / "seizures.parquet")
    return {
        "file": str(file),
        "mapping": str(mapping_file),
        "seizures": len(seizures),
        "unconverted_values": failures,
    }
