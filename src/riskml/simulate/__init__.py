"""The simulated customs world: the embedded default data source of riskml.

``simulate(params, specs)`` returns the canonical ``declarations``, ``outcomes`` and ``truth``
tables in memory; ``run(out_dir, params, specs)`` writes them to Parquet month by month. See
``docs/simulator.md`` for what the world contains.
"""

from riskml.simulate.engine import World, month_plan, run, simulate

__all__ = ["World", "month_plan", "run", "simulate"]
