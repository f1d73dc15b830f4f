"""Run several stages inside one Ray actor.

On a laptop, separate actor pools per CPU stage cost more in object-store copies of raw frames than
they gain; the ``cpu`` profile fuses consecutive CPU stages into one chain. GPU stages keep their
own pools so each model gets its own GPU fraction. The row state is parsed once for the whole chain.
"""

from __future__ import annotations

from typing import Any

from dataset_builder.stages.base import batch_from_rows, rows_from_batch, run_timed


class StageChain:
    def __init__(self, stages: list[tuple[type, dict[str, Any]]]):
        self.stages = [cls(**kwargs) for cls, kwargs in stages]

    def __call__(self, batch):
        rows = rows_from_batch(batch)
        if not rows:
            return batch
        states = [self.stages[0].state_cls.model_validate_json(row["meta"]) for row in rows]
        for stage in self.stages:
            run_timed(stage, rows, states)
        for row, state in zip(rows, states):
            row["meta"] = state.model_dump_json()
        return batch_from_rows(rows)
