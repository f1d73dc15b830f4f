"""Copy-paste: pairing rules, placement, pasting, harmonisation and the stage itself (no Ray)."""

from __future__ import annotations

import numpy as np
import pytest
from .conftest import H, T, W, coarse_sample

from dataset_builder.derived import copypaste as cp
from dataset_builder.derived.common import UnitState
from dataset_builder.derived.config import CopyPasteConfig
from dataset_builder.ops.composite import composite


def ref(i: int, source: int, key: str = "k") -> cp.SourceRef:
    return cp.SourceRef(kind="shard", uri=f"/s/shard{i}.tar", key=f"{key}{i}", clip_id=f"c{i}",
                        source_uri=f"/videos/v{source}.mp4", caption_fg=f"fg {i}", caption_bg=f"bg {i}")


def small_cfg(**paste) -> CopyPasteConfig:
    return CopyPasteConfig.model_validate({"frames": {"num_frames": T, "height": H, "width": W},
                                           "paste": paste})


def test_pairing_never_uses_own_or_sibling_background_and_is_deterministic():
    refs = [ref(i, source=i // 2) for i in range(8)]  # pairs of samples share a source video
    pairs, orphans = cp.plan_pairs(refs, refs, seed=7, pairs_per_fg=3, config_hash="h")
    assert not orphans and len(pairs) == 8 * 3
    for pair in pairs:
        assert pair.fg.source_uri != pair.bg.source_uri and pair.fg.id != pair.bg.id
    per_fg = {}
    for pair in pairs:
        per_fg.setdefault(pair.fg.id, []).append(pair.bg.id)
    assert all(len(set(bgs)) == 3 for bgs in per_fg.values())  # distinct backgrounds per fg
    again, _ = cp.plan_pairs(list(reversed(refs)), refs[::-1], seed=7, pairs_per_fg=3, config_hash="h")
    assert [p.unit_id for p in again] == [p.unit_id for p in pairs]
    other, _ = cp.plan_pairs(refs, refs, seed=8, pairs_per_fg=3, config_hash="h")
    assert {p.unit_id for p in other} != {p.unit_id for p in pairs}


def test_pairing_of_a_fg_is_stable_when_other_fgs_are_added():
    refs = [ref(i, source=i) for i in range(6)]
    base, _ = cp.plan_pairs(refs[:1], refs, seed=0, pairs_per_fg=2, config_hash="h")
    more, _ = cp.plan_pairs(refs[:1] + [ref(9, source=9)], refs, seed=0, pairs_per_fg=2, config_hash="h")
    assert [p.bg.id for p in base] == [p.bg.id for p in more if p.fg.id == refs[0].id]


def test_fg_without_foreign_background_is_an_orphan():
    lonely = [ref(0, source=0), ref(1, source=0)]
    pairs, orphans = cp.plan_pairs(lonely, lonely, seed=0, pairs_per_fg=1, config_hash="h")
    assert not pairs and [o.id for o in orphans] == [r.id for r in lonely]


def test_placement_keeps_the_object_inside_the_frame():
    rng = np.random.default_rng(0)
    for _ in range(500):
        box = (int(rng.integers(1, 200)), int(rng.integers(1, 300)))
        frame = (int(rng.integers(8, 120)), int(rng.integers(8, 160)))
        p = cp.sample_placement(box, frame, rng, (0.3, 1.0))
        assert 0 <= p.top and p.top + p.height <= frame[0] and 0 <= p.left and p.left + p.width <= frame[1]
        assert abs(p.height / box[0] - p.scale) <= 1 / box[0] + 1e-9  # aspect kept (up to rounding)


def test_paste_moves_and_scales_the_object():
    alpha = np.zeros((2, 40, 40), np.uint8)
    alpha[:, 10:20, 5:25] = 255
    fg = np.zeros((2, 40, 40, 3), np.uint8)
    fg[alpha > 0] = (200, 10, 10)
    box = cp.object_box(alpha)
    assert box == (10, 20, 5, 25)
    place = cp.Placement(scale=2.0, top=30, left=50, height=20, width=40)
    fg_out, alpha_out = cp.paste(fg, alpha, box, place, (64, 96))
    assert alpha_out.shape == (2, 64, 96) and fg_out.shape == (2, 64, 96, 3)
    assert (alpha_out[:, 30:50, 50:90] == 255).all() and alpha_out.sum() == 2 * 20 * 40 * 255
    assert (fg_out[alpha_out == 255] == (200, 10, 10)).all()
    assert cp.object_box(np.zeros((1, 4, 4), np.uint8)) is None


@pytest.mark.parametrize("scale", [0.35, 1.7])
def test_paste_resamples_premultiplied_so_soft_edges_keep_the_object_colour(scale):
    # A white object (fill 0 outside, as in a coarse fg.mp4) pasted on a white bg must stay invisible:
    # resampling straight colour would drag the black fill into the edge and draw a dark outline.
    alpha = np.zeros((1, 40, 40), np.uint8)
    alpha[:, 10:30, 10:30] = 255
    alpha[:, 9, 10:30] = 100  # a soft edge too
    fg = np.zeros((1, 40, 40, 3), np.uint8)
    fg[alpha > 0] = 250
    box = (8, 32, 8, 32)  # includes transparent margin, as object_box crops at the threshold
    side = max(1, int(24 * scale))
    place = cp.Placement(scale=scale, top=2, left=3, height=side, width=side)
    fg_out, alpha_out = cp.paste(fg, alpha, box, place, (side + 4, side + 6))
    assert ((alpha_out > 0) & (alpha_out < 255)).any()  # there are soft pixels to check
    assert (fg_out[alpha_out > 0] >= 249).all()
    blend = composite(fg_out, np.full_like(fg_out, 250), alpha_out)
    assert np.abs(blend.astype(int) - 250).max() <= 1


def test_harmonize_moves_fg_statistics_towards_bg():
    rng = np.random.default_rng(0)
    fg = np.clip(rng.normal((200, 60, 60), 20, (2, 32, 32, 3)), 0, 255).astype(np.uint8)
    bg = np.clip(rng.normal((60, 90, 160), 10, (2, 32, 32, 3)), 0, 255).astype(np.uint8)
    alpha = np.zeros((2, 32, 32), np.uint8)
    alpha[:, 8:24, 8:24] = 255
    assert np.array_equal(cp.harmonize_lab(fg, alpha, bg, 0.0), fg)
    full, mild = cp.harmonize_lab(fg, alpha, bg, 1.0), cp.harmonize_lab(fg, alpha, bg, 0.3)
    inside = alpha > 0
    assert np.array_equal(full[~inside], fg[~inside])  # only the object changes
    d_full = np.abs(full[inside].mean(0) - bg.reshape(-1, 3).mean(0)).sum()
    d_mild = np.abs(mild[inside].mean(0) - bg.reshape(-1, 3).mean(0)).sum()
    d_none = np.abs(fg[inside].mean(0) - bg.reshape(-1, 3).mean(0)).sum()
    assert d_full < 15 < d_mild < d_none


def test_blend_caption_composition():
    assert cp.compose_blend_caption("A red car.", "The quiet street.", "{fg}. In the background, {bg}.") == \
        "A red car. In the background, the quiet street."


def run_stage(cfg: CopyPasteConfig, pair: cp.Pair) -> tuple[UnitState, dict]:
    stage = cp.CopyPasteStage(cfg.model_dump(mode="json"))
    meta = UnitState(unit_id=pair.unit_id, source_uri=pair.fg.source_uri, task=pair.model_dump()).model_dump_json()
    out = stage({"meta": np.array([meta], dtype=object)})
    return UnitState.model_validate_json(out["meta"][0]), {k: v[0] for k, v in out.items() if k != "meta"}


def test_stage_composites_shard_sources(coarse_dir):
    refs = [r for path in cp.shard_paths([str(coarse_dir)]) for r in cp.index_shard(path)]
    assert len(refs) == 5 and len({r.source_uri for r in refs}) == 3
    fg = next(r for r in refs if r.key == "coarse000_0")
    bg = next(r for r in refs if r.key == "coarse002_0")
    pair = cp.Pair(unit_id="cp-test", fg=fg, bg=bg)
    cfg = small_cfg(harmonize=0.0, scale_range=(0.6, 0.9))
    state, row = run_stage(cfg, pair)
    assert not state.rejected and len(state.samples) == 1
    rec = state.samples[0]
    assert rec.kind == "copypaste" and rec.motion_scale == 0.0 and rec.num_frames == T
    assert rec.captions.fg == "A red thing 0." and rec.captions.bg == "A quiet field number 1."
    assert rec.captions.blend == "A red thing 0. In the background, a quiet field number 1."
    extra = rec.provenance.model_dump()
    assert extra["fg_source"]["key"] == "coarse000_0" and extra["bg_source"]["key"] == "coarse002_0"
    fg_out, alpha, bg_out, blend = row["fg"][0], row["alpha"][0], row["bg"][0], row["blend"][0]
    assert alpha.shape == (T, H, W) and blend.shape == (T, H, W, 3)
    assert np.array_equal(blend, composite(fg_out, bg_out, alpha))
    # the background is the other source's bg layer (through H.264), the object kept its area ratio
    truth_bg = coarse_sample(2, 1)[1]["bg"]
    assert np.abs(bg_out.astype(int) - truth_bg).mean() < 3
    src_alpha = coarse_sample(0, 0)[1]["alpha"]
    scale = extra["placement"]["scale"]
    assert alpha.sum() / src_alpha.sum() == pytest.approx(scale**2, rel=0.1)
    # same pair -> same placement (seeded by seed + unit id)
    state2, row2 = run_stage(cfg, pair)
    assert state2.samples[0].provenance.model_dump()["placement"] == extra["placement"]
    assert np.array_equal(row2["alpha"], row["alpha"])


def test_stage_uses_raw_video_backgrounds_and_rejects_unreadable(coarse_dir, bikes_path, tmp_path):
    refs = [r for path in cp.shard_paths([str(coarse_dir)]) for r in cp.index_shard(path)]
    fg = refs[0]
    video = cp.video_refs([str(bikes_path)], [".mp4"], "a street with bikes")[0]
    cfg = small_cfg()
    state, row = run_stage(cfg, cp.Pair(unit_id="cp-v", fg=fg, bg=video))
    assert not state.rejected and state.samples[0].captions.bg == "a street with bikes"
    assert row["bg"].shape == (1, T, H, W, 3) and row["bg"].std() > 10

    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    state, row = run_stage(cfg, cp.Pair(unit_id="cp-b", fg=fg, bg=video.model_copy(update={"uri": str(broken)})))
    assert state.rejected and state.rejects[0].stage == "copypaste" and state.rejects[0].reason == "bg_unreadable"
    assert row["fg"].size == 0

    missing = fg.model_copy(update={"key": "no_such_key"})
    state, _ = run_stage(cfg, cp.Pair(unit_id="cp-m", fg=missing, bg=video))
    assert state.rejected and state.rejects[0].reason == "fg_unreadable"

    short = small_cfg().model_copy(update={"frames": small_cfg().frames.model_copy(update={"num_frames": T + 4})})
    state, _ = run_stage(short, cp.Pair(unit_id="cp-s", fg=fg, bg=video))
    assert state.rejected and state.rejects[0].reason == "too_short"


def test_index_reads_records_of_committed_shards(coarse_dir):
    paths = cp.shard_paths([str(coarse_dir)])
    assert len(paths) == 2 and all(p.suffix == ".tar" for p in paths)
    refs = cp.index_shard(paths[0])
    assert [r.key for r in refs] == ["coarse000_0", "coarse001_0", "coarse001_1"]
    assert refs[1].source_uri == refs[2].source_uri == "/videos/source0.mp4" and refs[0].fps == 8.0
    assert cp.shard_paths([str(paths[0]), str(coarse_dir / "shards" / "*.tar")]) == paths
