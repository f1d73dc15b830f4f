"""Fit the SigLIP tagger's per-tag thresholds on a labelled image set (RAM-style calibration).

    python workflows/calibrate_tagger.py --model-dir $LAYERFLOW_MODEL_ROOT/siglip-so400m-patch14-384 \\
        --labels labels.jsonl [--images-root DIR] [--precision 0.8] [--min-positives 5] --out thresholds.json

``--labels``: JSON lines ``{"image": "<path>", "tags": ["dog", "grass"]}`` (every tag an image shows;
vocabulary tags it does not list count as absent), or Recognize Anything's benchmark annotations
(``<image id>,<tag>,<tag>...`` lines, e.g. ``datasets/openimages_common_214/openimages_common_214_ram_annots.txt``;
images at ``<images-root>/<image id>.jpg``). Each image is scored like a one-frame clip; each tag gets the
lowest threshold at which its precision on the set reaches ``--precision`` (tags with fewer positives than
``--min-positives``, or never that precise, keep the backend's global threshold). The file records the model
fingerprint and prompt template (``--prompt``, as the tag stage's ``options.prompt``) it was fitted with; the
tagger refuses it for another model or template. Use it with
``stages.tag.options.thresholds_path=thresholds.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable as a script from a checkout

import numpy as np  # noqa: E402
from workflows._cli import run_cli  # noqa: E402

from dataset_builder.config import BackendSpec  # noqa: E402


def read_labels(path: Path, images_root: Path | None) -> list[tuple[Path, set[str]]]:
    """(image path, its tags) per labelled image, from JSON lines or RAM's ``id,tag,...`` annotations."""
    root = images_root or path.parent
    out = []
    for lineno, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("{"):
            item = json.loads(line)
            image, tags = Path(item["image"]), item.get("tags", [])
        else:
            image_id, *tags = line.split(",")
            image = Path(image_id if Path(image_id).suffix else image_id + ".jpg")
        if not isinstance(tags, list):
            raise ValueError(f"{path}:{lineno}: 'tags' must be a list")
        out.append((image if image.is_absolute() else root / image, {str(t).strip() for t in tags if str(t).strip()}))
    if not out:
        raise ValueError(f"{path}: no labelled images")
    return out


def load_rgb(path: Path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path}: not a readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def calibrate(tagger, items: list[tuple[Path, set[str]]], precision: float, min_positives: int) -> dict:
    """Score every image, fit the thresholds; the thresholds file's content."""
    from dataset_builder.models.hf.siglip_tagger import calibrate_thresholds

    labels = [entry.label for entry in tagger.vocab]
    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted({t for _, tags in items for t in tags} - set(index))
    probs = np.stack([tagger.probabilities(load_rgb(path)[None]) for path, _ in items])
    truth = np.zeros(probs.shape, bool)
    for row, (_, tags) in enumerate(items):
        truth[row, [index[t] for t in tags if t in index]] = True
    fitted = calibrate_thresholds(probs, truth, precision, default=np.nan, min_positives=min_positives)
    # Each threshold is the score of the lowest-ranked image it must keep, and the tagger keeps scores >= it:
    # store that float32 value exactly (JSON's repr round-trips it). Rounding it (to 6 decimals, say) moves it
    # above that image's score half the time, so the tagger drops the very image the threshold was fitted on.
    kept = {labels[v]: float(t) for v, t in enumerate(fitted) if not np.isnan(t)}
    return {"model_fingerprint": tagger.fingerprint, "prompt": tagger.template,
            "target_precision": precision, "min_positives": min_positives,
            "images": len(items), "thresholds": kept,
            "positives": {label: int(truth[:, index[label]].sum()) for label in kept},
            "unknown_tags": unknown}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--labels", required=True, type=Path)
    parser.add_argument("--images-root", type=Path, default=None)
    parser.add_argument("--precision", type=float, default=0.8)
    parser.add_argument("--min-positives", type=int, default=5)
    parser.add_argument("--vocab-path", default=None, help="vocabulary file (default: the shipped RAM vocabulary)")
    parser.add_argument("--prompt", default=None,
                        help="prompt template, as the tag stage's options.prompt (default 'a photo of a {}.')")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not 0 < args.precision <= 1:
        raise ValueError(f"--precision must be in (0, 1], got {args.precision}")
    if args.out.resolve().is_relative_to(Path(args.model_dir).resolve()):
        raise ValueError(f"--out {args.out}: write the thresholds file outside the model dir (e.g. beside it); "
                         "inside, it changes the model fingerprint it records and the tagger refuses it")
    from dataset_builder.models.hf.siglip_tagger import SiglipTagger

    options = {"vocab_path": args.vocab_path} if args.vocab_path else {}
    if args.prompt:
        options["prompt"] = args.prompt
    tagger = SiglipTagger(BackendSpec(name="siglip", model_dir=args.model_dir, device=args.device, options=options))
    result = calibrate(tagger, read_labels(args.labels, args.images_root), args.precision, args.min_positives)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"{args.out}: thresholds for {len(result['thresholds'])} of {len(tagger.vocab)} tags from "
          f"{result['images']} images ({len(result['unknown_tags'])} labelled tags not in the vocabulary)",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_cli(main)
