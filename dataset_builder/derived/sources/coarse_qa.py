"""Coarse-set foregrounds as a copy-paste source, kept only when their QA scores pass.

The coarse build writes per-sample QA scores into the sample json ``scores`` (alpha stability, bg
remnant, recomposition PSNR...). Copy-paste multiplies every foreground onto new backgrounds, so a bad
one is copied many times: thresholds are precision-first, and a sample *missing* a thresholded score
is rejected too (``qa_score_missing``), not waved through.
"""

from __future__ import annotations

import math


def qa_verdict(scores: dict[str, float], min_scores: dict[str, float], max_scores: dict[str, float],
               require: bool = True) -> tuple[str, str] | None:
    """None if ``scores`` pass every threshold, else (reject reason, detail)."""
    checks = [(key, bound, True) for key, bound in sorted(min_scores.items())]
    checks += [(key, bound, False) for key, bound in sorted(max_scores.items())]
    for key, bound, is_min in checks:
        value = scores.get(key)
        if value is None or not math.isfinite(value):
            if require:
                return "qa_score_missing", f"no finite {key!r} score (needs {'>=' if is_min else '<='} {bound})"
        elif is_min and value < bound:
            return "qa_below_threshold", f"{key}={value:.4g} < {bound}"
        elif not is_min and value > bound:
            return "qa_above_threshold", f"{key}={value:.4g} > {bound}"
    return None
