"""The batch-level hook of model stages (stages.base.BackendStage.process_rows): all live clips of a
Ray batch go to the backend in one call; a failing batch is re-run clip by clip so that only the bad
clip becomes a reject; an OOM left after the backend's batch halving rejects only the clip that does not
fit alone; backends without a batched method (the CPU ones) are still called per clip; the local
executor gives each stage batches of its own ``batch_size``."""

from __future__ import annotations

import numpy as np
import pytest

from dataset_builder.config import Resources
from dataset_builder.models import registry
from dataset_builder.models.base import Judgement, split_by_counts
from dataset_builder.models.hf.batching import BatchRunner
from dataset_builder.models.registry import BackendKind
from dataset_builder.stages.base import ClipState, ObjectState, batch_from_rows, rows_from_batch
from dataset_builder.stages.filter_foreground import FilterForegroundStage
from dataset_builder.stages.runtime import StageSpec, WriteShards, rebatched, run_local


class BatchedJudge:
    """Judges labels ``fg*`` foreground. ``poison`` raises (a corrupt clip); ``huge`` runs out of memory
    even alone; more than ``capacity`` items in one model call run out of memory (a GPU's limit)."""

    def __init__(self, spec):
        self.capacity = int(spec.options.get("capacity", 100))
        self.runner = BatchRunner(int(spec.options.get("max_batch", 64)), on_oom=lambda: None)
        self.clip_calls = 0

    def _model(self, items):
        if len(items) > self.capacity or "huge" in items:
            raise RuntimeError("CUDA out of memory. Tried to allocate 4.00 GiB")
        if "poison" in items:
            raise ValueError("corrupt frames")
        return [Judgement(label.startswith("fg"), 0.9 if label.startswith("fg") else 0.1, "fake") for label in items]

    def judge_clips(self, clips):
        self.clip_calls += 1
        labels = [label for _, _, clip_labels in clips for label in clip_labels]
        return split_by_counts(self.runner.run("score", labels, self._model), [len(c[2]) for c in clips])


class PerObjectJudge:
    """A CPU-style backend: only ``judge`` (one object at a time)."""

    def __init__(self, spec):
        self.calls = 0

    def judge(self, frames, masks, label):
        self.calls += 1
        if label == "poison":
            raise ValueError("corrupt frames")
        return Judgement(label.startswith("fg"), 0.5, "cpu")


@pytest.fixture
def judges(monkeypatch):
    monkeypatch.setitem(registry._REGISTRY, (BackendKind.FG_JUDGE, "test_batched"), BatchedJudge)
    monkeypatch.setitem(registry._REGISTRY, (BackendKind.FG_JUDGE, "test_per_object"), PerObjectJudge)


def _clip_row(i: int, labels: list[str]) -> dict:
    t, h, w = 2, 4, 6
    state = ClipState(clip_id=f"clip{i}", source_uri=f"v{i}.mp4",
                      objects=[ObjectState(object_id=k, label=label, score=1.0) for k, label in enumerate(labels)])
    return {"meta": state.model_dump_json(), "frames": np.full((t, h, w, 3), i, np.uint8),
            "masks": np.full((len(labels), t, h, w), 255, np.uint8),
            "backgrounds": np.zeros((len(labels), t, h, w, 3), np.uint8)}


CLIPS = [["fg_a", "bg_b"], ["fg_c", "fg_d", "bg_e"], ["bg_f"], ["fg_g"]]


def _states(batch) -> list[ClipState]:
    return [ClipState.model_validate_json(m) for m in batch["meta"]]


def _same(state: ClipState) -> dict:
    """The state without wall-clock fields (the rejects' timestamps, the measured stage seconds)."""
    return state.model_dump(exclude={"rejects": {"__all__": {"created_at"}}, "stage_seconds": True})


def _alone(stage, row) -> ClipState:
    return _states(stage(batch_from_rows([row])))[0]


def test_one_model_call_for_all_clips_of_the_batch_same_result_as_alone(judges):
    stage = FilterForegroundStage({"name": "test_batched"})
    rows = [_clip_row(i, labels) for i, labels in enumerate(CLIPS)]
    out = stage(batch_from_rows(rows))
    assert stage.backend.clip_calls == 1 and stage.backend.runner.stats.calls == {"score": 1}
    assert stage.backend.runner.stats.items == {"score": 7}
    batched = _states(out)
    alone = [_alone(stage, row) for row in rows]
    assert [_same(s) for s in batched] == [_same(s) for s in alone]
    assert [[o.label for o in s.objects] for s in batched] == [["fg_a"], ["fg_c", "fg_d"], [], ["fg_g"]]
    assert batched[2].rejected and batched[2].rejects[-1].reason == "no_foreground"
    assert all(s.backends["filter_foreground"] == "test_batched" for s in batched)
    masks = [m for m in rows_from_batch(out)]
    assert [len(r["masks"]) for r in masks] == [1, 2, 0, 1]  # masks stay aligned with the kept objects


