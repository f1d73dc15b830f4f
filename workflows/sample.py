"""Generate a layered video (fg RGBA, bg, blend) with a trained LayerFlow model.

    python workflows/sample.py --config configs/train/stage3.yaml --fg "a dog" --bg "a park" \
        --blend "a dog running in a park" --out out/sample
    # conditional (model trained with conditioning: bg): generate fg + alpha + blend for your background
    python workflows/sample.py --config configs/train/cond_bg_stage1.yaml --condition-video my_bg.mp4 ...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from layerflow_train.config import CONDITION_LAYERS, load_config
from workflows._cli import run_cli


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="a training config (model + lora + data size)")
    p.add_argument("--fg", required=True)
    p.add_argument("--bg", required=True)
    p.add_argument("--blend", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--guidance", type=float, default=6.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fps", type=float, default=8.0)
    p.add_argument("--condition-video", help="user video for the condition sub-clip (fg, bg or blend)")
    p.add_argument("--condition-alpha", help="fg-conditioned: the fg's alpha video (gray)")
    p.add_argument("overrides", nargs="*", help="dotted key=value config overrides")
    args = p.parse_args(argv)

    from dataset_builder.io.video import decode_frames
    from layerflow_train.sample import LayerFlowSampler, SampleSettings, write_outputs

    cfg = load_config(args.config, args.overrides)
    final = Path(cfg.checkpoint.output_dir) / "final"
    lora = cfg.lora
    model = cfg.model
    if cfg.stage == 3 and not lora.content_weights:
        lora = lora.model_copy(update={"content_weights": str(final / "content_lora.safetensors")})
        if (final / "layer_embedder.safetensors").is_file():  # the LoRA stages train it further
            model = model.model_copy(update={"layer_embedder_path": str(final / "layer_embedder.safetensors")})
    if cfg.stage == 1 and not model.transformer_dir:  # the stage-1 export, not the untrained base model
        if not (final / "transformer").is_dir():
            raise FileNotFoundError(f"no stage-1 export at {final / 'transformer'}: train this config first, or "
                                    "set model.transformer_dir=... (and model.layer_embedder_path=...)")
        model = model.model_copy(update={"transformer_dir": str(final / "transformer"),
                                         "layer_embedder_path": model.layer_embedder_path
                                         or str(final / "layer_embedder.safetensors")})
    condition = {}
    needed = CONDITION_LAYERS[cfg.conditioning]
    if needed:
        if not args.condition_video:
            p.error(f"conditioning={cfg.conditioning} needs --condition-video")
        frames, _ = decode_frames(args.condition_video)
        condition[needed[0]] = frames
        if "alpha" in needed:
            if not args.condition_alpha:
                p.error("fg conditioning needs --condition-alpha")
            condition["alpha"] = decode_frames(args.condition_alpha)[0].mean(-1).astype("uint8")
    sampler = LayerFlowSampler(model, lora)
    d = cfg.data
    settings = SampleSettings(d.frames_per_layer, d.height, d.width, args.steps, args.guidance, args.seed,
                              cfg.conditioning)
    result = sampler.generate({"fg": args.fg, "bg": args.bg, "blend": args.blend}, settings, condition)
    for name, path in write_outputs(result, args.out, args.fps).items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    run_cli(main)
