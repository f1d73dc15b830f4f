"""What each backend imports, and what the cluster image / runtime env must therefore install.

One source of truth for the install side: ``pyproject.toml`` extras (pip-resolved) plus
:data:`NO_DEPS_REQUIREMENTS`, packages installed with ``--no-deps`` because their metadata would drag
in something we must not install (pytorchcv pins torchvision, which has no wheel for every torch
build and replaces the CUDA torch of a GPU image when resolved). The Makefile and ``infra/Dockerfile``
run ``python -m dataset_builder.models.requirements --no-deps`` to get that list; ``infra/runtime_env.yaml``
lists it too (checked by tests/infra).

The import side is read from the code, not declared: :func:`backend_distributions` walks the AST of a
backend's module and of every ``dataset_builder`` module it imports (function-level imports included,
``try: ... except ImportError`` fallbacks excluded) and maps top-level modules to distributions. A backend
that starts importing a new package therefore fails tests/infra until the image installs it.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import sys
from functools import cache
from pathlib import Path

from dataset_builder.models.registry import BackendKind, registry_target

#: Installed with ``pip install --no-deps`` everywhere (Makefile, Dockerfile, runtime env).
NO_DEPS_REQUIREMENTS = ("pytorchcv==0.0.74",)

#: Import name -> distribution name, for every third-party module the package imports.
DISTRIBUTIONS = {
    "numpy": "numpy", "cv2": "opencv-python-headless", "av": "av", "pyarrow": "pyarrow", "ray": "ray",
    "webdataset": "webdataset", "pydantic": "pydantic", "yaml": "pyyaml", "PIL": "pillow", "scipy": "scipy",
    "pymatting": "pymatting", "torch": "torch", "transformers": "transformers", "safetensors": "safetensors",
    "accelerate": "accelerate", "sentencepiece": "sentencepiece", "tokenizers": "tokenizers",
    "pytorchcv": "pytorchcv", "diffusers": "diffusers", "peft": "peft", "skvideo": "scikit-video",
    "ai_edge_litert": "ai-edge-litert", "tflite_runtime": "tflite-runtime", "fsspec": "fsspec",
    "s3fs": "s3fs", "werkzeug": "werkzeug",
}

ROOT_PACKAGES = ("dataset_builder", "schemas")


class UnknownImportError(LookupError):
    """A module imports a third-party package missing from :data:`DISTRIBUTIONS`."""


def requirement_name(req: str) -> str:
    """``"opencv-python-headless>=4.9,<5"`` -> ``"opencv-python-headless"`` (normalised)."""
    for sep in "<>=!~[; ":
        req = req.split(sep, 1)[0]
    return req.strip().lower().replace("_", "-")


@cache
def _package_dir(top: str) -> Path | None:
    spec = importlib.util.find_spec(top)
    return Path(spec.origin).parent if spec is not None and spec.origin else None


def _module_file(name: str) -> Path | None:
    """Source file of a module, located without importing it (importing would defeat the lazy imports)."""
    top, *rest = name.split(".")
    base = _package_dir(top)
    if base is None:
        return None
    target = base.joinpath(*rest)
    for candidate in (target / "__init__.py", target.with_suffix(".py")):
        if rest and candidate.is_file() or not rest and candidate.name == "__init__.py" and candidate.is_file():
            return candidate
    return None


def _is_import_guard(handler: ast.ExceptHandler) -> bool:
    names = []
    if isinstance(handler.type, ast.Name):
        names = [handler.type.id]
    elif isinstance(handler.type, ast.Tuple):
        names = [e.id for e in handler.type.elts if isinstance(e, ast.Name)]
    return bool({"ImportError", "ModuleNotFoundError"} & set(names))


def _imports(tree: ast.AST, package: str) -> list[tuple[str, list[str]]]:
    """(module, imported names) of every non-optional import in ``tree`` (relative imports resolved)."""
    found: list[tuple[str, list[str]]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Try) and any(_is_import_guard(h) for h in node.handlers):
            for child in node.orelse + node.finalbody:
                visit(child)
            return  # imports in the try body are optional fallbacks
        if isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{module}" if module else base
            found.append((module, [alias.name for alias in node.names]))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


@cache
def module_distributions(module: str) -> frozenset[str]:
    """Distributions needed to import and run ``module`` (a ``dataset_builder``/``schemas`` module)."""
    seen: set[str] = set()
    dists: set[str] = set()
    stack = [module]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _module_file(name)
        if path is None:
            continue
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for imported, names in _imports(ast.parse(path.read_text()), package):
            top = imported.split(".")[0]
            if top in ROOT_PACKAGES:
                stack.append(imported)
                stack += [f"{imported}.{n}" for n in names if _module_file(f"{imported}.{n}") is not None]
            elif top and top != "__future__" and top not in sys.stdlib_module_names:
                if top not in DISTRIBUTIONS:
                    raise UnknownImportError(f"{name} imports {top!r}: add it to requirements.DISTRIBUTIONS")
                dists.add(DISTRIBUTIONS[top])
    return frozenset(dists)


def backend_distributions(kind: BackendKind | str, name: str) -> frozenset[str]:
    """Distributions the registered backend ``(kind, name)`` imports (its module and what it uses)."""
    target = registry_target(kind, name)
    if not isinstance(target, str):
        return frozenset()
    return module_distributions(target.partition(":")[0])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-deps", action="store_true", help="print the packages installed with --no-deps")
    args = parser.parse_args(argv)
    if args.no_deps:
        print(" ".join(NO_DEPS_REQUIREMENTS))


if __name__ == "__main__":
    main()
