"""The default simulated world scaled to a number of items: shared by the bench scripts.

The entities (importers, declarants, suppliers) scale with the items so that each entity's
history keeps the default world's depth; months (24) and seed (42) stay those of params.yaml.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The items of params.yaml's default world, to which the entity counts belong.
BASE_ITEMS = 300_000


def scaled_params(n_items: int):
    """``params.yaml``'s ``simulate`` section scaled to ``n_items`` items."""
    from riskml.config import load_params

    sim = load_params(ROOT / "params.yaml").simulate
    scale = n_items / BASE_ITEMS
    return sim.model_copy(
        update={
            "n_items": n_items,
            "n_importers": int(sim.n_importers * scale),
            "n_declarants": int(sim.n_declarants * scale),
            "n_suppliers": int(sim.n_suppliers * scale),
        }
    )


def simulate_world(n_items: int, folder: Path) -> None:
    """Write the scaled world's tables into ``folder`` (month by month, bounded memory)."""
    from riskml.config import load_area_specs
    from riskml.simulate import run

    run(folder, scaled_params(n_items), load_area_specs(ROOT / "pipelines"))


#: The tables a world's folder holds, in the order ``as_interim`` stores them.
TABLES = ("declarations", "outcomes", "truth", "seizures")


def as_interim(folder: Path, tables: tuple[str, ...] = ("declarations",)) -> Path:
    """Store ``tables`` of the world in ``folder`` as the validate stage stores them
    (partitioned by month: ``riskml.catalog.interim_table``; outcomes and truth by their items'
    acceptance month), once each, so that a project can take the folder as its
    ``data/interim``; returns the declarations' path. A table left as one file is read as it
    is (``riskml.catalog.stored_table``: a project validated before that table was partitioned),
    which is how the worlds cached before the outcomes, truth and seizures were partitioned are
    read: they are not converted in place, since other runs may be reading them."""
    import pandas as pd

    from riskml.catalog import interim_table, table_file
    from riskml.contract import write_interim

    for table in tables:
        if not interim_table(folder, table).is_dir() and table_file(folder, table).exists():
            write_interim(folder, {table: pd.read_parquet(table_file(folder, table))})
    return interim_table(folder, "declarations")


def _simulated(folder: Path) -> bool:
    return any((folder / name).exists() for name in ("outcomes", "outcomes.parquet"))


def cached_world(n_items: int, cache: Path) -> tuple[Path, bool]:
    """The scaled world under ``cache``/<n_items>, simulated there unless present, its tables
    stored as in ``data/interim`` (:func:`as_interim`: every table of a world simulated now, the
    declarations of one cached before); returns the folder and whether it was simulated now."""
    folder = cache / str(n_items)
    simulated = not _simulated(folder)
    if simulated:
        simulate_world(n_items, folder)
    as_interim(folder, TABLES if simulated else ("declarations",))
    return folder, simulated
