"""Run several stages inside one Ray actor.

On a laptop, separate actor pools per CPU stage cost more in object-store copies of raw frames than
they gain; the ``cpu`` profile fuses consecutive CPU stages into one chain. GPU stages keep their
own pools so each model gets its own GPU fraction.
"""

from __future__ import annotations

from typing import Any


class StageChain:
    def __init__(self, stages: list[tuple[type, dict[str, Any]]]):
        self.stages = [cls(**kwargs) for cls, kwargs in stages]

    def __call__(self, batch):
        for stage in self.stages:
            if len(next(iter(batch.values()), [])) == 0:
                break
            batch = stage(batch)
        return batch
