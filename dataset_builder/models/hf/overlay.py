"""Frame overlays that show a VLM which object a question is about (masks never enter the model)."""

from __future__ import annotations

import numpy as np


def highlight(frames: np.ndarray, masks: np.ndarray, color: tuple[int, int, int] = (255, 0, 0),
              strength: float = 0.45) -> np.ndarray:
    """Tint the masked object with ``color`` and outline it, so "the highlighted object" is unambiguous."""
    import cv2

    if frames.shape[:3] != masks.shape:
        raise ValueError(f"frames {frames.shape} and masks {masks.shape} differ")
    alpha = (masks.astype(np.float32) / 255.0)[..., None] * strength
    out = frames.astype(np.float32) * (1 - alpha) + np.asarray(color, np.float32) * alpha
    out = out.round().astype(np.uint8)
    for t in range(len(out)):
        contours, _ = cv2.findContours((masks[t] > 127).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out[t], contours, -1, color, thickness=max(1, min(out.shape[1:3]) // 160))
    return out


def composite(frames: np.ndarray, alpha: np.ndarray, fill: int = 0) -> np.ndarray:
    """The foreground layer as the captioner sees it: the object over a flat ``fill`` background."""
    a = (alpha.astype(np.float32) / 255.0)[..., None]
    return (frames.astype(np.float32) * a + fill * (1 - a)).round().astype(np.uint8)
