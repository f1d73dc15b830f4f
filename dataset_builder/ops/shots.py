"""Hard-cut (shot boundary) detection. A clip spanning a cut is not one scene: its "motion" is the
cut itself, which segmentation would turn into junk objects. Clips are therefore planned inside shots.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import numpy as np


class ShotCutDetector:
    """Streaming detector: feed frames in order; ``cuts`` lists indices that start a new shot.

    A cut is flagged when the colour histogram changes abruptly (correlation below
    ``hist_correlation``) or the motion-compensated frame difference spikes far above its recent
    median (catches cuts between shots of similar colours). The difference is taken after undoing
    the global shift found by phase correlation, so fast pans stay low while cuts stand out. Both
    signals use a small thumbnail: a pass costs little beyond decoding.
    """

    def __init__(self, hist_correlation: float = 0.6, diff_ratio: float = 4.0, min_diff: float = 25.0,
                 window: int = 15, thumb: tuple[int, int] = (128, 72)):
        self.hist_correlation = hist_correlation
        self.diff_ratio = diff_ratio
        self.min_diff = min_diff
        self.thumb = thumb
        self.recent: deque[float] = deque(maxlen=window)
        self.cuts: list[int] = []
        self._index = -1
        self._prev: tuple[np.ndarray, np.ndarray] | None = None

    def feed(self, frame: np.ndarray) -> bool:
        import cv2

        self._index += 1
        small = cv2.resize(frame, self.thumb, interpolation=cv2.INTER_AREA)
        hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
        hist = cv2.calcHist([hsv], [0, 1], None, [16, 16], [0, 180, 0, 256])
        hist = cv2.normalize(hist, hist).flatten()
        gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32)
        is_cut = False
        if self._prev is not None:
            prev_hist, prev_gray = self._prev
            corr = float(cv2.compareHist(prev_hist, hist, cv2.HISTCMP_CORREL))
            diff = _compensated_diff(prev_gray, gray)
            baseline = float(np.median(self.recent)) if len(self.recent) >= 3 else diff
            spike = diff > self.min_diff and diff > self.diff_ratio * max(baseline, 1.0)
            is_cut = corr < self.hist_correlation or spike
            if is_cut:
                self.cuts.append(self._index)
                self.recent.clear()  # the new shot gets its own motion baseline
            else:
                self.recent.append(diff)
        self._prev = (hist, gray)
        return is_cut

    @property
    def num_frames(self) -> int:
        return self._index + 1


def _compensated_diff(prev: np.ndarray, cur: np.ndarray, margin: int = 8) -> float:
    import cv2

    (dx, dy), _ = cv2.phaseCorrelate(prev, cur)
    shift = np.float32([[1, 0, dx], [0, 1, dy]])
    warped = cv2.warpAffine(prev, shift, (prev.shape[1], prev.shape[0]), borderMode=cv2.BORDER_REFLECT)
    return float(np.abs(warped - cur)[margin:-margin, margin:-margin].mean())


def detect_cuts(frames: Iterable[np.ndarray], **kwargs) -> tuple[list[int], int]:
    """(indices where a new shot starts, number of frames seen)."""
    detector = ShotCutDetector(**kwargs)
    for frame in frames:
        detector.feed(frame)
    return detector.cuts, detector.num_frames


def shots_from_cuts(cuts: list[int], total_frames: int) -> list[tuple[int, int]]:
    """[start, end) frame ranges of the shots delimited by ``cuts``."""
    bounds = [0] + [c for c in sorted(set(cuts)) if 0 < c < total_frames] + [total_frames]
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
