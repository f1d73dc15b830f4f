"""Stage ``layer_qa``: fg colour in the soft band, QA scores, and the precision-first gate.

Runs after inpainting for every profile. Per object: alpha in the edge band is re-estimated against the
now known clean bg (difference matting, ``ops.alpha.rematte_with_background``), the fg layer's band
pixels get the object's colour
(un-mixed against this object's inpainted bg, see ``ops.alpha.estimate_foreground``), the QA scores of
``ops.qa`` go into the object's scores (sample json + manifest), and an object failing a configured
bound becomes a reject naming the score (``qa_bg_remnant``, ...) instead of a sample.
"""

from __future__ import annotations

import numpy as np

from dataset_builder.config import PostprocessConfig, QAConfig
from dataset_builder.ops.alpha import finish_layers, rematte_with_background
from dataset_builder.ops.qa import gate, qa_scores
from dataset_builder.stages.base import ClipStage, ClipState, empty_backgrounds, keep_objects


class LayerQAStage(ClipStage):
    stage = "layer_qa"

    def __init__(self, postprocess: PostprocessConfig | dict | None = None, qa: QAConfig | dict | None = None):
        self.post = PostprocessConfig.model_validate(postprocess or {})
        self.qa = QAConfig.model_validate(qa or {})

    def prepare(self, row: dict) -> None:
        row.setdefault("foregrounds", empty_backgrounds())

    def process(self, state: ClipState, row: dict) -> None:
        frames, masks, backgrounds = row["frames"], row["masks"], row["backgrounds"]
        limits = self.qa.limits() if self.qa.gate else {}
        fgs, keep = [], []
        for i, obj in enumerate(state.objects):
            if self.post.rematte:
                masks[i] = np.stack([rematte_with_background(f, a, b, self.post.alpha_band, snap=self.post.alpha_snap)
                                     for f, a, b in zip(frames, masks[i], backgrounds[i])])
            matte = masks[i].copy()
            p = self.post
            layers = [finish_layers(f, a, b, p.fg_reg, p.reconcile, p.reconcile_tol, p.reconcile_max_shadow,
                                    p.reconcile_max_edge_px)
                      for f, a, b in zip(frames, masks[i], backgrounds[i])]
            masks[i] = np.stack([x[0] for x in layers])
            fgs.append(np.stack([x[1] for x in layers]))
            backgrounds[i] = np.stack([x[2] for x in layers])
            scores = qa_scores(frames, fgs[-1], backgrounds[i], masks[i], band=max(1, self.post.alpha_band),
                               remnant_max_side=self.qa.remnant_max_side, matte=matte)
            obj.scores.update(scores)
            failed = gate(scores, limits)
            if failed:
                state.reject_object(obj, self.stage, failed[0][0], "; ".join(d for _, d in failed))
            else:
                keep.append(i)
        row["foregrounds"] = np.stack(fgs) if fgs else empty_backgrounds(*frames.shape[:3])
        keep_objects(state, row, keep, self.stage, "no_object_passed_qa")
