"""Model revisions and library versions of the configured backends.

Backend names alone do not pin what produced a sample: a re-converted checkpoint in the same directory,
or a transformers upgrade (5.3 changed how Qwen2.5-VL builds its positions), changes outputs under the
same name. :func:`stage_revisions` fingerprints each stage's model directory and the versions of every
distribution its backend imports (read from the code by ``models.requirements``);
``BuildConfig.processing_hash`` folds them in, so such a change gives new clip ids instead of mixing
outputs under old ones, and each sample's provenance records them (``revisions``).

CPU backends that read files of :mod:`dataset_builder.models.cpu.zoo` (``cpu_model_files`` on the
class: names, or a function of the options to them) record those files (``cpu_models=``: present or
missing decides between a model and its fallback), and those whose outputs differ with the CPU's bf16
support (``cpu_bf16_sensitive``: U^2-Net runs bf16 only where the CPU has it) record that
(``cpu_bf16=yes|no``), and the optional runtimes a fallback chooses between (``optional_distributions``:
OpenVINO or onnxruntime), so such workers do not mix outputs under one clip id.

Weight files are fingerprinted cheaply and still content-based: size, the safetensors header (names,
dtypes, shapes, offsets) and the first and last MiB; small files (configs, tokenizers, processors) are
hashed whole. Results are cached per (path, size, mtime).
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from dataset_builder.config import BackendSpec

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt", ".onnx", ".tflite")
SMALL_FILE_BYTES = 16 << 20
EDGE_BYTES = 1 << 20


def _weight_digest(path: Path, size: int, h) -> None:
    with open(path, "rb") as fh:
        if path.suffix == ".safetensors" and size >= 8:
            header_len = int.from_bytes(fh.read(8), "little")
            h.update(fh.read(min(header_len, SMALL_FILE_BYTES)))
            fh.seek(0)
        h.update(fh.read(EDGE_BYTES))
        if size > 2 * EDGE_BYTES:
            fh.seek(size - EDGE_BYTES)
            h.update(fh.read(EDGE_BYTES))


@lru_cache(maxsize=4096)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    p = Path(path)
    h = hashlib.sha1(str(size).encode())
    if p.suffix in WEIGHT_SUFFIXES or size > SMALL_FILE_BYTES:
        _weight_digest(p, size, h)
    else:
        h.update(p.read_bytes())
    return h.hexdigest()


def model_fingerprint(path: str | os.PathLike) -> str:
    """Content fingerprint (12 hex) of a model directory or file; ``"missing"`` if it does not exist."""
    root = Path(path)
    if not root.exists():
        return "missing"
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    h = hashlib.sha1()
    for file in files:
        if any(part.startswith(".") for part in file.relative_to(root).parts) and file != root:
            continue  # .cache/, .git/ ... are not part of the model
        st = file.stat()
        rel = file.name if file == root else file.relative_to(root).as_posix()
        h.update(f"{rel}\0{_file_digest(str(file), st.st_size, st.st_mtime_ns)}\0".encode())
    return h.hexdigest()[:12]


@lru_cache(maxsize=256)
def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


def library_versions(distributions: frozenset[str] | set[str]) -> dict[str, str]:
    return {dist: _version(dist) for dist in sorted(distributions)}


def backend_revision(kind: str, spec: BackendSpec, model_root: str | None = None) -> str:
    """``"model=<fingerprint> numpy=2.1.0 ... torch=2.13.0 transformers=5.24.0"``: the model part only for
    backends with a model directory (explicit, or the class's ``default_subdir``)."""
    from dataset_builder.models.requirements import backend_distributions

    parts = []
    cls = _factory_class(kind, spec.name)
    path = spec.resolved_model_dir(model_root)
    if path is None:
        default = getattr(cls, "default_subdir", None)
        if default is not None:
            path = spec.model_copy(update={"model_dir": default}).resolved_model_dir(model_root)
    if path is not None:
        parts.append(f"model={model_fingerprint(path)}")
    names = getattr(cls, "cpu_model_files", ())
    if callable(names):  # files that depend on the options (which person model)
        names = names(spec.options)
    if names:
        parts.append(f"cpu_models={cpu_models_fingerprint(names, spec.options.get('model_dir'))}")
    if getattr(cls, "cpu_bf16_sensitive", False):
        parts.append(f"cpu_bf16={'yes' if cpu_has_bf16() else 'no'}")
    # data files that change outputs (vocabulary, thresholds), the backend's shipped defaults included
    defaults = getattr(cls, "default_option_paths", {})
    for key, value in sorted({**defaults, **spec.options}.items()):
        if key.endswith("_path") and isinstance(value, str) and Path(value).is_file():
            parts.append(f"{key}={model_fingerprint(value)}")
    # optional runtimes behind ImportError fallbacks (not install requirements, still what ran)
    optional = set(getattr(cls, "optional_distributions", ()))
    versions = library_versions(frozenset(backend_distributions(kind, spec.name)) | optional)
    parts += [f"{name}={version}" for name, version in versions.items()]
    return " ".join(parts)


def cpu_models_fingerprint(names, model_dir: str | None = None) -> str:
    """Fingerprint (12 hex) of the CPU model files ``names`` in ``model_dir`` (default: the zoo's);
    a missing file counts as missing, so a worker on the fallback path gets another revision."""
    from dataset_builder.models.cpu.zoo import default_model_dir

    root = Path(model_dir) if model_dir else default_model_dir()
    h = hashlib.sha1()
    for name in sorted(names):
        h.update(f"{name}\0{model_fingerprint(root / name)}\0".encode())
    return h.hexdigest()[:12]


@lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """Whether this CPU has bf16 instructions (AVX512-BF16 or AMX), read from /proc/cpuinfo (Linux)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    words = set(flags.split())
    return "avx512_bf16" in words or "amx_bf16" in words


def _factory_class(kind: str, name: str):
    """The backend class without importing heavy dependencies (modules import torch lazily)."""
    from dataset_builder.models.registry import resolve_factory

    try:
        return resolve_factory(kind, name)
    except (ImportError, KeyError):
        return None


def stage_revisions(stages, model_root: str | None = None) -> dict[str, str]:
    """``{stage: revision}`` for a :class:`~dataset_builder.config.StagesConfig`."""
    return {name: backend_revision(name, spec, model_root) for name, spec in stages}
