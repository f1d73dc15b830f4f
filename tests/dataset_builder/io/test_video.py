import numpy as np
import pytest

from dataset_builder.io.video import (
    VideoDecodeError,
    decode_bytes,
    decode_frames,
    decode_frames_at,
    encode_alpha,
    encode_rgb,
    encode_static_rgb,
    probe_video,
)


def _gradient_clip(t=6, h=32, w=48):
    y, x = np.mgrid[0:h, 0:w]
    frames = [np.stack([(x * 5 + i * 10) % 256, (y * 7) % 256, np.full_like(x, 40 * i % 256)], -1)
              for i in range(t)]
    return np.asarray(frames, np.uint8)


def test_alpha_roundtrip_is_lossless():
    rng = np.random.default_rng(0)
    alpha = rng.integers(0, 256, (5, 24, 40), dtype=np.uint8)
    decoded = decode_bytes(encode_alpha(alpha, fps=8), gray=True)
    np.testing.assert_array_equal(decoded, alpha)


def test_rgb_roundtrip_is_close_and_keeps_shape():
    frames = _gradient_clip()
    decoded = decode_bytes(encode_rgb(frames, fps=8, crf=10))
    assert decoded.shape == frames.shape
    assert np.abs(decoded.astype(int) - frames).mean() < 4.0


def test_encode_rejects_bad_shapes():
    with pytest.raises(ValueError):
        encode_rgb(np.zeros((2, 8, 8), np.uint8), fps=8)
    with pytest.raises(ValueError, match="even"):
        encode_rgb(np.zeros((2, 8, 7, 3), np.uint8), fps=8)
    with pytest.raises(ValueError, match="even"):
        encode_static_rgb(np.zeros((7, 8, 3), np.uint8), 2, fps=8)
    with pytest.raises(ValueError):
        encode_static_rgb(np.zeros((8, 8, 4), np.uint8), 2, fps=8)
    with pytest.raises(ValueError):
        encode_alpha(np.zeros((2, 8, 8, 3), np.uint8), fps=8)


def test_probe_and_decode_real_clip(bikes_path):
    info = probe_video(bikes_path)
    assert (info.num_frames, info.width, info.height) == (250, 640, 272)
    assert info.fps == pytest.approx(25.0)
    frames, fps = decode_frames(bikes_path, start=10, count=4, stride=5)
    assert frames.shape == (4, 272, 640, 3) and frames.dtype == np.uint8
    picked, _ = decode_frames_at(bikes_path, [25, 10, 15])
    np.testing.assert_array_equal(picked[0], frames[0])  # index 10
    np.testing.assert_array_equal(picked[2], frames[3])  # index 25


def test_decode_errors_are_clear(tmp_path, bikes_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 100)
    with pytest.raises(VideoDecodeError, match="junk.mp4"):
        probe_video(junk)
    with pytest.raises(VideoDecodeError, match="no such file"):
        decode_frames(tmp_path / "missing.mp4")
    with pytest.raises(VideoDecodeError, match="decoded 0 of 1"):
        decode_frames_at(bikes_path, [400])


def test_rgb_encode_is_byte_identical_across_calls():
    """Identical inputs must give identical shards: PyAV's implicit rgb24 -> yuv420p conversion (swscale)
    reads memory it did not write, so repeated encodes of the same frames in one process differed."""
    rng = np.random.default_rng(1)
    frames = np.clip(_gradient_clip(t=8, h=120, w=214).astype(int)
                     + rng.integers(-20, 21, (8, 120, 214, 3)), 0, 255).astype(np.uint8)
    encodes = {encode_rgb(frames, fps=8) for _ in range(4)}
    assert len(encodes) == 1
    assert len({encode_static_rgb(frames[0], 4, fps=8) for _ in range(4)}) == 1


def test_chroma_is_the_2x2_mean_not_one_pixel_of_it():
    """A one-pixel red dot on grey keeps a quarter of its colour wherever it sits in its 2x2 block
    (OpenCV's I420 alone took each block's chroma from its top-left pixel: all or nothing)."""
    from dataset_builder.io.video import i420_frame

    chromas = []
    for y, x in ((0, 0), (1, 1)):
        rgb = np.full((8, 8, 3), 128, np.uint8)
        rgb[y, x] = (255, 0, 0)
        planes = i420_frame(rgb).to_ndarray()  # (12, 8): 8 rows of Y, then U and V (two chroma rows a row)
        chromas.append(planes[8:].astype(int))
    np.testing.assert_array_equal(chromas[0], chromas[1])
    assert chromas[0][2, 0] > 140  # V of the dot's block (rows 8-9 hold U, 10-11 V): red at a quarter
