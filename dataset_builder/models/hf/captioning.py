"""The per-layer caption questions shared by the VLM captioners.

LayerFlow conditions each sub-clip on its own caption: the foreground layer describes only the
object (shown alone on a flat background), the background layer only the scene with the object
removed (the inpainted layer), and the blended layer the whole original clip.
"""

from __future__ import annotations

from dataset_builder.models.base import is_placeholder

PROMPTS = {
    "fg": "These frames show {a_label} alone on a plain background. Describe the {label}, its appearance "
          "and its motion in one or two sentences. Do not describe the background.",
    "bg": "These frames show a scene. Describe the scene, the environment and any camera motion in one or "
          "two sentences.",
    "blend": "These frames show a video with {a_label}. Describe the whole video, the {label}, what it does "
             "and the scene, in two or three sentences. Scene tags: {tags}.",
}

#: Placeholder labels (models.base.is_placeholder) are never put into a question: the model is asked
#: about "the object" and names it itself.
NEUTRAL_LABEL = "object"


def with_article(label: str) -> str:
    return f"{'an' if label[:1].lower() in 'aeiou' else 'a'} {label}"


def layer_prompts(label: str, tags: list[str], overrides: dict[str, str] | None = None) -> dict[str, str]:
    """The three questions, with the label and (for the blend) the scene tags filled in."""
    templates = {**PROMPTS, **(overrides or {})}
    label = NEUTRAL_LABEL if is_placeholder(label) else label
    tag_text = ", ".join(t for t in tags if not is_placeholder(t)) or "none"
    return {layer: templates[layer].format(label=label, a_label=with_article(label), tags=tag_text)
            for layer in ("fg", "bg", "blend")}
