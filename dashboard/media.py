"""Browser-facing media: H.264 transcodes of members browsers can't play, thumbnails, contact sheets.

Alpha is stored as FFV1/MKV (lossless, right for training) which no browser decodes, so it is
transcoded on demand; the near-lossless CRF keeps matte edges readable for QA.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict

import numpy as np

from dashboard.data import Dataset, read_member
from dataset_builder.io.video import decode_bytes, encode_rgb
from schemas import LAYER_MEMBERS

#: Codecs every current browser plays inside MP4 (with yuv420p).
_PLAYABLE_CODECS = {"h264", "vp9", "av1"}
LAYER_ORDER = ("fg", "alpha", "bg", "blend")


def is_browser_playable(data: bytes, suffix: str) -> bool:
    """True for MP4 members whose first video stream is H.264/VP9/AV1 in yuv420p."""
    import av

    if not suffix.endswith(".mp4"):
        return False
    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.video:
                return False
            ctx = container.streams.video[0].codec_context
            return ctx.name in _PLAYABLE_CODECS and (ctx.pix_fmt or "yuv420p") == "yuv420p"
    except Exception:  # noqa: BLE001 - undecodable member: let the transcoder raise a clear error instead
        return False


def _even(frames: np.ndarray) -> np.ndarray:
    """yuv420p needs even sizes: replicate the last row/column where needed."""
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return frames


def decode_layer(data: bytes, suffix: str) -> np.ndarray:
    """Any layer member as RGB uint8 (T, H, W, 3); alpha (gray) is replicated to 3 channels."""
    if suffix.startswith("alpha"):
        gray = decode_bytes(data, gray=True)
        return np.repeat(gray[..., None], 3, axis=-1)
    return decode_bytes(data)


def to_browser_mp4(data: bytes, suffix: str, fps: float, crf: int = 10) -> bytes:
    """Re-encode a member as H.264 MP4, frame for frame (count and size preserved, up to even padding)."""
    return encode_rgb(_even(decode_layer(data, suffix)), fps, crf=crf)


class LRUBytes:
    """Thread-safe LRU cache of byte strings bounded by total size, not entry count."""

    def __init__(self, max_bytes: int = 256 << 20):
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: tuple) -> bytes | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: tuple, value: bytes) -> None:
        if len(value) > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._size -= len(old)
            self._items[key] = value
            self._size += len(value)
            while self._size > self.max_bytes:
                _, evicted = self._items.popitem(last=False)
                self._size -= len(evicted)

    @property
    def nbytes(self) -> int:
        return self._size

    def __len__(self) -> int:
        return len(self._items)


def sheet_frame_indices(num_frames: int) -> list[int]:
    """First, middle and last frame."""
    return sorted({0, num_frames // 2, max(num_frames - 1, 0)})


def _png(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _resize(rgb: np.ndarray, width: int) -> np.ndarray:
    import cv2

    h, w = rgb.shape[:2]
    height = max(1, round(h * width / w))
    interp = cv2.INTER_AREA if width < w else cv2.INTER_NEAREST
    return cv2.resize(rgb, (width, height), interpolation=interp)


def contact_sheet(layers: dict[str, np.ndarray], tile_width: int = 200, label_width: int = 56) -> bytes:
    """PNG grid: one row per layer (fg, alpha, bg, blend), columns first/middle/last frame.

    ``layers`` maps layer name -> RGB (T, H, W, 3). Each row is labelled with the layer name and
    each column header with its frame index, so a sheet is readable out of context.
    """
    from PIL import Image, ImageDraw

    names = [n for n in LAYER_ORDER if n in layers] + [n for n in layers if n not in LAYER_ORDER]
    if not names:
        raise ValueError("contact_sheet needs at least one layer")
    num_frames = min(len(layers[n]) for n in names)
    idx = sheet_frame_indices(num_frames)
    tiles = {n: [_resize(layers[n][i], tile_width) for i in idx] for n in names}
    tile_h = max(t.shape[0] for row in tiles.values() for t in row)
    header, gap = 16, 2
    width = label_width + len(idx) * (tile_width + gap)
    height = header + len(names) * (tile_h + gap)
    canvas = np.full((height, width, 3), 245, np.uint8)
    for r, name in enumerate(names):
        y = header + r * (tile_h + gap)
        for c, tile in enumerate(tiles[name]):
            x = label_width + c * (tile_width + gap)
            canvas[y:y + tile.shape[0], x:x + tile.shape[1]] = tile
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    for c, i in enumerate(idx):
        draw.text((label_width + c * (tile_width + gap) + 4, 2), f"frame {i}", fill=(60, 60, 60))
    for r, name in enumerate(names):
        draw.text((4, header + r * (tile_h + gap) + tile_h // 2 - 6), name, fill=(20, 20, 20))
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def thumbnail(blend: np.ndarray, alpha: np.ndarray | None, width: int = 320) -> bytes:
    """Middle blend frame with the alpha tinted orange, so the object is visible in the grid."""
    frame = blend[len(blend) // 2].astype(np.float32)
    if alpha is not None and len(alpha):
        a = alpha[min(len(alpha) - 1, len(blend) // 2), ..., 0].astype(np.float32)[..., None] / 255.0
        if a.shape[:2] == frame.shape[:2]:
            tint = np.array([255.0, 140.0, 0.0], np.float32)
            frame = frame * (1 - 0.45 * a) + tint * 0.45 * a
    return _png(_resize(np.clip(frame, 0, 255).astype(np.uint8), width))


def sample_contact_sheet(dataset: Dataset, key: str) -> bytes:
    """Contact sheet of one sample: first/middle/last frame of every layer it has."""
    layers = {}
    for layer in LAYER_ORDER:
        ref = dataset.member(key, LAYER_MEMBERS[layer])
        if ref is not None:
            layers[layer] = decode_layer(read_member(ref), LAYER_MEMBERS[layer])
    if not layers:
        raise KeyError(f"no layer members for sample {key!r}")
    return contact_sheet(layers)
