"""The cluster manifests stay consistent with the repo and with what KubeRay / Ray expect."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
KUBERAY = INFRA / "kuberay"
YAMLS = sorted(INFRA.rglob("*.yaml"))


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _kind(kind: str) -> list[tuple[Path, dict]]:
    return [(p, d) for p in sorted(KUBERAY.glob("*.yaml")) for d in _docs(p) if d.get("kind") == kind]


def _cluster_specs() -> list[tuple[str, dict]]:
    specs = [(f"{p.name}:{d['metadata']['name']}", d["spec"]) for p, d in _kind("RayCluster")]
    specs += [(f"{p.name}:{d['metadata']['name']}", d["spec"]["rayClusterSpec"]) for p, d in _kind("RayJob")]
    return specs


def _requirement_name(req: str) -> str:
    return re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].lower().replace("_", "-")


def test_expected_files_exist_and_parse():
    names = {p.relative_to(INFRA).as_posix() for p in YAMLS}
    assert {"runtime_env.yaml", "ray-cluster.yaml", "kuberay/raycluster.yaml", "kuberay/rayjob-build-coarse.yaml",
            "kuberay/rayjob-train.yaml"} <= names
    for path in YAMLS:
        assert _docs(path), f"{path} is empty"
    assert (INFRA / "README.md").is_file()


def test_kuberay_api_versions():
    kinds = {}
    for path in sorted(KUBERAY.glob("*.yaml")):
        for doc in _docs(path):
            assert {"apiVersion", "kind", "metadata", "spec"} <= set(doc), path
            kinds.setdefault(doc["kind"], []).append(doc["apiVersion"])
            if doc["kind"] in ("RayCluster", "RayJob"):
                assert doc["apiVersion"] == "ray.io/v1", path
            else:
                assert doc["kind"] == "PersistentVolumeClaim" and doc["apiVersion"] == "v1", path
    assert len(kinds["RayCluster"]) == 1 and len(kinds["RayJob"]) == 2


def _entrypoint_files(entrypoint: str) -> tuple[list[str], list[str]]:
    tokens = shlex.split(entrypoint)
    scripts = [t for t in tokens if t.endswith(".py")]
    configs = [tokens[i + 1] for i, t in enumerate(tokens[:-1]) if t == "--config"]
    return scripts, configs


@pytest.mark.parametrize("name,script,config", [
    ("rayjob-build-coarse.yaml", "workflows/build_coarse.py", "configs/paper.yaml"),
    ("rayjob-train.yaml", "workflows/train.py", "configs/train/stage1.yaml"),
])
def test_rayjob_entrypoints_reference_repo_files(name, script, config):
    (doc,) = _docs(KUBERAY / name)
    spec = doc["spec"]
    scripts, configs = _entrypoint_files(spec["entrypoint"])
    assert scripts == [script] and configs == [config]
    assert spec["entrypoint"].startswith(f"python {script} --config {config}")
    for rel in scripts + configs:
        assert (ROOT / rel).is_file(), f"{name} runs {rel}, which is not in the repo"
    assert spec["shutdownAfterJobFinishes"] is True
    assert "rayClusterSpec" in spec  # shutdownAfterJobFinishes only applies to a cluster the job owns
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert runtime_env["env_vars"]["HF_HUB_OFFLINE"] == "1"
    assert runtime_env["env_vars"]["LAYERFLOW_MODEL_ROOT"] == "/models"


def test_entrypoint_overrides_are_valid_config_keys():
    """The cluster paths passed as overrides load through the real config models (typos fail here)."""
    from dataset_builder.config import load_build_config
    from layerflow_train.config import load_config

    loaders = {"workflows/build_coarse.py": load_build_config, "workflows/train.py": load_config}
    for _, doc in _kind("RayJob"):
        tokens = shlex.split(doc["spec"]["entrypoint"])
        script, config = tokens[1], tokens[tokens.index("--config") + 1]
        overrides = [t for t in tokens[tokens.index("--config") + 2:] if not t.startswith("--")]
        assert overrides and all("=" in o for o in overrides)
        cfg = loaders[script](ROOT / config, overrides)
        dumped = cfg.model_dump()
        for item in overrides:
            dotted, value = item.split("=", 1)
            node = dumped
            for part in dotted.split("."):
                node = node[part]
            assert node == yaml.safe_load(value), item


def _containers(group: dict) -> list[dict]:
    return group["template"]["spec"]["containers"]


def test_gpu_requests_consistent():
    seen_gpu_group = False
    for where, spec in _cluster_specs():
        head = spec["headGroupSpec"]
        for c in _containers(head):
            assert "nvidia.com/gpu" not in c["resources"].get("limits", {}), f"{where}: head must be CPU-only"
        assert str(head["rayStartParams"].get("num-gpus", "0")) == "0", where
        for group in spec["workerGroupSpecs"]:
            (container,) = _containers(group)
            res = container["resources"]
            req, lim = res.get("requests", {}), res.get("limits", {})
            gpus = lim.get("nvidia.com/gpu")
            assert req.get("nvidia.com/gpu") == gpus, f"{where}/{group['groupName']}: GPU requests != limits"
            declared = str(group["rayStartParams"].get("num-gpus", "0"))
            assert declared == str(gpus or 0), f"{where}/{group['groupName']}: num-gpus {declared} vs {gpus}"
            if "num-cpus" in group["rayStartParams"]:
                assert float(group["rayStartParams"]["num-cpus"]) <= float(lim["cpu"]), where
            assert req.get("cpu") == lim.get("cpu") and req.get("memory") == lim.get("memory"), where
            assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], where
            if gpus:
                seen_gpu_group = True
                tolerations = group["template"]["spec"].get("tolerations", [])
                assert any(t.get("key") == "nvidia.com/gpu" for t in tolerations), where
    assert seen_gpu_group


def test_volumes_models_and_data_mounted_everywhere():
    claims = {d["metadata"]["name"] for _, d in _kind("PersistentVolumeClaim")}
    for where, spec in _cluster_specs():
        for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
            pod = group["template"]["spec"]
            volumes = {v["name"]: v for v in pod["volumes"]}
            (container,) = pod["containers"]
            mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
            assert mounts["/models"]["readOnly"] is True, where
            assert "/data" in mounts, where
            for mount in mounts.values():
                pvc = volumes[mount["name"]].get("persistentVolumeClaim")
                if pvc:
                    assert pvc["claimName"] in claims, f"{where}: PVC {pvc['claimName']} is not defined"
            env = {e["name"]: e.get("value") for e in container["env"]}
            assert env["HF_HUB_OFFLINE"] == "1" and env["LAYERFLOW_MODEL_ROOT"] == "/models", where


def test_train_gang_matches_train_config():
    """Ray Train needs ray.num_workers GPU workers at once: the job's fixed GPU group provides them."""
    (doc,) = _docs(KUBERAY / "rayjob-train.yaml")
    _, configs = _entrypoint_files(doc["spec"]["entrypoint"])
    cfg = yaml.safe_load((ROOT / configs[0]).read_text())
    gpu_workers = sum(g["minReplicas"] * int(g["rayStartParams"]["num-gpus"])
                      for g in doc["spec"]["rayClusterSpec"]["workerGroupSpecs"])
    assert cfg["ray"]["use_gpu"] is True and gpu_workers >= cfg["ray"]["num_workers"]


