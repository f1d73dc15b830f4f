"""Contact sheet of a derived (or coarse) dataset for eyes: one row per sample, the middle frame of
fg (over a checkerboard, so halos show), alpha, bg and blend, with the sample's key and kind.

    python -m dataset_builder.derived.contact_sheet out/image_layers out/image_layers/contact.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from dataset_builder.io import layout


def _checker(h: int, w: int, cell: int = 8) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.where(((yy // cell + xx // cell) % 2)[..., None] == 0, 200, 130).astype(np.uint8).repeat(3, -1)


def sample_tiles(out_dir: str | Path, limit: int = 24) -> list[tuple[str, list[np.ndarray]]]:
    """(label, [fg over checkerboard, alpha, bg, blend]) of the middle frame of up to ``limit`` samples."""
    rows = []
    for clip in layout.iter_samples(out_dir, decode=True):
        t = len(clip.alpha) // 2
        alpha = clip.alpha[t]
        a = alpha.astype(np.float32)[..., None] / 255
        fg = np.rint(clip.fg[t] * a + _checker(*alpha.shape) * (1 - a)).astype(np.uint8)
        rec = clip.record
        label = f"{rec.kind} m{rec.motion_scale} {rec.label[:20]} {rec.key[:18]}"
        rows.append((label, [fg, np.repeat(alpha[..., None], 3, -1), clip.bg[t], clip.blend[t]]))
        if len(rows) >= limit:
            break
    return rows


def contact_sheet(out_dir: str | Path, target: str | Path, tile_width: int = 240, limit: int = 24) -> Path:
    rows = []
    for label, tiles in sample_tiles(out_dir, limit):
        h, w = tiles[0].shape[:2]
        size = (tile_width, max(2, round(h * tile_width / w)))
        row = np.concatenate([cv2.resize(t, size, interpolation=cv2.INTER_AREA) for t in tiles], axis=1)
        bar = np.full((18, row.shape[1], 3), 255, np.uint8)
        cv2.putText(bar, label, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
        rows.append(np.concatenate([bar, row], axis=0))
    if not rows:
        raise ValueError(f"{out_dir}: no committed samples")
    width = max(r.shape[1] for r in rows)
    sheet = np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows])
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(target), sheet[..., ::-1])
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset")
    parser.add_argument("png")
    parser.add_argument("--limit", type=int, default=24)
    args = parser.parse_args(argv)
    print(contact_sheet(args.dataset, args.png, limit=args.limit))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
