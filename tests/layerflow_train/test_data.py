from pathlib import Path

import numpy as np
import pytest

from dataset_builder.io import layout
from .conftest import EXPECTED_KINDS, SRC_H, SRC_T, SRC_W, H, W

from layerflow_train.config import DataConfig
from layerflow_train.data import (
    LayeredDataset,
    decode_clip,
    index_shards,
    iter_webdataset,
    position_to_index,
    read_members,
    resolve_shards,
    sample_positions,
)
from layerflow_train.data.layout import build_layout, frame_indices, motion_scale_for


def _cfg(shards, **kw):
    kw = {"frames_per_layer": 8, "height": H, "width": W, **kw}
    return DataConfig(shards=[str(s) for s in shards], **kw)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 127, b > 127
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_index_matches_webdataset_and_manifest(layered_data):
    shards = resolve_shards([str(layered_data.coarse)])
    assert len(shards) == 2  # samples_per_shard=1, committed shards only
    refs = index_shards(shards)
    streamed = list(iter_webdataset(shards))
    manifest = layout.read_manifest(layered_data.coarse).to_pylist()
    by_shard = sorted(manifest, key=lambda r: r["shard"])
    assert [r.key for r in refs] == [s["__key__"] for s in streamed] == [r["key"] for r in by_shard]
    assert [Path(r.shard).name for r in refs] == [Path(r["shard"]).name for r in by_shard]
    for ref, raw in zip(refs, streamed):
        members = read_members(ref)
        assert set(members) == {"json", "fg.mp4", "alpha.mkv", "bg.mp4", "blend.mp4"}
        assert all(members[k] == raw[k] for k in members)


def test_decoded_coarse_layers_match_source_ground_truth(layered_data):
    """The reader returns RGB frames aligned with the source: the pipeline's blend is the source clip,
    its alpha the synthetic object's matte (segmentation quality of the CPU backends, measured)."""
    for ref in index_shards(resolve_shards([str(layered_data.coarse)])):
        clip = decode_clip(read_members(ref))
        rec = clip.record
        assert clip.blend.shape == (rec.num_frames, rec.height, rec.width, 3) == (SRC_T, SRC_H, SRC_W, 3)
        assert clip.alpha.shape == (SRC_T, SRC_H, SRC_W) and clip.alpha.dtype == np.uint8
        gt = np.load(Path(rec.provenance.source_uri).with_suffix(".npz"))
        idx = rec.provenance.start_frame + rec.provenance.frame_stride * np.arange(rec.num_frames)
        # two H.264 generations (source video, shard): measured 3.4-3.8; RGB/BGR swapped: 13-25
        assert np.abs(clip.blend.astype(int) - gt["frames"][idx]).mean() < 6
        assert _iou(clip.alpha, gt["alpha"][idx]) > 0.7  # measured 0.83-0.87
        assert np.abs(clip.bg.astype(int) - gt["bg"][idx]).mean() < 6  # static camera; measured 2.7-3.2


@pytest.mark.parametrize("root", ["coarse", "copypaste", "static"])
def test_builder_layers_recomposite_to_blend(layered_data, root):
    for ref in index_shards(resolve_shards([str(getattr(layered_data, root))])):
        clip = decode_clip(read_members(ref))
        a = clip.alpha.astype(np.float32)[..., None] / 255
        assert np.abs(clip.fg * a + clip.bg * (1 - a) - clip.blend).mean() < 5  # measured 0.9-3.0
        if root == "static":  # one frame repeated, bit-identically (a static video has no motion at all)
            assert all(np.array_equal(clip.blend[0], f) and np.array_equal(clip.fg[0], g)
                       for f, g in zip(clip.blend, clip.fg))


