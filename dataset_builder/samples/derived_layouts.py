"""Deterministic sample inputs in the real layouts of the derived builders' sources, generated from
:mod:`dataset_builder.samples.synthetic` (exact ground truth, no third-party data):

* ``videomatte/``  VideoMatte240K: ``train/fgr/<id>.mp4`` + ``train/pha/<id>.mp4``, one clip as JPEG frame
  folders (``fgr/<id>/00000.jpg``, the JPEG release), and one fg without alpha (a ``missing_alpha`` reject);
* ``image_matting/am2k/train/original/*.jpg`` + ``mask/*.png`` (photo + matte; one photo lacks its matte),
  ``image_matting/d646/Train/FG/*.png`` + ``GT/*.png`` + ``bg/*.jpg`` (extracted fg over real backgrounds);
* ``mulan/annotations/<coco id>.p.zl`` zlib pickles in the MuLAn release's structure over base images in
  ``mulan/coco/train2017/``, plus a corrupt pickle and an annotation whose base image is missing.
"""

from __future__ import annotations

import pickle
import zlib
from pathlib import Path

import cv2
import numpy as np

from dataset_builder.samples.synthetic import make_synthetic_clip


def _save(path: Path, image: np.ndarray, quality: int = 95) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    code = {3: cv2.COLOR_RGB2BGR, 4: cv2.COLOR_RGBA2BGRA}.get(image.shape[-1] if image.ndim == 3 else 0)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if path.suffix.lower() in (".jpg", ".jpeg") else []
    cv2.imwrite(str(path), cv2.cvtColor(image, code) if code is not None else image, params)


def write_videomatte(root: Path, num_frames: int = 20, height: int = 240, width: int = 360) -> None:
    from dataset_builder.io.video import encode_rgb

    split = root / "train"
    for index, seed in enumerate((11, 12)):
        clip = make_synthetic_clip(seed=seed, num_frames=num_frames, height=height, width=width, num_objects=1,
                                   camera_pan=False)
        for folder, frames in (("fgr", clip.fg), ("pha", np.repeat(clip.alpha[..., None], 3, axis=-1))):
            target = split / folder / f"{index:04d}.mp4"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(encode_rgb(frames, clip.fps, crf=16))
    clip = make_synthetic_clip(seed=13, num_frames=num_frames, height=height, width=width, num_objects=1,
                               camera_pan=False)
    for t in range(num_frames):
        _save(split / "fgr" / "0002" / f"{t:05d}.jpg", clip.fg[t])
        _save(split / "pha" / "0002" / f"{t:05d}.jpg", clip.alpha[t])
    orphan = make_synthetic_clip(seed=14, num_frames=num_frames, height=height, width=width, camera_pan=False)
    (split / "fgr" / "0003.mp4").write_bytes(encode_rgb(orphan.fg, orphan.fps))  # its pha/0003.mp4 is missing


def write_image_matting(root: Path, num_frames: int = 1, height: int = 240, width: int = 360) -> None:
    am2k = root / "am2k" / "train"
    for index, seed in enumerate((21, 22)):
        clip = make_synthetic_clip(seed=seed, num_frames=1, height=height, width=width, camera_pan=False)
        _save(am2k / "original" / f"m_{index:04d}.jpg", clip.frames[0])
        _save(am2k / "mask" / f"m_{index:04d}.png", clip.alpha[0])
    clip = make_synthetic_clip(seed=23, num_frames=1, height=height, width=width, camera_pan=False)
    _save(am2k / "original" / "m_0002.jpg", clip.frames[0])  # no mask/m_0002.png: a missing_alpha reject
    d646 = root / "d646" / "Train"
    for index, seed in enumerate((24, 25)):
        clip = make_synthetic_clip(seed=seed, num_frames=1, height=height, width=width, camera_pan=False)
        _save(d646 / "FG" / f"fg_{index}.png", clip.fg[0])
        _save(d646 / "GT" / f"fg_{index}.png", clip.alpha[0])
        other = make_synthetic_clip(seed=seed + 100, num_frames=1, height=height, width=width, num_objects=0,
                                    camera_pan=False)
        _save(d646 / "bg" / f"bg_{index}.jpg", other.bg[0])


def _a(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


def mulan_annotation(seed: int, height: int = 240, width: int = 360) -> tuple[np.ndarray, dict]:
    """(base image, annotation dict in the MuLAn release's structure) of a 2-object synthetic scene."""
    clip = make_synthetic_clip(seed=seed, num_frames=1, height=height, width=width, num_objects=2,
                               camera_pan=False)
    image, union = clip.frames[0], clip.alpha[0]
    pair = f"{_a(clip.labels[0])} and {_a(clip.labels[1])}"
    keep_bg = (union == 0).astype(np.uint8)
    annotation = {
        "captioning": {"llava": "synthetic", "blip2": "synthetic", "clip": "synthetic"},
        "background": {"llava": "A textured backdrop with soft stripes, nothing in front of it.",
                       "blip2": "a textured striped backdrop", "original_image_mask": keep_bg,
                       "inpainted_delta": (clip.bg[0].astype(np.int16) * (1 - keep_bg[..., None])).astype(np.int16)},
        "image": {"llava": f"{pair.capitalize()} in front of a textured backdrop.",
                  "blip2": f"{pair} on a striped backdrop"},
        "instances": {},
    }
    for k, label in enumerate(clip.labels):
        alpha = clip.object_alphas[k, 0]
        solid = (alpha == 255).astype(np.uint8)
        delta = np.where(solid[..., None] > 0, 0, clip.fg[0]).astype(np.int16) * (alpha[..., None] > 0)
        annotation["instances"][k] = {"blip2": _a(label), "llava": f"A textured {label}.",
                                      "original_image_mask": solid, "inpainted_delta": delta,
                                      "instance_alpha": alpha}
    return image, annotation


def write_mulan(root: Path, num_frames: int = 1, height: int = 240, width: int = 360) -> None:
    for image_id, seed in ((139, 31), (285, 32)):
        image, annotation = mulan_annotation(seed, height, width)
        _save(root / "coco" / "train2017" / f"{image_id:012d}.jpg", image)
        target = root / "annotations" / f"{image_id:012d}.p.zl"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(zlib.compress(pickle.dumps(annotation, protocol=4)))
    image, _ = mulan_annotation(34, height, width)
    _save(root / "coco" / "val2017" / "000000000632.jpg", image)
    (root / "annotations" / "000000000632.p.zl").write_bytes(b"\x78\x9c" + b"not a pickle" * 8)  # corrupt
    _, annotation = mulan_annotation(33, height, width)
    (root / "annotations" / "000000000724.p.zl").write_bytes(zlib.compress(pickle.dumps(annotation)))  # no image


def write_all(root: Path, num_frames: int = 20, height: int = 240, width: int = 360) -> list[Path]:
    """Write every layout under ``root`` (skips a layout whose folder exists). Returns the layout roots."""
    out = []
    for name, writer in (("videomatte", write_videomatte), ("image_matting", write_image_matting),
                         ("mulan", write_mulan)):
        target = root / name
        if not target.exists():
            tmp = root / f".{name}.tmp"
            writer(tmp, num_frames=num_frames, height=height, width=width)
            tmp.rename(target)
        out.append(target)
    return out
