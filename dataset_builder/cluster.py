"""Which Ray the build runs on, and whether that Ray can run it at all.

- :func:`init_ray` attaches to a cluster only when told to (``ray.address`` or ``RAY_ADDRESS``, which
  ``ray job submit`` sets); otherwise it starts a private local Ray (``address="local"``), so a plain
  build never lands on some head that happens to run on the host. An address that does not answer
  fails in seconds instead of Ray's long connection retries.
- :func:`check_resources` fails fast (one line, exit 2 on the CLI) when an actor of some stage asks for
  more CPUs/GPUs than any node has, instead of Ray Data waiting forever for an actor that cannot be
  placed (e.g. the paper profile on a machine without GPUs).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterable

log = logging.getLogger(__name__)


class ClusterError(ValueError):
    """A user-level problem with the Ray cluster (unreachable, too small)."""


def _probe_address(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast when ``host:port`` (or ``ray://host:port``) does not accept connections."""
    target = address.split("://", 1)[-1]
    if address in ("auto", "local") or ":" not in target:
        return
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s):
            pass
    except (OSError, ValueError) as exc:
        raise ClusterError(f"cannot reach the Ray cluster at {address}: {exc}; start it, or unset "
                           "RAY_ADDRESS / ray.address to run on a private local Ray") from None


def init_ray(address: str | None, num_cpus: int | None = None, log_to_driver: bool = True) -> bool:
    """Connect or start Ray; returns True when this call started (and so should shut down) it."""
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        _probe_address(address)
        ray.init(address=address, log_to_driver=log_to_driver)
    else:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=log_to_driver)
    return True


def _node_capacities() -> list[dict[str, float]]:
    import ray

    return [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]


def unplaceable(demands: Iterable[tuple[str, float, float]], nodes: list[dict[str, float]]) -> list[str]:
    """Stages (name, num_cpus, num_gpus per actor) whose actor fits on no node; pure, for tests."""
    problems = []
    for name, cpus, gpus in demands:
        if any(n.get("CPU", 0) >= cpus and n.get("GPU", 0) >= gpus for n in nodes):
            continue
        most_cpu = max((n.get("CPU", 0) for n in nodes), default=0)
        most_gpu = max((n.get("GPU", 0) for n in nodes), default=0)
        problems.append(f"{name} needs {cpus:g} CPU + {gpus:g} GPU per actor, the largest node has "
                        f"{most_cpu:g} CPU / {most_gpu:g} GPU")
    return problems


def check_resources(demands: list[tuple[str, float, float]], wait_s: float = 10.0) -> None:
    """Raise :class:`ClusterError` if some stage's actor fits on no node after ``wait_s`` seconds
    (time for an autoscaler to add nodes)."""
    deadline = time.monotonic() + wait_s
    while True:
        problems = unplaceable(demands, _node_capacities())
        if not problems:
            return
        if time.monotonic() >= deadline:
            raise ClusterError("the Ray cluster cannot run this build: " + "; ".join(problems)
                               + " (lower stages.<name>.resources, or run where those resources exist)")
        time.sleep(1.0)


__all__ = ["ClusterError", "check_resources", "init_ray", "unplaceable"]