def test_layout_order_alpha_replication_resize_and_static(layered_data):
    clip = decode_clip(read_members(index_shards(resolve_shards([str(layered_data.coarse)]))[0]))
    native = _cfg([layered_data.coarse], height=SRC_H, width=SRC_W)
    pixels, view = build_layout(clip, native, None, static=False)
    assert pixels.shape == (4, 8, 3, SRC_H, SRC_W) and pixels.dtype == np.float32
    assert view["frames"] == list(range(2, 10))  # centred crop of 12 frames
    alpha = pixels[1]
    assert np.array_equal(alpha[:, 0], alpha[:, 2])
    np.testing.assert_allclose((alpha[:, 0] + 1) * 127.5, clip.alpha[2:10], atol=1e-3)
    np.testing.assert_allclose((pixels[0] + 1) * 127.5, clip.fg[2:10].transpose(0, 3, 1, 2), atol=1e-3)
    np.testing.assert_allclose((pixels[2] + 1) * 127.5, clip.bg[2:10].transpose(0, 3, 1, 2), atol=1e-3)
    np.testing.assert_allclose((pixels[3] + 1) * 127.5, clip.blend[2:10].transpose(0, 3, 1, 2), atol=1e-3)
    small, _ = build_layout(clip, _cfg([layered_data.coarse]), None, static=False)
    assert small.shape == (4, 8, 3, H, W)
    # 2x area downsampling keeps each frame's mean (object coverage, colours)
    np.testing.assert_allclose(small.mean(axis=(3, 4)), pixels.mean(axis=(3, 4)), atol=2e-3)
    static, sview = build_layout(clip, native, np.random.default_rng(0), static=True)
    assert len(set(sview["frames"])) == 1
    assert all(np.array_equal(static[:, 0], static[:, t]) for t in range(8))
    np.testing.assert_allclose((static[3, 0] + 1) * 127.5, clip.blend[sview["frames"][0]].transpose(2, 0, 1),
                               atol=1e-3)


def test_frame_indices_and_motion_scale():
    assert frame_indices(30, 8, 2, None).tolist() == list(range(7, 22, 2))
    idx = frame_indices(30, 8, 2, np.random.default_rng(1))
    assert np.all(np.diff(idx) == 2) and idx[0] >= 0 and idx[-1] < 30
    assert frame_indices(5, 8, 1, None).tolist() == [0, 1, 1, 2, 2, 3, 3, 4]  # short clip stretched
    assert motion_scale_for(None, static=True) == 1.0
    assert motion_scale_for(0.0, static=True) == 1.0
    assert motion_scale_for(0.0, static=False) == 0.0
    assert motion_scale_for(None, static=False) == 0.0


def test_dataset_kinds_static_and_motion_scale(layered_data):
    ds = LayeredDataset(_cfg(layered_data.roots, static="kind"), seed=0)
    examples = [ds.example(i, 0) for i in range(len(ds))]
    assert {k: sum(ex.kind == k for ex in examples) for k in EXPECTED_KINDS} == EXPECTED_KINDS
    for ex in examples:
        record = ds.records[ex.key]
        assert ex.static == (ex.kind == "static")
        assert ex.motion_scale == {"static": 1.0, "copypaste": 0.0, "coarse": 0.0}[ex.kind]
        assert ex.prompts == [f"0, {record.captions.fg}", f"1, {record.captions.bg}", f"2, {record.captions.blend}"]
        assert ex.pixels.shape == (4, 8, 3, H, W) and -1 <= ex.pixels.min() and ex.pixels.max() <= 1
    only = LayeredDataset(_cfg(layered_data.roots, kinds=["copypaste"]), seed=0)
    assert len(only) == EXPECTED_KINDS["copypaste"]
    assert {only.example(i, 0).kind for i in range(len(only))} == {"copypaste"}
    # stage 2: every sample, coarse included, becomes a frame-duplicated static video with motion scale 1
    all_static = LayeredDataset(_cfg([layered_data.coarse], static="all"), seed=0)
    for i in range(len(all_static)):
        ex = all_static.example(i, 0)
        assert ex.static and ex.motion_scale == 1.0 and ex.kind == "coarse"
        assert all(np.array_equal(ex.pixels[:, 0], ex.pixels[:, t]) for t in range(8))


