"""Abort a build whose clips fail systematically instead of finishing "successfully" as 100 % rejects.

Per-clip failures become rejects (``stages.base.ClipStage``), which is right for a corrupt video and
wrong for a missing kernel, a CUDA build mismatch or OOM on every clip: the run would burn the whole
cluster budget writing error rows. :class:`ErrorRateBreaker` watches the clips the driver commits; when
more than ``max_error_rate`` of the last ``window`` clips (once at least ``min_clips`` were seen) were
rejected for an error, it raises :class:`BuildAborted` naming the most common failure. Clips already
committed stay committed, so fixing the cause and rerunning resumes (``output.retry_rejects: true``
reprocesses the failed ones). Ray-free: the driver loop calls :meth:`observe`.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable

from schemas import RejectRecord

#: Reject reasons that mean "the pipeline failed", not "the clip was judged unusable".
ERROR_REASONS = frozenset({"error", "oom", "worker_crash"})


class BuildAborted(RuntimeError):
    """Too many clips failed with errors; the message says which failure dominated."""


def failure_signature(reject: RejectRecord) -> str:
    """``stage: first line of the detail`` - the same for every clip hit by the same systematic bug."""
    first = (reject.detail or "").strip().splitlines()[0] if (reject.detail or "").strip() else reject.reason
    return f"{reject.stage}: {first[:200]}"


def clip_failure(rejects: list[RejectRecord]) -> str:
    """The clip's error signature (clip-level errors first); "" when it failed for no error."""
    errors = [r for r in rejects if r.reason in ERROR_REASONS and r.object_id < 0]
    errors = errors or [r for r in rejects if r.reason in ERROR_REASONS]
    return failure_signature(errors[0]) if errors else ""


class ErrorRateBreaker:
    def __init__(self, max_error_rate: float = 0.5, window: int = 200, min_clips: int = 20) -> None:
        if not 0.0 <= max_error_rate <= 1.0:
            raise ValueError(f"max_error_rate must be within 0..1, got {max_error_rate}")
        if window < 1 or min_clips < 1:
            raise ValueError("window and min_clips must be >= 1")
        self.max_error_rate = max_error_rate
        self.min_clips = min(min_clips, window)
        self.recent: deque[str | None] = deque(maxlen=window)
        self.seen = 0

    def observe(self, rejects: Iterable[RejectRecord]) -> None:
        """Record one committed clip (its rejects); raise :class:`BuildAborted` when the bound is exceeded."""
        self.observe_signature(clip_failure(list(rejects)) or None)

    def observe_signature(self, signature: str | None) -> None:
        """Record one committed clip by its failure signature (None: no error), as the writer stage
        reports it in ``CommitRecord.clip_failures``."""
        self.recent.append(signature)
        self.seen += 1
        if len(self.recent) < self.min_clips or self.max_error_rate >= 1.0:
            return
        failed = [s for s in self.recent if s is not None]
        rate = len(failed) / len(self.recent)
        if rate > self.max_error_rate:
            (top, count), = Counter(failed).most_common(1)
            raise BuildAborted(
                f"aborting the build: {len(failed)} of the last {len(self.recent)} clips failed with errors "
                f"({rate:.0%} > failures.max_error_rate {self.max_error_rate:.0%}); most common ({count}x): {top}. "
                f"Committed clips are kept: fix the cause and rerun with output.retry_rejects=true"
            )
