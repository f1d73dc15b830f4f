"""Fetch the weights-bundled CPU models: MediaPipe's selfie segmentation TFLite files (Apache-2.0).

    .venv/bin/python workflows/fetch_cpu_models.py [--dest DIR] [--force]

The models ship inside PyPI's ``mediapipe`` wheel. We cannot depend on mediapipe itself (it pins
numpy<2, jax, opencv-contrib), so the wheel is fetched with ``pip download --no-deps`` from the
package registry (like our sample clips) and only the ``.tflite`` files are extracted, plus a NOTICE
with their licence. Default destination: ``$LAYERFLOW_CPU_MODELS`` or ``~/.cache/layerflow/cpu_models``.
Idempotent: nothing is downloaded when all files are present.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from dataset_builder.ops.person import SELFIE_MODELS, default_model_dir

PACKAGE = "mediapipe"
VERSION = "0.10.21"
PLATFORM = "manylinux_2_28_x86_64"
MEMBER_DIR = "mediapipe/modules/selfie_segmentation/"
NOTICE = (
    f"selfie_segmentation*.tflite: extracted from the PyPI wheel {PACKAGE}=={VERSION} "
    f"({MEMBER_DIR}), Copyright Google LLC, Apache License 2.0 "
    "(https://www.apache.org/licenses/LICENSE-2.0). Model card: "
    "https://developers.google.com/mediapipe/solutions/vision/image_segmenter\n"
)


def download_wheel(tmp: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", f"{PACKAGE}=={VERSION}", "--only-binary=:all:",
           "--python-version", "3.11", "--platform", PLATFORM, "-d", str(tmp), "--quiet"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SystemExit(f"could not run pip to fetch {PACKAGE}=={VERSION}: {exc}") from exc
    wheels = sorted(tmp.glob(f"{PACKAGE}-{VERSION}-*.whl"))
    if proc.returncode != 0 or not wheels:
        raise SystemExit(
            f"pip could not download {PACKAGE}=={VERSION} ({PLATFORM}); is the package registry reachable?\n"
            f"$ {' '.join(cmd)}\n{proc.stderr.strip()[-2000:]}"
        )
    return wheels[0]


def extract(wheel: Path, dest: Path) -> list[Path]:
    """Copy only the selfie-segmentation .tflite files out of the wheel (atomically per file)."""
    out = []
    with zipfile.ZipFile(wheel) as zf:
        for name in SELFIE_MODELS.values():
            data = zf.read(MEMBER_DIR + name)
            target = dest / name
            part = target.with_suffix(".part")
            part.write_bytes(data)
            part.replace(target)
            out.append(target)
    return out


def fetch(dest: Path, force: bool = False) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    targets = [dest / name for name in SELFIE_MODELS.values()]
    if not force and all(p.is_file() and p.stat().st_size > 0 for p in targets):
        return targets
    tmp = Path(tempfile.mkdtemp(prefix="layerflow-mediapipe-"))
    try:
        paths = extract(download_wheel(tmp), dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    (dest / "NOTICE").write_text(NOTICE)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dest", type=Path, default=None, help="default: $LAYERFLOW_CPU_MODELS or ~/.cache/...")
    ap.add_argument("--force", action="store_true", help="re-download even if the files exist")
    args = ap.parse_args()
    dest = args.dest or default_model_dir()
    for p in fetch(dest, args.force):
        digest = hashlib.sha256(p.read_bytes()).hexdigest()[:16]
        print(f"{p}  {p.stat().st_size} bytes  sha256:{digest}")


if __name__ == "__main__":
    main()
