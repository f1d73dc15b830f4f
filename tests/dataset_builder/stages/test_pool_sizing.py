"""GPU pools fit the cluster: one actor per GPU stage at start, autoscaling maxima from the cluster's GPUs
in proportion to measured cost, a clear error when even one actor each does not fit."""

from __future__ import annotations

import pytest

from dataset_builder.config import Resources, load_build_config
from dataset_builder.pipeline import fit_specs_to_cluster, stage_specs
from dataset_builder.stages.pool_sizing import ClusterTooSmallError, fit_gpu_pools, gpu_demand


def _paper_specs():
    cfg = load_build_config("configs/paper.yaml")
    return cfg, stage_specs(cfg)


def test_paper_profile_fixed_pools_do_not_fit_one_node_but_fitted_pools_do():
    cfg, specs = _paper_specs()
    fixed = sum(s.resources.num_gpus * s.resources.concurrency for s in specs)
    assert fixed > 8  # the configured concurrencies alone would need more than one 8-GPU node
    fitted = fit_specs_to_cluster(specs, 8.0, cfg.ray.stage_costs)
    pools = {s.cls.stage: s.resources for s in fitted if s.resources.num_gpus > 0}
    assert set(pools) == {"tag", "segment_track", "filter_foreground", "inpaint", "caption"}
    start, peak = gpu_demand(pools)
    assert start <= 8 and peak <= 8 + 1e-9
    assert all(r.concurrency == 1 and r.max_concurrency >= 1 for r in pools.values())
    assert pools["caption"].max_concurrency >= 3 * pools["filter_foreground"].max_concurrency - 1  # cost 3 vs 1
    cpu_before = [s.resources for s in specs if s.resources.num_gpus == 0]
    assert [s.resources for s in fitted if s.resources.num_gpus == 0] == cpu_before


def test_more_gpus_more_actors_and_too_small_cluster_fails_clearly():
    stages = [("judge", Resources(num_gpus=0.5, concurrency=8)), ("caption", Resources(num_gpus=0.5, concurrency=8)),
              ("encode", Resources(num_cpus=1, concurrency=4))]
    small = fit_gpu_pools(stages, 2.0, {"caption": 3.0, "judge": 1.0})
    big = fit_gpu_pools(stages, 16.0, {"caption": 3.0, "judge": 1.0})
    assert (small["judge"].max_concurrency, small["caption"].max_concurrency) == (1, 3)
    assert (big["judge"].max_concurrency, big["caption"].max_concurrency) == (8, 24)
    assert big["encode"] == stages[2][1]
    with pytest.raises(ClusterTooSmallError, match=r"need 1 GPUs for one actor each \(judge 0.5, caption 0.5\); "
                                                   r"the cluster has 0.5"):
        fit_gpu_pools(stages, 0.5)


def test_paper_plan_runs_the_shared_post_processing():
    """Soft alpha / fg colour / QA gate are profile-agnostic stages: the paper plan has them too."""
    from dataset_builder.pipeline import stage_plan

    names = {name: [cls.__name__ for cls, _, _ in stage_plan(load_build_config(f"configs/{name}.yaml"))]
             for name in ("cpu", "paper")}
    assert names["paper"] == names["cpu"] and {"MatteStage", "LayerQAStage"} <= set(names["paper"])
