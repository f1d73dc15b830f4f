"""Single-image object removal with a diffusers inpainting pipeline (backend ``diffusers_inpaint``), the
paper profile's "image matting datasets post-processed by image inpainting".

Any diffusers inpainting checkpoint in a local directory works (Stable Diffusion 1.5/2 inpainting,
SDXL inpainting...): ``AutoPipelineForInpainting.from_pretrained(dir, local_files_only=True)``, never a
download. The subject's matte (grown by ``dilate``) is the mask; the prompt asks for the empty scene.
Only hole pixels are taken from the model's output (its VAE round trip would otherwise soften the
whole image); a short feather hides the seam. Frames are filled one by one (static image data).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from dataset_builder.config import BackendSpec, Resources
from dataset_builder.models.cpu._common import Options, parse_options
from dataset_builder.models.hf import loading


class DiffusersInpaintOptions(Options):
    prompt: str = "empty background scene, nothing in front, photorealistic"
    negative_prompt: str = "person, animal, object, text, watermark, blurry"
    steps: int = Field(30, ge=1)
    guidance_scale: float = Field(7.5, ge=0)
    #: Hole = matte (> 0) grown by this many px (soft edges, halo, contact shadow).
    dilate: int = Field(8, ge=0)
    #: Longer side the pipeline runs at (rounded to a multiple of 8); the fill is resized back.
    max_side: int = Field(768, ge=64)
    seed: int = 0
    #: Width in px of the fade from the input into the fill.
    seam: int = Field(3, ge=0)


class DiffusersImageInpainter:
    default_resources = Resources(num_cpus=1, num_gpus=1, batch_size=1, concurrency=1)

    def __init__(self, spec: BackendSpec):
        import torch
        from diffusers import AutoPipelineForInpainting

        self.options = parse_options(DiffusersInpaintOptions, spec, "inpaint/diffusers_inpaint")
        path = loading.resolve_model_dir(spec, "stable-diffusion-2-inpainting", required=("model_index.json",))
        self.device = loading.select_device(spec)
        self.dtype = loading.select_dtype(spec, self.device)
        loading.enforce_offline()
        self.pipe = AutoPipelineForInpainting.from_pretrained(str(path), local_files_only=True, dtype=self.dtype)
        self.pipe.to(self.device)
        self.pipe.set_progress_bar_config(disable=True)
        self._torch = torch

    def _size(self, h: int, w: int) -> tuple[int, int]:
        scale = min(1.0, self.options.max_side / max(h, w))
        return max(8, round(h * scale / 8) * 8), max(8, round(w * scale / 8) * 8)

    def inpaint(self, frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
        import cv2
        from PIL import Image

        o = self.options
        if frames.shape[:3] != masks.shape:
            raise ValueError(f"frames {frames.shape} and masks {masks.shape} disagree")
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * o.dilate + 1, 2 * o.dilate + 1))
        out = []
        for frame, mask in zip(frames, masks):
            hole = cv2.dilate((mask > 0).astype(np.uint8), kernel) > 0
            if not hole.any():
                out.append(frame.copy())
                continue
            h, w = hole.shape
            ph, pw = self._size(h, w)
            image = Image.fromarray(cv2.resize(frame, (pw, ph), interpolation=cv2.INTER_AREA))
            mask_image = Image.fromarray(cv2.resize(hole.astype(np.uint8) * 255, (pw, ph),
                                                    interpolation=cv2.INTER_NEAREST))
            generator = self._torch.Generator(device="cpu").manual_seed(o.seed)
            with self._torch.inference_mode():
                result = self.pipe(prompt=o.prompt, negative_prompt=o.negative_prompt, image=image,
                                   mask_image=mask_image, height=ph, width=pw, num_inference_steps=o.steps,
                                   guidance_scale=o.guidance_scale, generator=generator, output_type="np").images[0]
            fill = cv2.resize(np.clip(np.rint(result * 255), 0, 255).astype(np.uint8), (w, h),
                              interpolation=cv2.INTER_LINEAR)
            weight = np.ones((h, w), np.float32)
            if o.seam > 0:
                dist = cv2.distanceTransform(hole.astype(np.uint8), cv2.DIST_L2, 3)
                weight = np.clip(dist / (o.seam + 1), 0, 1)
            weight = (weight * hole)[..., None]
            out.append(np.clip(np.rint(fill * weight + frame * (1 - weight)), 0, 255).astype(np.uint8))
        return np.stack(out)
