"""Batched model calls that back off on out-of-memory, and per-backend call counters.

A GPU backend gets many small requests (objects x questions, keyframes x clips). :class:`BatchRunner`
sends them to the model in chunks of at most ``limit`` items; when a chunk runs out of device memory
it frees the cache, halves the limit (for the rest of the actor's life: the next clip would OOM the
same way) and retries that chunk, and only an OOM at one item is raised - so a clip is rejected for
memory only when it cannot be processed even alone. Torch is imported lazily; nothing here needs Ray.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


def is_oom(exc: BaseException) -> bool:
    """True for device out-of-memory errors (torch's OutOfMemoryError or an allocator message)."""
    try:
        import torch

        oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
        if oom_type is not None and isinstance(exc, oom_type):
            return True
    except ImportError:  # pragma: no cover - CPU profile without torch
        pass
    return isinstance(exc, (RuntimeError, MemoryError)) and "out of memory" in str(exc).lower()


def free_device_cache() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass


@dataclass
class CallStats:
    """How often a backend called its model and with how many items (benchmarks/bench_paper_profile.py)."""

    calls: dict[str, int] = field(default_factory=dict)
    items: dict[str, int] = field(default_factory=dict)
    oom_retries: int = 0

    def record(self, what: str, n: int) -> None:
        self.calls[what] = self.calls.get(what, 0) + 1
        self.items[what] = self.items.get(what, 0) + n

    def as_dict(self) -> dict[str, Any]:
        return {"calls": dict(self.calls), "items": dict(self.items), "oom_retries": self.oom_retries}


class BatchRunner:
    """Run ``fn(chunk) -> results`` over ``items`` in chunks of at most ``limit``, halving on OOM."""

    def __init__(self, limit: int, stats: CallStats | None = None,
                 on_oom: Callable[[], None] = free_device_cache) -> None:
        if limit < 1:
            raise ValueError(f"batch limit must be >= 1, got {limit}")
        self.limit = int(limit)
        self.stats = stats if stats is not None else CallStats()
        self.on_oom = on_oom

    def run(self, what: str, items: Sequence[T], fn: Callable[[list[T]], Sequence[R]]) -> list[R]:
        out: list[R] = []
        i = 0
        while i < len(items):
            chunk = list(items[i:i + self.limit])
            try:
                results = list(fn(chunk))
            except Exception as exc:
                if not is_oom(exc) or len(chunk) == 1:
                    raise
                self.on_oom()
                self.limit = max(1, len(chunk) // 2)
                self.stats.oom_retries += 1
                log.warning("%s: out of memory at batch %d; retrying with batch %d", what, len(chunk), self.limit)
                continue
            if len(results) != len(chunk):
                raise RuntimeError(f"{what}: model returned {len(results)} results for {len(chunk)} inputs")
            self.stats.record(what, len(chunk))
            out += results
            i += len(chunk)
        return out
