import io

import numpy as np
from PIL import Image

from dashboard.media import (
    LRUBytes,
    contact_sheet,
    is_browser_playable,
    sheet_frame_indices,
    thumbnail,
    to_browser_mp4,
)
from dataset_builder.io.video import decode_bytes, encode_alpha, encode_rgb


def _alpha(t=8, h=16, w=32):
    a = np.zeros((t, h, w), np.uint8)
    for i in range(t):
        a[i, 3:11, 2 + 3 * i:12 + 3 * i] = 255
        a[i, 12:, :] = 20 * i  # a gray ramp over time, to check levels survive
    return a


def test_alpha_transcode_is_playable_and_faithful():
    alpha = _alpha()
    mkv = encode_alpha(alpha, 8.0)
    assert not is_browser_playable(mkv, "alpha.mkv")
    mp4 = to_browser_mp4(mkv, "alpha.mkv", fps=8.0)
    assert is_browser_playable(mp4, "alpha.mp4")
    back = decode_bytes(mp4)
    assert back.shape == (8, 16, 32, 3)
    err = np.abs(back[..., 0].astype(int) - alpha.astype(int))
    assert err.mean() < 2.0, err.mean()  # near-lossless: matte edges stay readable


def test_odd_size_is_padded_to_even():
    alpha = _alpha(h=15, w=31)
    mp4 = to_browser_mp4(encode_alpha(alpha, 8.0), "alpha.mkv", fps=8.0)
    assert decode_bytes(mp4).shape == (8, 16, 32, 3)


def test_h264_member_is_playable():
    rgb = np.random.default_rng(0).integers(0, 255, (4, 16, 32, 3), dtype=np.uint8)
    assert is_browser_playable(encode_rgb(rgb, 8.0), "fg.mp4")
    assert not is_browser_playable(b"not a video", "fg.mp4")


def test_lru_is_bounded_by_bytes():
    cache = LRUBytes(max_bytes=10)
    cache.put(("a",), b"12345")
    cache.put(("b",), b"12345")
    assert cache.get(("a",)) == b"12345"  # touch a: b becomes least recent
    cache.put(("c",), b"123")
    assert cache.get(("b",)) is None and cache.get(("a",)) == b"12345" and cache.get(("c",)) == b"123"
    assert cache.nbytes == 8 and len(cache) == 2
    cache.put(("huge",), b"x" * 11)  # larger than the bound: not cached, nothing evicted
    assert cache.get(("huge",)) is None and len(cache) == 2


def test_contact_sheet_layout():
    assert sheet_frame_indices(8) == [0, 4, 7]
    assert sheet_frame_indices(1) == [0]
    t = 8
    frames = np.zeros((t, 16, 32, 3), np.uint8)
    for i in range(t):
        frames[i] = 30 * i
    png = contact_sheet({"blend": frames, "fg": frames}, tile_width=64, label_width=40)
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    # 2 rows of 32-px tiles (+16 header, 2-px gaps), 3 columns of 64 px
    assert img.shape == (16 + 2 * (32 + 2), 40 + 3 * (64 + 2), 3)
    # columns show frames 0, 4, 7 of the first row (fg comes before blend)
    for col, frame in enumerate((0, 4, 7)):
        tile = img[16 + 8:16 + 24, 40 + col * 66 + 8:40 + col * 66 + 56]
        assert np.all(tile == 30 * frame)


def test_thumbnail_tints_object():
    blend = np.full((4, 16, 32, 3), 100, np.uint8)
    alpha = np.zeros((4, 16, 32, 3), np.uint8)
    alpha[:, :, :16] = 255
    img = np.asarray(Image.open(io.BytesIO(thumbnail(blend, alpha, width=32))).convert("RGB")).astype(int)
    assert img.shape == (16, 32, 3)
    assert img[8, 4, 0] > 150 and img[8, 4, 2] < 80  # orange where alpha is on
    assert tuple(img[8, 28]) == (100, 100, 100)  # untouched elsewhere