def test_a_poisoned_clip_is_one_reject_and_its_batch_mates_succeed(judges):
    stage = FilterForegroundStage({"name": "test_batched"})
    labels = [*CLIPS[:2], ["fg_x", "poison"], *CLIPS[2:]]
    rows = [_clip_row(i, clip) for i, clip in enumerate(labels)]
    good = [_alone(FilterForegroundStage({"name": "test_batched"}), row) for i, row in enumerate(rows) if i != 2]
    states = _states(stage(batch_from_rows(rows)))
    assert stage.batch_fallbacks == 1
    bad = states[2]
    assert bad.rejected and len(bad.rejects) == 1
    assert (bad.rejects[0].stage, bad.rejects[0].reason) == ("filter_foreground", "error")
    assert "ValueError: corrupt frames" in bad.rejects[0].detail
    assert [_same(s) for i, s in enumerate(states) if i != 2] == [_same(s) for s in good]


def test_oom_halving_still_absorbs_a_big_batch_and_a_clip_too_big_alone_is_an_oom_reject(judges):
    stage = FilterForegroundStage({"name": "test_batched", "options": {"capacity": 3, "max_batch": 64}})
    rows = [_clip_row(i, labels) for i, labels in enumerate(CLIPS)]
    states = _states(stage(batch_from_rows(rows)))
    assert not any(s.rejects and s.rejects[-1].reason == "oom" for s in states)
    assert stage.backend.runner.stats.oom_retries >= 1 and stage.backend.runner.limit <= 3
    assert stage.batch_fallbacks == 0  # the backend's halving absorbed it: no per-clip re-run

    stage = FilterForegroundStage({"name": "test_batched"})
    rows = [_clip_row(0, ["fg_a"]), _clip_row(1, ["huge"]), _clip_row(2, ["fg_b"])]
    states = _states(stage(batch_from_rows(rows)))
    assert [s.rejected for s in states] == [False, True, False]
    assert (states[1].rejects[0].stage, states[1].rejects[0].reason) == ("filter_foreground", "oom")
    assert [o.label for o in states[0].objects] == ["fg_a"] and [o.label for o in states[2].objects] == ["fg_b"]


def test_rejected_clips_are_not_sent_and_cpu_backends_go_per_object(judges):
    stage = FilterForegroundStage({"name": "test_per_object"})
    rows = [_clip_row(i, labels) for i, labels in enumerate(CLIPS)]
    dead = ClipState.model_validate_json(rows[1]["meta"])
    dead.reject_clip("tag", "static")
    rows[1]["meta"] = dead.model_dump_json()
    states = _states(stage(batch_from_rows(rows)))
    assert stage.backend.calls == 2 + 1 + 1  # every object of the live clips, one by one
    assert states[1].rejects == dead.rejects and "filter_foreground" not in states[1].backends
    assert [[o.label for o in s.objects] for i, s in enumerate(states) if i != 1] == [["fg_a"], [], ["fg_g"]]

    rows = [_clip_row(0, ["fg_a"]), _clip_row(1, ["poison"]), _clip_row(2, ["fg_b", "bg_c"])]
    stage = FilterForegroundStage({"name": "test_per_object"})
    states = _states(stage(batch_from_rows(rows)))
    assert stage.backend.calls == 4 and stage.batch_fallbacks == 0  # per clip from the start: nothing re-run
    assert [s.rejected for s in states] == [False, True, False] and states[1].rejects[0].reason == "error"


class _Recorder:
    stage = "record"

    def __init__(self):
        self.sizes = []

    def __call__(self, batch):
        self.sizes.append(len(batch["meta"]))
        return batch


def test_rebatched_groups_rows_to_the_stage_batch_size():
    rows = [{"meta": np.array(f"m{i}")} for i in range(7)]
    recorder = _Recorder()
    out = list(rebatched(recorder, (batch_from_rows([r]) for r in rows), 3))
    assert recorder.sizes == [3, 3, 1]
    assert [str(m) for b in out for m in b["meta"]] == [f"m{i}" for i in range(7)]


def test_run_local_gives_each_stage_its_own_batch_size(tmp_path, judges, monkeypatch):
    sizes: dict[str, list[int]] = {"a": [], "b": []}

    class Sized:
        def __init__(self, name):
            self.name = name

        def __call__(self, batch):
            sizes[self.name].append(len(batch["meta"]))
            return batch

    rows = [_clip_row(i, ["fg"]) for i in range(5)]
    writer = StageSpec(WriteShards, {"out": str(tmp_path / "out"), "state_cls": ClipState})
    commits = list(run_local((batch_from_rows([r]) for r in rows),
                             [StageSpec(Sized, {"name": "a"}, Resources(batch_size=4)),
                              StageSpec(Sized, {"name": "b"}, Resources(batch_size=2))], writer))
    assert sizes == {"a": [4, 1], "b": [2, 2, 1]}
    assert sorted(c for record in commits for c in record.clip_ids) == [f"clip{i}" for i in range(5)]


def test_paper_profile_gives_its_model_stages_ray_batches_of_several_clips():
    """The cross-clip batching only pays if the Ray batch holds several clips (configs/paper.yaml)."""
    from pathlib import Path

    from dataset_builder.config import load_build_config
    from dataset_builder.pipeline import stage_plan

    cfg = load_build_config(Path(__file__).parents[3] / "configs" / "paper.yaml")
    plan = {getattr(cls, "stage", cls.__name__): res for cls, _, res in stage_plan(cfg)}
    for name in ("tag", "segment_track", "filter_foreground", "caption"):
        assert plan[name].num_gpus > 0 and plan[name].batch_size >= 4, name
        assert getattr(cfg.stages, name).options["max_batch"] >= 8, name
