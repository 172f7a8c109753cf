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


def as_interim(folder: Path) -> Path:
    """Store the world's declarations in ``folder`` as the validate stage stores them
    (partitioned by month: ``riskml.catalog.interim_table``), once, so that a project can take
    the folder as its ``data/interim``; returns the declarations' path."""
    import pandas as pd

    from riskml.catalog import interim_table, table_file
    from riskml.contract import write_interim

    path = interim_table(folder, "declarations")
    if not path.is_dir():
        decl = pd.read_parquet(table_file(folder, "declarations"))
        write_interim(folder, {"declarations": decl})
    return path


def cached_world(n_items: int, cache: Path) -> tuple[Path, bool]:
    """The scaled world under ``cache``/<n_items>, simulated there unless present, its
    declarations stored as in ``data/interim`` (:func:`as_interim`); returns the folder and
    whether it was simulated now."""
    folder = cache / str(n_items)
    simulated = not (folder / "outcomes.parquet").exists()
    if simulated:
        simulate_world(n_items, folder)
    as_interim(folder)
    return folder, simulated
