"""The per-layer caption questions shared by the VLM captioners.

LayerFlow conditions each sub-clip on its own caption: the foreground layer describes only the
object (shown alone on a flat background), the background layer only the scene with the object
removed (the inpainted layer), and the blended layer the whole original clip.
"""

from __future__ import annotations

PROMPTS = {
    "fg": "These frames show a {label} alone on a plain background. Describe the {label}, its appearance "
          "and its motion in one or two sentences. Do not describe the background.",
    "bg": "These frames show a scene. Describe the scene, the environment and any camera motion in one or "
          "two sentences.",
    "blend": "These frames show a video with a {label}. Describe the whole video, the {label}, what it does "
             "and the scene, in two or three sentences. Scene tags: {tags}.",
}


def layer_prompts(label: str, tags: list[str], overrides: dict[str, str] | None = None) -> dict[str, str]:
    """The three questions, with the label and (for the blend) the scene tags filled in."""
    templates = {**PROMPTS, **(overrides or {})}
    tag_text = ", ".join(tags) if tags else "none"
    return {layer: templates[layer].format(label=label, tags=tag_text) for layer in ("fg", "bg", "blend")}
