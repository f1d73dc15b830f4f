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


# -- measured costs ---------------------------------------------------------------------------------
def _commit(shard: str, clips: int, seconds: dict[str, float], batch: int = 4):
    from schemas import CommitRecord, StageStats

    return CommitRecord(shard=shard, clip_ids=[f"{shard}-{i}" for i in range(clips)], stage_stats={
        stage: StageStats(seconds=s, items=clips, calls=clips / batch) for stage, s in seconds.items()})


def test_pools_follow_measured_costs_on_an_8_gpu_node():
    """Measured busy seconds (commit records) -> pool maxima: the costlier stage gets more actors, whichever
    it is; every GPU stage keeps at least one; the maxima fit the 8 GPUs together."""
    from dataset_builder.io import layout
    from dataset_builder.stages.pool_sizing import measured_costs

    cfg, specs = _paper_specs()
    for caption_s, judge_s in ((60.0, 12.0), (6.0, 30.0)):
        commits = [_commit(f"s{i}", 10, {"tag": 1.0, "segment_track": 20.0, "filter_foreground": judge_s / 2,
                                         "inpaint": 25.0, "caption": caption_s / 2, "matte": 3.0})
                   for i in range(2)]
        stats, clips = layout.stage_stats(commits=commits)
        assert clips == 20 and stats["caption"].seconds == caption_s and stats["caption"].items == 20
        costs = measured_costs(stats, clips)
        assert costs["caption"] == pytest.approx(caption_s / 20)
        fitted = fit_specs_to_cluster(specs, 8.0, costs)
        pools = {s.cls.stage: s.resources for s in fitted if s.resources.num_gpus > 0}
        actors = {name: r.max_concurrency for name, r in pools.items()}
        assert min(actors.values()) >= 1 and all(r.concurrency == 1 for r in pools.values())
        assert gpu_demand(pools)[1] <= 8 + 1e-9
        if caption_s > judge_s:
            assert actors["caption"] > actors["filter_foreground"]
        else:
            assert actors["filter_foreground"] > actors["caption"]
        assert actors["tag"] == 1  # the cheapest stage gets its one actor, never 0


def test_build_costs_measured_beat_estimates_and_a_bad_costs_from_fails(tmp_path):
    from dataset_builder.config import RayConfig
    from dataset_builder.io.storage import Storage
    from dataset_builder.stages.pool_sizing import build_costs

    earlier = tmp_path / "earlier"
    store = Storage.at(earlier)
    record = _commit("shard-a", 10, {"caption": 50.0, "filter_foreground": 5.0})
    store.write_bytes("_stats/shard-a_stats.json", record.model_dump_json().encode())
    estimates = {"caption": 3.0, "filter_foreground": 1.0, "inpaint": 2.0}
    costs, sources = build_costs(RayConfig(stage_costs=estimates, costs_from=str(earlier)), str(tmp_path / "new"))
    assert costs == {"caption": 5.0, "filter_foreground": 0.5, "inpaint": 2.0}
    assert sources["caption"].startswith("measured (10 clips") and sources["inpaint"] == "estimate"
    # the build's own output dir counts once it holds enough measured clips (resume / calibration run)
    assert build_costs(RayConfig(stage_costs=estimates, measured_min_clips=10), str(earlier))[0]["caption"] == 5.0
    assert build_costs(RayConfig(stage_costs=estimates, measured_min_clips=11), str(earlier))[0] == estimates
    with pytest.raises(ValueError, match="no measured stage costs"):
        build_costs(RayConfig(costs_from=str(tmp_path / "typo")), str(earlier))



def test_one_actor_floors_never_push_the_pools_past_the_cluster():
    """Stages measured as almost free still get their one actor each, taken from the costly stage's share
    (the floors used to come on top: 4.5 GPUs asked of 4)."""
    stages = [("caption", Resources(num_gpus=1.0))] + [(f"cheap{i}", Resources(num_gpus=0.5)) for i in range(3)]
    pools = fit_gpu_pools(stages, 4.0, {"caption": 1.0, "cheap0": 0.01, "cheap1": 0.01, "cheap2": 0.01})
    assert [pools[f"cheap{i}"].max_concurrency for i in range(3)] == [1, 1, 1]
    assert pools["caption"].max_concurrency == 2 and gpu_demand(pools)[1] <= 4
    stages = [("caption", Resources(num_gpus=1.0)), ("tag", Resources(num_gpus=1.0)),
              ("judge", Resources(num_gpus=0.5))]
    pools = fit_gpu_pools(stages, 8.0, {"caption": 3.0, "tag": 1e-6, "judge": 1.0})
    assert pools["tag"].max_concurrency == 1 and gpu_demand(pools)[1] <= 8
    # the 7 GPUs left at cost 3 (1 GPU each) vs 1 (half a GPU each): equal clips per second, 6 + 2 x 0.5 GPUs
    assert pools["caption"].max_concurrency == 6 and pools["judge"].max_concurrency == 2


def test_commits_written_before_stage_stats_existed_do_not_dilute_the_measured_costs(tmp_path):
    """Resuming into an output dir written by a builder without stage_stats: its old commit records parse
    (no stage_stats) but measured nothing, so their clips must not count in seconds per clip (10 measured
    clips among 1000 old ones looked 100x cheaper than the estimates of unmeasured stages) nor towards
    ``measured_min_clips``."""
    from dataset_builder.config import RayConfig
    from dataset_builder.io import layout
    from dataset_builder.io.storage import Storage
    from dataset_builder.stages.pool_sizing import build_costs
    from schemas import CommitRecord

    old = CommitRecord.model_validate_json(CommitRecord(
        shard="shard-old", clip_ids=[f"old-{i}" for i in range(1000)]).model_dump_json(exclude={"stage_stats"}))
    new = _commit("shard-new", 10, {"caption": 50.0})
    assert layout.stage_stats(commits=[old, new])[1] == 10
    store = Storage.at(tmp_path)
    for record in (old, new):
        store.write_bytes(f"_stats/{record.shard}_stats.json", record.model_dump_json(
            exclude={"stage_stats"} if record is old else None).encode())
    estimates = {"caption": 3.0, "inpaint": 2.0}
    assert build_costs(RayConfig(stage_costs=estimates, measured_min_clips=10), str(tmp_path))[0] == \
        {"caption": 5.0, "inpaint": 2.0}
    assert build_costs(RayConfig(stage_costs=estimates, measured_min_clips=11), str(tmp_path))[0] == estimates
