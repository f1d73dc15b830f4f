"""Video decoding (PyAV first, OpenCV fallback) and in-memory layer encoding.

Decoding returns uint8 RGB ``(T, H, W, 3)``. Layers are encoded to bytes so that Ray moves small
blobs, not raw frames: RGB layers as H.264 (yuv420p, CRF), alpha losslessly as FFV1 gray8 in MKV.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterator

import numpy as np


class VideoDecodeError(RuntimeError):
    """The file is missing, not a video, or has no decodable frames."""


@dataclass(frozen=True)
class VideoInfo:
    path: str
    num_frames: int
    fps: float
    width: int
    height: int
    codec: str
    #: Frames the header promises (frame count, or duration x fps): a decode that ends well short of
    #: it is a truncated or corrupt file. 0 when the header says nothing.
    expected_frames: int = 0


def probe_video(path: str | Path) -> VideoInfo:
    """Container-level facts, without decoding frames where the container knows them."""
    import av

    path = str(path)
    if "://" not in path and not Path(path).is_file():
        raise VideoDecodeError(f"no such file: {path}")
    try:
        with av.open(_source(path)) as container:
            if not container.streams.video:
                raise VideoDecodeError(f"{path}: no video stream")
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0.0)
            frames = int(stream.frames or 0)
            expected = max(frames, _frames_from_duration(container, stream, fps))
            if frames <= 0:  # some containers (AVI, webm) don't store it: count packets, no decode
                frames = sum(1 for packet in container.demux(stream) if packet.size)
            return VideoInfo(path, frames, fps, stream.codec_context.width, stream.codec_context.height,
                             stream.codec_context.name, expected_frames=max(expected, frames))
    except VideoDecodeError:
        raise
    except Exception as exc:  # av raises many error types (InvalidDataError, ...)
        raise VideoDecodeError(f"{path}: cannot open as video ({type(exc).__name__}: {exc})") from exc


def _frames_from_duration(container, stream, fps: float) -> int:
    """Frame count implied by the header's duration: the video stream's own, or the container's when
    the file has no other stream (with audio it may be the audio's, longer than the video)."""
    if fps <= 0:
        return 0
    if stream.duration and stream.time_base:
        return int(round(float(stream.duration * stream.time_base) * fps))
    if container.duration and len(container.streams) == 1:
        return int(round(container.duration / 1_000_000 * fps))
    return 0


def iter_frames(path: str | Path) -> tuple[float, Iterator[np.ndarray]]:
    """(fps, generator of RGB frames), streaming.

    OpenCV first (about 2x PyAV's RGB conversion on CPU, see benchmarks/results/decode.json); PyAV when
    OpenCV cannot open the file or yields no frame from it.
    """
    path = str(path)
    if "://" in path:  # object store: PyAV reads from a pyarrow file object (OpenCV needs a path)
        return _open_pyav(path)
    if not Path(path).is_file():
        raise VideoDecodeError(f"no such file: {path}")
    try:
        fps, frames = _iter_cv2(path)
        first = next(frames)
    except (VideoDecodeError, StopIteration, Exception):
        return _open_pyav(path)

    def chained() -> Iterator[np.ndarray]:
        yield first
        yield from frames

    return fps, chained()


def decode_frames(
    path: str | Path, start: int = 0, count: int | None = None, stride: int = 1
) -> tuple[np.ndarray, float]:
    """Decode frames ``start, start+stride, ...`` (at most ``count``) as RGB uint8. Returns (frames, fps)."""
    fps, frames_iter = iter_frames(path)
    frames: list[np.ndarray] = []
    try:
        for index, frame in enumerate(frames_iter):
            if index < start or (index - start) % stride:
                continue
            frames.append(frame)
            if count is not None and len(frames) >= count:
                break
    except Exception as exc:
        if not frames:
            raise VideoDecodeError(f"{path}: decode failed ({type(exc).__name__}: {exc})") from exc
    if not frames:
        raise VideoDecodeError(f"{path}: no frames decoded from frame {start}")
    return np.stack(frames), fps


def decode_frames_at(path: str | Path, indices: list[int]) -> tuple[np.ndarray, float]:
    """Decode the given frame indices in one streaming pass (all clips of a video share one decode;
    only wanted frames are kept). Returns frames in ``sorted(set(indices))`` order."""
    wanted = sorted(set(indices))
    if not wanted:
        raise ValueError("no frame indices requested")
    fps, frames_iter = iter_frames(path)
    keep = set(wanted)
    got: dict[int, np.ndarray] = {}
    try:
        for index, frame in enumerate(frames_iter):
            if index in keep:
                got[index] = frame
            if index >= wanted[-1]:
                break
    except Exception as exc:
        raise VideoDecodeError(f"{path}: decode failed after {len(got)} frames ({type(exc).__name__}: {exc})") from exc
    if len(got) < len(wanted):
        raise VideoDecodeError(f"{path}: decoded {len(got)} of {len(wanted)} requested frames "
                               "(file shorter than its header says?)")
    return np.stack([got[i] for i in wanted]), fps


def _source(path: str):
    """What PyAV opens: a local path, or a seekable pyarrow file for a URI."""
    if "://" not in path:
        return path
    from dataset_builder.io.inputs import open_input

    return open_input(path)


def _open_pyav(path: str) -> tuple[float, Iterator[np.ndarray]]:
    """PyAV decode, any failure to open as one :class:`VideoDecodeError` naming the file."""
    try:
        return _iter_pyav(path)
    except VideoDecodeError:
        raise
    except Exception as exc:
        raise VideoDecodeError(f"{path}: cannot open as video ({type(exc).__name__}: {exc})") from exc


def _iter_pyav(path: str):
    import av

    container = av.open(_source(path))
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(f"{path}: no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    fps = float(stream.average_rate or stream.guessed_rate or 0.0)

    def gen():
        with container:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")

    return fps, gen()


def _iter_cv2(path: str):
    import cv2

    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise VideoDecodeError(f"{path}: OpenCV cannot open it")
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)

    def gen():
        try:
            while True:
                ok, bgr = cap.read()
                if not ok:
                    return
                yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        finally:
            cap.release()

    return fps, gen()


@functools.cache
def x264_options() -> dict[str, str]:
    """Extra libx264 options that make its output a function of its input. On CPUs with AVX-512 its
    AVX-512 code paths made the same frames encode to different bytes (and pixels) from call to call,
    even single-threaded (measured on the PyAV 18 wheels: 3-8 variants in 20 encodes of one DAVIS clip);
    capped at AVX2, 60 of 60 were identical. Only capped where the CPU has AVX2 (x264 does not check a
    forced set against the CPU)."""
    try:
        flags = next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("flags")), [])
    except OSError:  # not Linux: no way to tell here, x264 decides
        return {}
    return {"x264-params": "asm=AVX2"} if "avx512f" in flags and "avx2" in flags else {}