def test_caption_dropout_empties_captions_but_keeps_layer_prefixes(layered_data):
    ds = LayeredDataset(_cfg(layered_data.roots, caption_dropout=0.5), seed=0)
    prompts = [ds.example(i, epoch).prompts for epoch in range(8) for i in range(len(ds))]
    dropped = [p for p in prompts if p == ["0, ", "1, ", "2, "]]
    assert 0.25 < len(dropped) / len(prompts) < 0.75  # about half, never all or none
    assert all(p[0].startswith("0, ") and p[1].startswith("1, ") and p[2].startswith("2, ") for p in prompts)
    again = LayeredDataset(_cfg(layered_data.roots, caption_dropout=0.5), seed=0)
    assert [again.example(i, 3).prompts for i in range(len(ds))] == prompts[3 * len(ds): 4 * len(ds)]  # resumable
    never = LayeredDataset(_cfg(layered_data.roots, caption_dropout=0.0), seed=0)
    assert all(never.example(i, e).prompts != ["0, ", "1, ", "2, "] for e in range(4) for i in range(len(never)))


def test_caption_dropout_default_is_the_authors_rate(layered_data):
    """Default = the authors' ``ucg_rate: 0.1``: measured over 4000 draws of the sampler's own decision."""
    cfg = _cfg(layered_data.roots)
    assert cfg.caption_dropout == 0.1
    ds = LayeredDataset(cfg, seed=0)
    draws = [ds.captions_dropped(i, e) for e in range(800) for i in range(len(ds))]
    assert abs(np.mean(draws) - 0.1) < 0.015  # binomial sd 0.0047
    dropped = next((i, e) for e in range(50) for i in range(len(ds)) if ds.captions_dropped(i, e))
    assert ds.example(*dropped).prompts == ["0, ", "1, ", "2, "]


def test_kind_weights_mix_kinds_at_the_configured_ratio(layered_data):
    """Stage-3 mixing: 3 copy-paste : 1 static although the data hold 2 : 1."""
    ds = LayeredDataset(_cfg(layered_data.roots, kinds=["static", "copypaste"],
                             kind_weights={"copypaste": 3, "static": 1}), seed=0)
    kinds = [ds.kinds[ds.locate(p)[0]] for p in range(4000)]
    assert abs(kinds.count("copypaste") / len(kinds) - 0.75) < 0.03
    natural = LayeredDataset(_cfg(layered_data.roots, kinds=["static", "copypaste"]), seed=0)
    epoch = sorted(natural.kinds[natural.locate(p)[0]] for p in range(len(natural)))
    assert epoch == ["copypaste", "copypaste", "static"]  # unweighted: each sample once per epoch
    with pytest.raises(ValueError, match="no samples"):
        LayeredDataset(_cfg([layered_data.coarse], kind_weights={"static": 1}), seed=0).locate(0)


def test_missing_dataset_names_the_builder(tmp_path):
    with pytest.raises(FileNotFoundError, match="make copypaste"):
        resolve_shards([str(tmp_path / "out" / "copypaste")])


def test_sampler_positions_partition_ranks_and_epochs():
    seen = [sample_positions(s, m, 2, r, 2, 3) for s in range(2) for m in range(2) for r in range(2)]
    flat = np.concatenate(seen)
    assert sorted(flat.tolist()) == list(range(24))  # disjoint, no gaps
    epoch0 = [position_to_index(p, 6, 0)[0] for p in range(6)]
    epoch1 = [position_to_index(p, 6, 0)[0] for p in range(6, 12)]
    assert sorted(epoch0) == sorted(epoch1) == list(range(6)) and epoch0 != epoch1


@pytest.mark.slow
@pytest.mark.ray
def test_ray_read_webdataset_same_members(ray_local, layered_data):
    from layerflow_train.data import read_ray_dataset

    shards = resolve_shards(layered_data.roots)
    rows = {r["__key__"]: r for r in read_ray_dataset(shards).take_all()}
    refs = index_shards(shards)
    assert sorted(rows) == sorted(r.key for r in refs)
    for ref in refs:
        members = read_members(ref)
        assert all(bytes(rows[ref.key][k]) == members[k] for k in members)
        clip = decode_clip(rows[ref.key])
        assert clip.record.key == ref.key and clip.alpha.shape == (SRC_T, SRC_H, SRC_W)
