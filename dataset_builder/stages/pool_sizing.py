"""Fit the GPU stages' autoscaling actor pools to the cluster (Ray-free arithmetic).

Fixed pools from the config (e.g. 16 SAM2 + 16 ProPainter + 8 + 8 + 8 actors at 0.125-0.5 GPU) ask for
25 GPUs at once; on one 8-GPU node some stage gets no actor and the run stalls. :func:`fit_gpu_pools`
gives every GPU stage one actor at start (the build fails up front, with the numbers, when even that
does not fit) and an autoscaling maximum sized from the cluster's GPUs in proportion to the stage's
measured cost (GPU-seconds per clip at one actor, ``ray.stage_costs``; measure them with
``benchmarks/bench_paper_profile.py`` on the GPU): a pipeline runs at the speed of its slowest stage,
so the captioner (three generations per object) gets more actors than the judge (one forward).
"""

from __future__ import annotations

import math

from dataset_builder.config import Resources


class ClusterTooSmallError(ValueError):
    """The GPU stages cannot even get one actor each on this cluster."""


def fit_gpu_pools(stages: list[tuple[str, Resources]], total_gpus: float,
                  costs: dict[str, float] | None = None) -> dict[str, Resources]:
    """``{stage: resources}`` with ``concurrency`` = 1 and ``max_concurrency`` = the stage's share of
    ``total_gpus`` (actors proportional to cost, at least 1; the shares never exceed the GPUs together).
    CPU-only stages are returned unchanged."""
    costs = costs or {}
    gpu = [(name, res) for name, res in stages if res.num_gpus > 0]
    out = {name: res for name, res in stages}
    if not gpu:
        return out
    floor = sum(res.num_gpus for _, res in gpu)
    if floor > total_gpus + 1e-9:
        need = ", ".join(f"{name} {res.num_gpus:g}" for name, res in gpu)
        raise ClusterTooSmallError(
            f"the GPU stages need {floor:g} GPUs for one actor each ({need}); the cluster has {total_gpus:g}")
    weight = {name: float(costs.get(name, 1.0)) for name, _ in gpu}
    if min(weight.values()) <= 0:
        raise ValueError(f"ray.stage_costs must be > 0, got {weight}")
    # actors_i = k * cost_i with sum_i actors_i * gpus_i = total -> k = total / sum_i cost_i * gpus_i
    k = total_gpus / sum(weight[name] * res.num_gpus for name, res in gpu)
    for name, res in gpu:
        actors = max(1, math.floor(k * weight[name] + 1e-9))
        out[name] = res.model_copy(update={"concurrency": 1, "max_concurrency": actors})
    return out


def gpu_demand(pools: dict[str, Resources]) -> tuple[float, float]:
    """(GPUs at start, GPUs with every pool at its maximum)."""
    start = sum(r.num_gpus * r.concurrency for r in pools.values())
    peak = sum(r.num_gpus * (r.max_concurrency or r.concurrency) for r in pools.values())
    return start, peak