def test_build_cluster_fits_the_paper_profile():
    """Every actor pool of configs/paper.yaml fits on one worker pod, and all pools at full concurrency
    fit on the build job's cluster at max scale (else Ray Data waits for GPUs that never come)."""
    from dataset_builder.config import load_build_config

    (doc,) = _docs(KUBERAY / "rayjob-build-coarse.yaml")
    _, configs = _entrypoint_files(doc["spec"]["entrypoint"])
    cfg = load_build_config(ROOT / configs[0])
    groups = doc["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    pod_gpus = max(float(g["rayStartParams"]["num-gpus"]) for g in groups)
    pod_cpus = max(float(g["rayStartParams"]["num-cpus"]) for g in groups)
    total_gpus = sum(g["maxReplicas"] * float(g["rayStartParams"]["num-gpus"]) for g in groups)
    demand = 0.0
    for name, spec in cfg.stages:
        assert spec.resources.num_gpus <= pod_gpus and spec.resources.num_cpus <= pod_cpus, name
        demand += spec.resources.num_gpus * spec.resources.concurrency
    assert demand <= total_gpus, f"stages need {demand} GPUs, the cluster scales to {total_gpus}"


def test_runtime_env_offline_and_mirrors_pyproject():
    tomllib = pytest.importorskip("tomllib")  # stdlib from Python 3.11
    env = yaml.safe_load((INFRA / "runtime_env.yaml").read_text())
    assert env["env_vars"]["HF_HUB_OFFLINE"] == "1"
    assert env["env_vars"]["LAYERFLOW_MODEL_ROOT"]
    listed = {_requirement_name(p) for p in env["pip"]["packages"]}
    assert "ray" not in listed  # never replace the cluster's Ray
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_requirement_name(r) for r in project["dependencies"]}
    for extra in ("paper", "train"):
        wanted |= {_requirement_name(r) for r in project["optional-dependencies"][extra]}
    wanted.discard("ray")
    assert wanted <= listed, f"runtime_env.yaml lacks {sorted(wanted - listed)}"
    assert {".venv/", "out/"} <= set(env["excludes"])