def _check_yuv420_size(h: int, w: int) -> None:
    if h % 2 or w % 2:
        raise ValueError(f"yuv420p needs even frame sizes, got {w}x{h}")


def i420_frame(rgb: np.ndarray):
    """An RGB frame (even H and W) as a yuv420p ``av.VideoFrame``, converted by OpenCV (BT.601 limited
    range, as swscale's default). Not PyAV's implicit swscale conversion: it reads memory it did not
    write, so the same frames encoded twice gave different bytes (and pixels), and identical inputs
    different shards. OpenCV's I420 takes each 2x2 block's chroma from one pixel; it is taken from the
    block's mean colour instead (as swscale filters it), so colour edges do not alias."""
    import av
    import cv2

    rgb = np.ascontiguousarray(rgb, np.uint8)
    h, w = rgb.shape[:2]
    _check_yuv420_size(h, w)
    yuv = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)
    blocks = cv2.resize(cv2.resize(rgb, (w // 2, h // 2), interpolation=cv2.INTER_AREA), (w, h),
                        interpolation=cv2.INTER_NEAREST)
    yuv[h:] = cv2.cvtColor(blocks, cv2.COLOR_RGB2YUV_I420)[h:]
    return av.VideoFrame.from_ndarray(yuv, format="yuv420p")


def encode_rgb(frames: np.ndarray, fps: float, crf: int = 18, codec: str = "libx264") -> bytes:
    """H.264 MP4 (yuv420p) in memory. ``frames``: uint8 (T, H, W, 3), H and W even.

    The frames are converted by :func:`i420_frame` and coded with :func:`x264_options`, so identical
    frames give identical bytes."""
    import av

    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected (T, H, W, 3) frames, got {frames.shape}")
    _check_yuv420_size(frames.shape[1], frames.shape[2])
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=_rate(fps))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "medium", **x264_options()} if codec == "libx264" else {}
        for i, rgb in enumerate(frames):
            frame = i420_frame(rgb)
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def encode_alpha(alpha: np.ndarray, fps: float) -> bytes:
    """Lossless FFV1 gray8 in Matroska. ``alpha``: uint8 (T, H, W)."""
    import av

    alpha = np.ascontiguousarray(alpha, dtype=np.uint8)
    if alpha.ndim != 3:
        raise ValueError(f"expected (T, H, W) alpha, got {alpha.shape}")
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="matroska") as container:
        stream = container.add_stream("ffv1", rate=_rate(fps))
        stream.width, stream.height = alpha.shape[2], alpha.shape[1]
        stream.pix_fmt = "gray"
        for plane in alpha:
            for packet in stream.encode(av.VideoFrame.from_ndarray(plane, format="gray")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def encode_static_rgb(frame: np.ndarray, num_frames: int, fps: float, crf: int = 18) -> bytes:
    """H.264 MP4 of one frame shown ``num_frames`` times, decoding to bit-identical frames.

    The frame is coded once as an IDR picture and that packet is muxed ``num_frames`` times. Plain
    H.264 of repeated frames lets P-frames keep refining the picture (visible as flicker on textured
    content), which a static-video (motion scale 1) sample must not have; the price is ~8x the bytes.
    """
    import av

    if frame.ndim != 3 or frame.shape[-1] != 3:
        raise ValueError(f"expected an (H, W, 3) frame, got {frame.shape}")
    _check_yuv420_size(*frame.shape[:2])
    rate = _rate(fps)
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height = frame.shape[1], frame.shape[0]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "medium", **x264_options()}
        video_frame = i420_frame(frame)
        packets = [*stream.encode(video_frame), *stream.encode()]
        if len(packets) != 1:
            raise RuntimeError(f"expected one packet for one frame, got {len(packets)}")
        data, time_base = bytes(packets[0]), packets[0].time_base
        step = max(1, round(1 / (rate * time_base)))
        for i in range(num_frames):
            packet = av.Packet(data)
            packet.pts = packet.dts = i * step
            packet.time_base, packet.stream, packet.is_keyframe = time_base, stream, True
            container.mux(packet)
    return buf.getvalue()


def decode_bytes(data: bytes, gray: bool = False) -> np.ndarray:
    """Decode an in-memory video (e.g. a shard member) to uint8 (T, H, W, 3) or (T, H, W) if ``gray``."""
    import av

    out = []
    with av.open(io.BytesIO(data)) as container:
        for frame in container.decode(video=0):
            out.append(frame.to_ndarray(format="gray" if gray else "rgb24"))
    if not out:
        raise VideoDecodeError("no frames in encoded video bytes")
    return np.stack(out)


def _rate(fps: float):
    from fractions import Fraction

    fps = fps if fps and fps > 0 else 8.0
    return Fraction(fps).limit_denominator(1001)
