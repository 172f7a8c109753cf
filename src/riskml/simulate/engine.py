"""The month-by-month generator and the two entry points, :func:`simulate` and :func:`run`.

One :class:`World` holds the small, run-long state (entities, hidden propensities, findings known
to the control system, declaration counters); :meth:`World.month` turns it into the three
canonical tables of one month. :func:`run` streams the months to Parquet so that a run of ten
million items never holds more than one month in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from riskml.catalog import table_file
from riskml.config import AreaSpec, SimulateParams
from riskml.contract import RISK_AREAS, TABLES, Column, RiskmlError
from riskml.io import atomic_path
from riskml.simulate.catalogue import load_catalogue
from riskml.simulate.controls import (
    ControlHistory,
    control_outcomes,
    select_controls,
    tip_offs,
)
from riskml.simulate.declare import declare, revenue_mechanism
from riskml.simulate.entities import add_months, build_entities, draw_propensity
from riskml.simulate.geography import load_geography
from riskml.simulate.offences import (
    RARE_AREAS,
    A,
    area_logits,
    calibrate,
    expected_probabilities,
    offence_codes,
    offence_probabilities,
)
from riskml.simulate.seizures import SeizureLog, month_seizures
from riskml.simulate.trade import Batch, month_trade

PROPENSITY_RHO = 0.97  # month-to-month persistence of an importer's hidden propensity
PILOT_ITEMS = 30_000
CALIBRATION_ROWS = 60_000  # rows of a month used to recalibrate the rare-area intercepts
_ARROW = {
    "string": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "date": pa.timestamp("ns"),
    "bool": pa.bool_(),
}


@dataclass(frozen=True)
class Month:
    """One month of the run: its number, first day, first day after it and item count."""

    index: int
    start: np.datetime64
    end: np.datetime64
    n_items: int


def month_plan(params: SimulateParams) -> list[Month]:
    """Months of the run with their item counts: mild seasonality, slow growth, exact total."""
    first = np.datetime64(params.start_date, "D")
    bounds = [first] + [
        np.datetime64(add_months(params.start_date, m), "D") for m in range(1, params.months + 1)
    ]
    days = np.array([(bounds[m + 1] - bounds[m]).astype(int) for m in range(params.months)])
    moy = np.array([(params.start_date.month - 1 + m) % 12 for m in range(params.months)])
    w = (
        days
        * (1 + 0.12 * np.sin(2 * np.pi * (moy - 3) / 12))
        * (1 + 0.15 * np.arange(params.months) / params.months)
    )
    raw = params.n_items * w / w.sum()
    counts = np.floor(raw).astype(int)
    counts[np.argsort(counts - raw)[: params.n_items - counts.sum()]] += 1
    if (counts < 1).any():
        raise RiskmlError(
            f"simulate.n_items={params.n_items} is too small for {params.months} months; "
            "use at least one item per month"
        )
    return [Month(m, bounds[m], bounds[m + 1], int(counts[m])) for m in range(params.months)]


class World:
    """The simulated customs world of one run."""

    def __init__(self, params: SimulateParams, specs: dict[str, AreaSpec]) -> None:
        self.params, self.specs = params, specs
        self.cat, self.geo = load_catalogue(), load_geography()
        self.ents = build_entities(params, self.geo)
        self.plan = month_plan(params)
        self.propensity = self.ents.importer_propensity.copy()
        self.history = ControlHistory(params.n_importers)
        self._next_seq: dict[int, int] = {}
        per_year = params.n_items / 1.9 * 12 / params.months * 1.5
        self._id_width = max(6, len(str(int(per_year))))
        # what each importer has declared so far (HS headings, origins): first-time flags
        self._headings, self._heading_of = np.unique(self.cat.heading, return_inverse=True)
        self.seen_heading = np.zeros((params.n_importers, len(self._headings)), dtype=bool)
        self.seen_origin = np.zeros((params.n_importers, len(self.geo.code)), dtype=bool)
        self.intercepts = self._calibrate()
        self.seizure_log = SeizureLog()

    def _after_drift(self, m: int) -> bool:
        return m >= self.params.drift_month

    def _trade(self, rng: np.random.Generator, m: int, n_items: int) -> Batch:
        """``n_items`` items traded in month ``m``."""
        month = self.plan[m]
        return month_trade(
            rng,
            self.ents,
            self.geo,
            self.cat,
            month.start,
            month.end,
            n_items,
            after_drift=self._after_drift(m),
        )

    def _logits(
        self, rng: np.random.Generator, batch: Batch, m: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each area's offence logit of the items of ``batch`` (month ``m``) and its item noise."""
        return area_logits(
            rng,
            batch,
            self.ents,
            self.geo,
            self.cat,
            self.propensity,
            after_drift=self._after_drift(m),
        )

    def _calibrate(self) -> np.ndarray:
        logits = []
        for m in sorted({0, min(self.params.drift_month, self.params.months - 1)}):
            rng = np.random.default_rng([self.params.seed, 7, m])
            logits.append(self._logits(rng, self._trade(rng, m, PILOT_ITEMS), m)[0])
        return calibrate(np.vstack(logits))

    def _novelty(self, batch: Batch) -> None:
        """Flag items whose importer declares this HS heading / origin for the first time.

        Same-day items of a first pair are all first (as a feature computed to the day sees them).
        """
        imp, day = batch["importer"], batch["date"].astype(np.int64)
        for name, col, seen in (
            ("first_hs4", self._heading_of[batch["hs"]], self.seen_heading),
            ("first_origin", batch["origin"], self.seen_origin),
        ):
            key = imp.astype(np.int64) * seen.shape[1] + col
            uniq, first_idx, inv = np.unique(key, return_index=True, return_inverse=True)
            first_day = day[first_idx][inv]  # items are in date order
            batch[name] = ~seen[imp, col] & (day == first_day)
            seen[uniq // seen.shape[1], uniq % seen.shape[1]] = True

    def _declaration_ids(self, batch: Batch) -> np.ndarray:
        starts = batch["decl_start"]
        year = batch["date"][starts].astype("datetime64[Y]").astype(int) + 1970
        seq = np.empty(len(starts), dtype=np.int64)
        for y in np.unique(year):
            rows = year == y
            first = self._next_seq.get(int(y), 1)
            seq[rows] = first + np.arange(rows.sum())
            self._next_seq[int(y)] = first + int(rows.sum())
        ids = np.strings.add(
            np.strings.add("D", year.astype(str)), np.strings.zfill(seq.astype(str), self._id_width)
        )
        return ids.astype(object)[batch["decl"]]

    def month(self, m: int) -> dict[str, pd.DataFrame]:
        """The declarations, outcomes, truth and seizures (made elsewhere) of month ``m``
        (months run in order)."""
        p, month = self.params, self.plan[m]
        rng = np.random.default_rng([p.seed, 1, m])
        if m > 0:
            shock = draw_propensity(rng, len(self.propensity), 1.0)
            self.propensity = (
                PROPENSITY_RHO * self.propensity + np.sqrt(1 - PROPENSITY_RHO**2) * shock
            )
        self.history.advance(month.start)
        batch = self._trade(rng, m, month.n_items)
        self._novelty(batch)
        logits, noise = self._logits(rng, batch, m)
        # rare areas depend on first-time flags, which fall as the run goes on: their intercepts
        # are recalibrated on each month (a fixed, evenly spaced subsample of its rows)
        step = max(1, len(logits) // CALIBRATION_ROWS)
        intercepts = calibrate(logits[::step], RARE_AREAS, self.intercepts)
        offence = rng.random(logits.shape) < offence_probabilities(logits, intercepts)
        # the oracle's probability: the item noise averaged out (see riskml.simulate.offences)
        prob = expected_probabilities(logits - noise, intercepts)
        mechanism = revenue_mechanism(rng, batch, self.cat, self.geo)
        values = declare(
            rng,
            batch,
            self.cat,
            self.geo,
            self.ents.importer_size[batch["importer"]],
            offence,
            mechanism,
        )
        declarations = self._declarations(batch, values)
        truth = _truth(declarations, offence, values["evaded_duty"], prob)
        item, kind, reason = select_controls(
            rng,
            declarations,
            batch,
            self.specs,
            self.history,
            p,
            tips=tip_offs(rng, prob, batch, self.specs),
        )
        outcomes, found_items = control_outcomes(
            rng,
            declarations,
            batch,
            item,
            kind,
            reason,
            offence,
            offence_codes(batch, self.cat, mechanism),
            values["evaded_duty"],
            self.specs,
        )
        found = outcomes["offence_found"].to_numpy()
        self.history.record(
            outcomes["result_date"].to_numpy()[found].astype("datetime64[D]"),
            batch["importer"][found_items],
            (outcomes["risk_area"][found] == "revenue").to_numpy(),
        )
        seizures = month_seizures(
            np.random.default_rng([p.seed, 3, m]),  # own stream: the other tables are unchanged
            batch,
            declarations,
            prob,
            self.geo,
            self.cat,
            month.start,
            month.end,
            self.seizure_log,
        )
        return {
            "declarations": declarations,
            "outcomes": outcomes,
            "truth": truth,
            "seizures": seizures,
        }

    def _declarations(self, batch: Batch, v: Batch) -> pd.DataFrame:
        e, g, c = self.ents, self.geo, self.cat
        return pd.DataFrame(
            {
                "declaration_id": self._declaration_ids(batch),
                "item_no": batch["item_no"].astype(np.int64),
                "accepted_date": batch["date"].astype("datetime64[ns]"),
                "office": g.office_code[batch["office"]],
                "procedure": batch["procedure"],
                "transport_mode": v["transport_mode"],
                "importer_id": e.importer_id[batch["importer"]],
                "declarant_id": e.declarant_id[batch["declarant"]],
                "supplier_id": e.supplier_id[batch["supplier"]],
                "origin_country": g.code[v["origin_decl"]],
                "departure_country": np.where(
                    batch["departure"] == batch["origin"],
                    g.code[v["origin_decl"]],
                    g.code[batch["departure"]],
                ),
                "hs_code": c.hs_code[v["hs_decl"]],
                "description": c.description[v["hs_decl"]],
                "quantity": v["quantity"],
                "quantity_unit": v["quantity_unit"],
                "gross_mass_kg": v["gross_mass_kg"],
                "net_mass_kg": v["net_mass_kg"],
                "fob_value": v["fob_value"],
                "cif_value": v["cif_value"],
                "duty_rate": v["duty_rate"],
                "duties_paid": v["duties_paid"],
                "preference_claim": v["preference_claim"].astype(bool),
                # the simulated tariff knows two treatments: a preference claimed, or not
                "tariff_treatment": np.where(v["preference_claim"], "preference", "standard"),
            }
        )


def _truth(
    declarations: pd.DataFrame, offence: np.ndarray, evaded: np.ndarray, prob: np.ndarray
) -> pd.DataFrame:
    k = len(RISK_AREAS)
    evaded_all = np.zeros_like(prob)
    evaded_all[:, A["revenue"]] = evaded
    return pd.DataFrame(
        {
            "declaration_id": np.repeat(declarations["declaration_id"].to_numpy(), k),
            "item_no": np.repeat(declarations["item_no"].to_numpy(), k),
            "risk_area": np.tile(np.array(RISK_AREAS, dtype=object), len(declarations)),
            "offence": offence.ravel(),
            "evaded_duty": evaded_all.ravel(),
            "true_prob": prob.ravel(),
        }
    )


def iter_months(
    params: SimulateParams, specs: dict[str, AreaSpec]
) -> Iterator[dict[str, pd.DataFrame]]:
    """Yield the three tables month by month."""
    world = World(params, specs)
    for m in range(params.months):
        yield world.month(m)


def simulate(params: SimulateParams, specs: dict[str, AreaSpec]) -> dict[str, pd.DataFrame]:
    """The whole simulated run in memory: ``declarations``, ``outcomes``, ``truth`` and
    ``seizures``."""
    parts: dict[str, list[pd.DataFrame]] = {t: [] for t in TABLES}
    for tables in iter_months(params, specs):
        for t, df in tables.items():
            parts[t].append(df)
    return {t: pd.concat(dfs, ignore_index=True) for t, dfs in parts.items()}


def _schema(columns: tuple[Column, ...]) -> pa.Schema:
    return pa.schema([pa.field(c.name, _ARROW[c.dtype]) for c in columns])


def run(
    out_dir: Path,
    params: SimulateParams,
    specs: dict[str, AreaSpec],
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Write ``{declarations,outcomes,truth,seizures}.parquet`` into ``out_dir`` month by month.

    Files appear only when the whole run succeeded (temp files, then rename). Returns a summary:
    rows per table, prevalence per area, share of items controlled, hits per area, seizures
    reported per area.
    """
    out_dir = Path(out_dir)
    schemas = {t: _schema(cols) for t, cols in TABLES.items()}
    rows = dict.fromkeys(TABLES, 0)
    offences = np.zeros(len(RISK_AREAS))
    found = dict.fromkeys(RISK_AREAS, 0)
    seized: dict[str, int] = {}
    controlled = 0
    evaded = 0.0
    with ExitStack() as stack:
        writers = {}
        for t in TABLES:
            tmp = stack.enter_context(atomic_path(table_file(out_dir, t)))
            writers[t] = stack.enter_context(pq.ParquetWriter(tmp, schemas[t]))
        for m, tables in enumerate(iter_months(params, specs)):
            for t, df in tables.items():
                writers[t].write_table(
                    pa.Table.from_pandas(df, schema=schemas[t], preserve_index=False)
                )
                rows[t] += len(df)
            truth, out = tables["truth"], tables["outcomes"]
            offences += truth["offence"].to_numpy().reshape(-1, len(RISK_AREAS)).sum(axis=0)
            evaded += float(truth["evaded_duty"].sum())
            controlled += len(out[["declaration_id", "item_no"]].drop_duplicates())
            for area, count in out.loc[out["offence_found"], "risk_area"].value_counts().items():
                found[str(area)] += int(count)
            for area, count in tables["seizures"]["risk_area"].value_counts().items():
                seized[str(area)] = seized.get(str(area), 0) + int(count)
            if progress is not None:
                progress(m + 1, params.months)
    n = rows["declarations"]
    return {
        "rows": rows,
        "prevalence": {a: round(float(offences[i] / n), 5) for i, a in enumerate(RISK_AREAS)},
        "share_controlled": round(controlled / n, 4),
        "found": found,
        "evaded_duty": round(evaded, 2),
        "seizures_elsewhere": seized,
    }
