"""Fit the GPU stages' autoscaling actor pools to the cluster (Ray-free arithmetic).

Fixed pools from the config (e.g. 16 SAM2 + 16 ProPainter + 8 + 8 + 8 actors at 0.125-0.5 GPU) ask for
25 GPUs at once; on one 8-GPU node some stage gets no actor and the run stalls. :func:`fit_gpu_pools`
gives every GPU stage one actor at start (the build fails up front, with the numbers, when even that
does not fit) and an autoscaling maximum sized from the cluster's GPUs in proportion to the stage's
cost (actor-seconds per clip): a pipeline runs at the speed of its slowest stage, so the captioner
(three generations per object) gets more actors than the judge (one forward).

The costs are measured, not guessed: every stage call's wall time is shared out over the clips it
processed (``stages.base.run_timed``), summed per shard into the commit records
(``CommitRecord.stage_stats``) and read back with ``layout.stage_stats``. :func:`build_costs` takes them
from ``ray.costs_from`` (an earlier build) or from the build's own output dir (a resumed build, or a
calibration run on the first N videos); ``ray.stage_costs`` are estimates for stages never measured.
:func:`cost_table` is the report printed at the end of every build and stored in ``run_summary.json``.
"""

from __future__ import annotations

import math

from dataset_builder.config import RayConfig, Resources
from dataset_builder.io import layout
from schemas import StageStats


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
    # actors_i = k * cost_i with sum_i actors_i * gpus_i = total -> k = total / sum_i cost_i * gpus_i; a stage
    # whose share is below one actor is pinned at one, and k is recomputed over the others on the GPUs left
    # (so the one-actor floors never push the total past the cluster).
    pinned: set[str] = set()
    while True:
        free = total_gpus - sum(res.num_gpus for name, res in gpu if name in pinned)
        rest = [(name, res) for name, res in gpu if name not in pinned]
        k = free / sum(weight[name] * res.num_gpus for name, res in rest) if rest else 0.0
        below = {name for name, _ in rest if k * weight[name] < 1 - 1e-9}
        if not below:
            break
        pinned |= below
    for name, res in gpu:
        actors = 1 if name in pinned else max(1, math.floor(k * weight[name] + 1e-9))
        out[name] = res.model_copy(update={"concurrency": 1, "max_concurrency": actors})
    return out


def gpu_demand(pools: dict[str, Resources]) -> tuple[float, float]:
    """(GPUs at start, GPUs with every pool at its maximum)."""
    start = sum(r.num_gpus * r.concurrency for r in pools.values())
    peak = sum(r.num_gpus * (r.max_concurrency or r.concurrency) for r in pools.values())
    return start, peak


def measured_costs(stats: dict[str, StageStats], clips: int) -> dict[str, float]:
    """Busy seconds per committed clip, by stage (stages that never did work are left out). Per clip of the
    whole build, not per clip the stage saw: a stage behind a filter that rejects half the clips needs
    half the actors, which is what the pools should follow."""
    if clips <= 0:
        return {}
    return {stage: st.seconds / clips for stage, st in stats.items() if st.items > 0 and st.seconds > 0}


def build_costs(ray_cfg: RayConfig, out_dir: str) -> tuple[dict[str, float], dict[str, str]]:
    """(cost by stage, where each came from: ``measured <dir>`` or ``estimate``) for :func:`fit_gpu_pools`.

    ``ray.costs_from`` must hold measurements (else ValueError: a typo must not fall back to guesses
    silently); without it, the build's own output dir counts once it holds ``measured_min_clips`` clips."""
    source = ray_cfg.costs_from or out_dir
    try:
        stats, clips = layout.stage_stats(source)
    except FileNotFoundError:
        stats, clips = {}, 0
    measured = measured_costs(stats, clips)
    if ray_cfg.costs_from and not measured:
        raise ValueError(f"ray.costs_from={ray_cfg.costs_from}: no measured stage costs there (no committed "
                         "shard with stage_stats; point it at the output dir of an earlier build)")
    if not ray_cfg.costs_from and clips < ray_cfg.measured_min_clips:
        measured = {}
    costs = {**ray_cfg.stage_costs, **measured}
    sources = {stage: "estimate" for stage in ray_cfg.stage_costs}
    sources.update({stage: f"measured ({clips} clips of {source})" for stage in measured})
    return costs, sources


def cost_table(stats: dict[str, StageStats], clips: int) -> list[dict]:
    """The measured cost report: per stage the units processed, actor calls, units per call, busy seconds,
    seconds per committed clip and share of all busy time (stages in pipeline order)."""
    busy = sum(st.seconds for st in stats.values()) or 1.0
    return [{"stage": stage, "items": st.items, "calls": round(st.calls, 2),
             "items_per_call": round(st.items / st.calls, 2) if st.calls else 0.0,
             "busy_s": round(st.seconds, 3), "s_per_clip": round(st.seconds / clips, 4) if clips else 0.0,
             "share": round(st.seconds / busy, 4)} for stage, st in stats.items()]


def format_cost_table(rows: list[dict]) -> str:
    head = f"{'stage':<20}{'items':>7}{'calls':>8}{'items/call':>11}{'busy s':>10}{'s/clip':>9}{'share':>7}"
    lines = [head] + [f"{r['stage']:<20}{r['items']:>7}{r['calls']:>8.1f}{r['items_per_call']:>11.2f}"
                      f"{r['busy_s']:>10.2f}{r['s_per_clip']:>9.3f}{r['share']:>7.0%}" for r in rows]
    return "\n".join(lines)
