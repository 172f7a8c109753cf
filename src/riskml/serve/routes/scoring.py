"""Scoring new declarations (auditors)."""

from __future__ import annotations

import asyncio
import io
import json
import math
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from riskml.contract import RiskmlError, data_quality_list, empty_quarantine
from riskml.serve.deps import ServiceDep, Writer
from riskml.serve.schemas import JSON_OR_CSV, SCORE_ERRORS, error, score_request_body

#: The data-quality list of a batch without problems.
NO_PROBLEMS = data_quality_list(empty_quarantine(), [])

#: Batches up to this many rows sent at the same time share one scoring pass (ScoreQueue).
SHARED_ROWS = 64


class ScoreQueue:
    """Small batches (the single declarations of several clients) waiting while another pass
    runs are checked and scored together in the next pass
    (:meth:`riskml.score.Scorer.check_and_score_many`: each gets the result it gets alone, bit
    for bit). A pass costs tens of milliseconds of fixed work whatever its size, so four
    clients' declarations cost about one. Nothing waits on purpose: a request that finds no
    pass running starts one at once."""

    def __init__(self, max_rows: int = SHARED_ROWS) -> None:
        self.max_rows = max_rows
        self._pending: list[tuple[pd.DataFrame, asyncio.Future[Any]]] = []
        self._runner: asyncio.Task[None] | None = None

    async def score(self, scorer: Any, batch: pd.DataFrame) -> tuple[Any, Any, Any]:
        """(good rows, quarantine, scores) of ``batch``, as ``scorer.check_and_score``."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((batch, future))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run(scorer))
        return await future

    def _take(self) -> list[tuple[pd.DataFrame, asyncio.Future[Any]]]:
        """The first waiting batch and those after it that can share its pass."""
        from riskml.score import can_share

        group, rest, rows = [self._pending[0]], [], len(self._pending[0][0])
        for item in self._pending[1:]:
            fits = rows + len(item[0]) <= self.max_rows
            if fits and can_share([*(b for b, _ in group), item[0]]):
                group.append(item)
                rows += len(item[0])
            else:
                rest.append(item)
        self._pending = rest
        return group

    async def _run(self, scorer: Any) -> None:
        while self._pending:
            group = self._take()
            batches = [b for b, _ in group]
            try:
                results = await run_in_threadpool(scorer.check_and_score_many, batches)
            except Exception:  # one batch's problem must not fail the others: each alone
                results = None
            for i, (batch, future) in enumerate(group):
                try:
                    result = (
                        results[i]
                        if results is not None
                        else await run_in_threadpool(scorer.check_and_score, batch)
                    )
                except Exception as exc:
                    if not future.done():
                        future.set_exception(exc)
                    continue
                if not future.done():  # a client that went away cancelled its future
                    future.set_result(result)


def score_route(max_batch: int) -> APIRouter:
    """The router of ``POST /score`` (its documented body names ``max_batch``)."""
    r = APIRouter(tags=["scoring"])
    queue = ScoreQueue()

    @r.post(
        "/score",
        responses={**JSON_OR_CSV, **SCORE_ERRORS},
        openapi_extra={"requestBody": score_request_body(max_batch)},
    )
    async def score(
        request: Request,
        who: Writer,
        service: ServiceDep,
        format: Annotated[
            Literal["json", "csv"], Query(description="response format: json or csv")
        ] = "json",
        reasons: Annotated[
            bool, Query(description="add reasons_<area>: the risk reasons of selected areas")
        ] = False,
        mapping: Annotated[
            str | None,
            Query(
                description="a shipped ingest mapping (e.g. kcs_synthetic, date_bacuda): the "
                "body is in that layout (CSV with its separator and encoding, or JSON rows with "
                "its column names; its date formats and codes)",
                max_length=64,
            ),
        ] = None,
    ) -> Response:
        """Score a batch of new declarations (JSON list of rows, ``{"declarations": [...]}``
        or CSV with a header): one row per item with each area's score and ``selected_areas``
        (the areas whose current list it reaches). Every row gets a decision: a row that fails
        a data check is scored without the bad value where it can be (a number set missing,
        a transport code set unknown), else it is not scored; both are in ``data_quality``
        (row, key, reasons, ``scored``, ``areas_not_scored``). A batch without a required
        column: 422. More than ``serve.max_batch`` rows or ``serve.max_body_mb``: 413. Models
        not loaded: 503."""
        if mapping is None:
            batch = await read_batch(request, service.params.serve.max_batch)
        else:
            batch = await read_mapped_batch(request, mapping, service.params.serve.max_batch)
        try:
            models = service.models
            sc = models.scorer() if models.ready else await run_in_threadpool(models.scorer)
        except RiskmlError as exc:
            raise error(503, "models", str(exc), "not_ready") from None
        try:
            if mapping is None and not reasons and len(batch) <= queue.max_rows:
                good, quarantine, result = await queue.score(sc, batch)
            else:  # CPU work: off the event loop, check and score in one worker-thread hop
                good, quarantine, result = await run_in_threadpool(
                    lambda: sc.check_and_score(batch, reasons=reasons)
                )
        except RiskmlError as exc:  # the batch as a whole breaks the contract (columns)
            raise error(422, "body", str(exc)) from None
        # every row gets a decision: a score, or on the data-quality list with its reason
        if len(quarantine):
            quality = data_quality_list(quarantine, list(result.models or sc.models))
            quality["row"] = quality["row"] + 1  # the batch's row, counted from 1
        else:  # the usual case: the empty list, built once (3 ms a call); read, never changed
            quality = NO_PROBLEMS
        wide = result.wide()
        # the model version and alias that scored each area (riskml.registry.list_model)
        versions = {"X-Riskml-Models": "; ".join(f"{a}={v}" for a, v in result.models.items())}
        if format == "csv":
            return Response(
                with_quality(wide, quality).to_csv(index=False),
                media_type="text/csv",
                headers=versions,
            )
        head = {
            "items": len(wide),
            "selected": int((wide["selected_areas"] != "").sum()) if len(wide) else 0,
            "not_scored": int((~quality["scored"]).sum()),
            "models": result.models,
        }
        # one serialisation of the rows (to_json), not a round trip through Python objects
        body = (
            json.dumps(head)[:-1]
            + ', "scores": '
            + wide.to_json(orient="records")
            + ', "data_quality": '
            + (quality.drop(columns=["file"]).to_json(orient="records") if len(quality) else "[]")
            + "}"
        )
        return Response(body, media_type="application/json", headers=versions)

    return r


def with_quality(wide: pd.DataFrame, quality: pd.DataFrame) -> pd.DataFrame:
    """The scores of a CSV response with a ``data_quality`` column (the reasons of a row scored
    despite a data problem) and, after them, the rows that got no score: key, ``data_quality``
    and ``areas_not_scored``."""
    notes = quality[["declaration_id", "item_no", "reasons"]].rename(
        columns={"reasons": "data_quality"}
    )
    scored = quality["scored"].astype(bool)
    out = wide.astype({"declaration_id": str, "item_no": str}).merge(
        notes[scored.to_numpy()], on=["declaration_id", "item_no"], how="left"
    )
    out["data_quality"] = out["data_quality"].fillna("")
    lost = quality.loc[~scored, ["declaration_id", "item_no", "reasons", "areas_not_scored"]]
    return pd.concat([out, lost.rename(columns={"reasons": "data_quality"})], ignore_index=True)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is not a finite number")
    return value


def _no_constant(text: str) -> Any:
    raise ValueError(f"{text} is not a number; send finite numbers")


def parse_json_rows(body: bytes) -> list[dict[str, Any]]:
    """JSON rows (a list, or ``{"declarations": [...]}``) with scalar values and finite
    numbers, or an HTTP 422 naming the problem."""
    try:
        payload = json.loads(body, parse_float=_finite, parse_constant=_no_constant)
    except RecursionError:
        raise error(422, "body", "JSON nested too deeply; send a list of flat rows") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise error(422, "body", f"malformed JSON ({exc})", "json_invalid") from None
    if isinstance(payload, dict) and "declarations" in payload:
        payload = payload["declarations"]
    if not isinstance(payload, list) or not all(isinstance(r, dict) for r in payload):
        raise error(422, "body", "expected a list of declaration rows (JSON objects)")
    for i, row in enumerate(payload, start=1):
        for key, value in row.items():
            if isinstance(value, dict | list):
                raise error(
                    422, f"body.{i}.{key}", f"row {i}, field {key}: expected a number or text"
                )
    return payload


def shipped_mappings() -> dict[str, Path]:
    """The declaration mappings shipped in ``riskml/mappings`` by name (a request names one;
    it never gives a path)."""
    from riskml.ingest import load_mapping, packaged_mappings

    out = {}
    for path in packaged_mappings():
        try:
            if hasattr(load_mapping(path), "declarations"):
                out[path.stem] = path
        except RiskmlError:
            continue
    return out


async def read_mapped_batch(request: Request, name: str, max_batch: int) -> pd.DataFrame:
    """The body in a shipped mapping's layout, mapped to the canonical declarations (rows
    keep their data-row number as ``source_row``), or a one-line HTTP 4xx."""
    from riskml.ingest import load_mapping
    from riskml.score import read_batch as read_file

    mappings = shipped_mappings()
    if name not in mappings:
        raise error(
            422, "query.mapping", f"unknown mapping {name!r}; shipped: {', '.join(mappings)}"
        )
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("text/csv", "application/csv", "application/json", ""):
        raise error(415, "header.content-type", "send application/json or text/csv", "media")
    body = await request.body()
    csv = load_mapping(mappings[name]).csv
    with tempfile.TemporaryDirectory(prefix="riskml-score-") as folder:
        path = Path(folder) / "batch.csv"
        if kind in ("text/csv", "application/csv"):
            path.write_bytes(body)
        else:  # JSON rows with the mapping's column names: written as its CSV
            frame = pd.DataFrame.from_records(parse_json_rows(body)).astype(str)
            frame.to_csv(path, index=False, sep=csv.sep, encoding=csv.encoding)
        try:
            batch = await run_in_threadpool(read_file, path, mappings[name])
        except RiskmlError as exc:  # empty, header-only, unreadable, a column missing
            raise error(422, "body", str(exc).replace(str(path), "body")) from None
    if len(batch) > max_batch:
        raise error(413, "body", f"{len(batch):,} rows; at most {max_batch:,} per request")
    return batch


async def read_batch(request: Request, max_batch: int) -> pd.DataFrame:
    """The request body as a raw declarations table (JSON rows or CSV), or an HTTP error."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("text/csv", "application/csv", "application/json", ""):
        raise error(415, "header.content-type", "send application/json or text/csv", "media")
    body = await request.body()
    if kind in ("text/csv", "application/csv"):
        try:
            frame = pd.read_csv(
                io.BytesIO(body), dtype=str, keep_default_na=False, encoding="utf-8-sig"
            )
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise error(422, "body", f"not a readable CSV with a header ({exc})") from None
        except ValueError as exc:
            raise error(422, "body", f"not a readable CSV ({exc})") from None
    else:
        rows = parse_json_rows(body)
        if len(rows) > max_batch:
            raise error(413, "body", f"{len(rows):,} rows; at most {max_batch:,} per request")
        frame = pd.DataFrame.from_records(rows)
    if len(frame) > max_batch:
        raise error(413, "body", f"{len(frame):,} rows; at most {max_batch:,} per request")
    if frame.empty:
        raise error(422, "body", "the batch holds no rows")
    frame.columns = [str(c) for c in frame.columns]
    if frame.columns.duplicated().any():
        raise error(422, "body", "repeated column names in the header")
    missing = [c for c in ("declaration_id", "item_no") if c not in frame.columns]
    if missing:
        raise error(422, "body", f"missing required column(s) {missing}")
    return frame