def test_cluster_launcher_config():
    cfg = yaml.safe_load((INFRA / "ray-cluster.yaml").read_text())
    types = cfg["available_node_types"]
    assert cfg["head_node_type"] in types
    assert types[cfg["head_node_type"]]["resources"].get("GPU", 0) == 0
    gpu_types = [n for n, t in types.items() if t["resources"].get("GPU", 0) > 0]
    assert gpu_types, "no GPU worker node type"
    for name, node in types.items():
        assert 0 <= node["min_workers"] <= node["max_workers"] <= cfg["max_workers"], name
    assert cfg["provider"]["type"] in ("aws", "gcp", "azure")
    assert any("ray start --head" in c for c in cfg["head_start_ray_commands"])


def _pyproject_requirements(extras: list[str]) -> set[str]:
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += project["optional-dependencies"][extra]
    return {_requirement_name(r) for r in reqs}


def _image_installs() -> set[str]:
    """Distributions infra/Dockerfile installs: the pyproject extras it names + the --no-deps list it runs."""
    from dataset_builder.models.requirements import NO_DEPS_REQUIREMENTS

    text = (INFRA / "Dockerfile").read_text()
    (extras,) = re.findall(r'pip install [^\n]*-e "\.\[([a-z,-]+)\]"', text)
    installed = _pyproject_requirements(extras.split(","))
    if re.search(r"pip install [^\n]*--no-deps \$\(python -m dataset_builder\.models\.requirements --no-deps\)", text):
        installed |= {_requirement_name(r) for r in NO_DEPS_REQUIREMENTS}
    return installed


def _configured_backend_needs() -> dict[str, frozenset[str]]:
    from dataset_builder.config import BuildConfig, load_yaml
    from dataset_builder.models.registry import BackendKind
    from dataset_builder.models.requirements import backend_distributions, module_distributions

    needs = {"pipeline": module_distributions("dataset_builder.pipeline")}
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        data = load_yaml(path)
        if "stages" not in data or "clip" not in data:
            continue  # derived-builder configs
        cfg = BuildConfig.model_validate(data)
        for stage, spec in cfg.stages:
            needs[f"{path.name}:{stage}={spec.name}"] = backend_distributions(BackendKind(stage), spec.name)
    return needs


def test_image_and_runtime_env_install_what_every_configured_backend_imports():
    """The propainter backend imports pytorchcv: a cluster image without it fails every inpaint actor."""
    image = _image_installs()
    env = yaml.safe_load((INFRA / "runtime_env.yaml").read_text())
    runtime = {_requirement_name(p) for p in env["pip"]["packages"]} | {"ray"}  # the cluster's own Ray
    needs = _configured_backend_needs()
    assert any("propainter" in k for k in needs) and "pytorchcv" in needs["paper.yaml:inpaint=propainter"]
    for where, dists in needs.items():
        assert dists <= image, f"infra/Dockerfile does not install {sorted(dists - image)} needed by {where}"
        assert dists <= runtime, f"infra/runtime_env.yaml lacks {sorted(dists - runtime)} needed by {where}"


def test_makefile_uses_the_shared_no_deps_list():
    text = (ROOT / "Makefile").read_text()
    assert "--no-deps $$($(PY) -m dataset_builder.models.requirements --no-deps)" in text
    assert "pytorchcv" not in text  # no second copy of the list


def test_backend_import_scan_sees_function_level_imports_and_skips_fallbacks(tmp_path, monkeypatch):
    from dataset_builder.models import requirements

    pkg = tmp_path / "dataset_builder_probe"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text(
        "import os\n"
        "def f():\n    import pytorchcv.models\n"
        "try:\n    import tflite_runtime\nexcept ImportError:\n    tflite_runtime = None\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert requirements.module_distributions("dataset_builder_probe.mod") == {"pytorchcv"}
    (pkg / "bad.py").write_text("import not_a_known_package\n")
    with pytest.raises(requirements.UnknownImportError, match="not_a_known_package"):
        requirements.module_distributions("dataset_builder_probe.bad")
