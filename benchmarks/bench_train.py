"""Training benchmark -> benchmarks/results/train.json.

1. Step time and peak RSS on CPU for the tiny random model, training from video shards (decode + VAE +
   T5 every step) vs from the precompute job's Parquet (``data.precomputed_dir``). Each variant runs in
   its own process (peak RSS = VmHWM of that process), variants alternate, ``--repeats`` times;
   medians reported.
2. The meta-device memory estimate (``layerflow_train.memory``) of every full-size stage config
   (CogVideoX-2B + T5-XXL reference configs), on 8 GPUs, DDP vs FSDP and with/without precompute.

    python benchmarks/bench_train.py [--repeats 3 --steps 8]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
H, W = 64, 96


def tiny_config(data_root: Path, model_dir: Path, out: Path, precomputed: Path | None, steps: int):
    from layerflow_train.config import TrainConfig

    return TrainConfig.model_validate({
        "stage": 1, "log_every": 1000,
        "model": {"model_dir": str(model_dir), "text_len_per_layer": 16, "gradient_checkpointing": False},
        "data": {"shards": [str(data_root / k) for k in ("coarse", "copypaste", "static")], "frames_per_layer": 8,
                 "height": H, "width": W, "precomputed_dir": str(precomputed) if precomputed else None,
                 "precompute_dtype": "float32"},
        "trainable": {"every_n_blocks": 1, "block_offset": 0},
        "optim": {"max_steps": steps, "mixed_precision": "no"},
        "checkpoint": {"output_dir": str(out), "every_n_steps": 10_000, "resume": False},
        "tracking": {"tensorboard": False},
    })


def child(args) -> None:
    """One measured training run (own process)."""
    import torch

    from layerflow_train.config import TrainConfig
    from layerflow_train.recipes import Stage1
    from layerflow_train.trainer import Trainer

    torch.set_num_threads(1)
    cfg = TrainConfig.model_validate_json(Path(args.child).read_text())
    trainer = Trainer(cfg, Stage1())
    times = []
    for _ in range(cfg.optim.max_steps):
        t0 = time.perf_counter()
        trainer.train_step()
        times.append(time.perf_counter() - t0)
    # VmHWM, not ru_maxrss: the latter survives fork+exec and would report the parent's peak
    hwm = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM"))
    print(json.dumps({"step_s_median": statistics.median(times[1:]), "peak_rss_mib": int(hwm.split()[1]) / 1024}))


def measure(cfg_path: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, __file__, "--child", str(cfg_path)], capture_output=True, text=True,
                         env=env, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def estimates() -> dict:
    from layerflow_train.config import load_config
    from layerflow_train.memory import estimate_for_config

    out = {}
    for name in ("stage1", "stage2", "stage3"):
        cfg = load_config(ROOT / "configs" / "train" / f"{name}.yaml")
        no_val = cfg.validation.model_copy(update={"every_n_steps": 0})
        variants = {"ddp": cfg,
                    "ddp_precomputed": cfg.model_copy(update={
                        "data": cfg.data.model_copy(update={"precomputed_dir": "x"}), "validation": no_val})}
        if name == "stage1":
            full = cfg.model_copy(update={"trainable": cfg.trainable.model_copy(
                update={"every_n_blocks": 1, "block_offset": 0})})
            variants["all_blocks_ddp"] = full
            variants["all_blocks_fsdp"] = full.model_copy(update={"distributed": "fsdp", "validation": no_val})
        out[name] = {k: estimate_for_config(v, world_size=8, full_size=True).as_dict() for k, v in variants.items()}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--child")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "train.json"))
    args = p.parse_args()
    if args.child:
        return child(args)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from layerflow_train.config import TinyModelConfig
    from layerflow_train.models.tiny import build_tiny_model_dir
    from layerflow_train.precompute import precompute
    from tests.layerflow_train.conftest import build_layered_data

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = build_layered_data(tmp / "data")
        data_root = tmp / "data"
        model_dir = build_tiny_model_dir(tmp / "model", TinyModelConfig(), text_len=16)
        pre = tmp / "pre"
        cfg_pre = tiny_config(data_root, model_dir, tmp / "o", pre, args.steps)
        t0 = time.perf_counter()
        precompute(cfg_pre, use_ray=False)
        precompute_s = time.perf_counter() - t0
        paths = {}
        for name, cfg in (("video", tiny_config(data_root, model_dir, tmp / "o", None, args.steps)),
                          ("precomputed", cfg_pre)):
            paths[name] = tmp / f"{name}.json"
            paths[name].write_text(cfg.model_dump_json())
        runs = {k: [] for k in paths}
        for _ in range(args.repeats):
            for name, path in paths.items():
                runs[name].append(measure(path))
        del data
    tiny = {name: {"step_s_median": statistics.median(r["step_s_median"] for r in rs),
                   "peak_rss_mib_median": statistics.median(r["peak_rss_mib"] for r in rs), "runs": rs}
            for name, rs in runs.items()}
    tiny["speedup_step"] = tiny["video"]["step_s_median"] / tiny["precomputed"]["step_s_median"]
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "command": "python benchmarks/bench_train.py " + f"--repeats {args.repeats} --steps {args.steps}",
        "tiny_cpu": {"resolution": [H, W], "frames_per_layer": 8, "steps": args.steps, "repeats": args.repeats,
                     "precompute_job_s": precompute_s, **tiny},
        "full_size_memory_estimate_gib_per_gpu_8_gpus": estimates(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result["tiny_cpu"].items() if k not in ("video", "precomputed")}, indent=1))
    for stage, variants in result["full_size_memory_estimate_gib_per_gpu_8_gpus"].items():
        for name, est in variants.items():
            print(f"{stage:7s} {name:16s} trainable {est['trainable_params'] / 1e6:8.1f} M  "
                  f"{est['gib_total']:6.1f} GiB/GPU before activations")


if __name__ == "__main__":
    main()
