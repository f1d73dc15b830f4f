"""Training's Ray entry points attach to a cluster only when told to (RAY_ADDRESS, as `ray job submit`
sets), like the builders: a plain run must not land on some head that happens to run on the host."""

from __future__ import annotations

import pytest


class _Stop(Exception):
    pass


@pytest.fixture
def ray_init_calls(monkeypatch):
    import ray

    calls = []

    def fake_init(**kw):
        calls.append(kw)
        raise _Stop

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", fake_init)
    return calls


def test_ray_train_starts_a_private_ray(make_config, ray_init_calls):
    from layerflow_train.ray_train import fit_with_ray

    with pytest.raises(_Stop):
        fit_with_ray(make_config(1))
    assert ray_init_calls[0]["address"] == "local"


def test_precompute_starts_a_private_ray(make_config, ray_init_calls, tmp_path):
    from layerflow_train.precompute import precompute

    cfg = make_config(1, data={"precomputed_dir": str(tmp_path / "pre")})
    with pytest.raises(_Stop):
        precompute(cfg, use_ray=True)
    assert ray_init_calls[0]["address"] == "local"
