from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from layerflow_train.recipes import Stage1, Stage2, Stage3
from layerflow_train.trainer import Trainer, _step_generator


def test_stages_chain_train_and_export(make_config):
    cfg1 = make_config(1, optim={"max_steps": 2})
    t1 = Trainer(cfg1, Stage1())
    losses = t1.fit()
    assert len(losses) == 2 and all(l > 0 for l in losses)
    final1 = t1.out_dir / "final"
    assert (final1 / "transformer" / "config.json").exists() and (final1 / "layer_embedder.safetensors").exists()

    model = {"transformer_dir": str(final1 / "transformer"),
             "layer_embedder_path": str(final1 / "layer_embedder.safetensors")}
    cfg2 = make_config(2, optim={"max_steps": 2})
    cfg2 = cfg2.model_copy(update={"model": cfg2.model.model_copy(update=model)})
    t2 = Trainer(cfg2, Stage2())
    assert {n.split(".")[2] for n in t2.param_names} == {"motion"}  # only the motion adapter trains
    before = {n: p.detach().clone() for n, p in t2.model.transformer.named_parameters()}
    t2.fit()
    assert all(torch.equal(before[n], p) for n, p in t2.model.transformer.named_parameters())  # base frozen
    motion = t2.out_dir / "final" / "motion_lora.safetensors"
    assert any(v.abs().sum() > 0 for k, v in load_file(str(motion)).items() if "lora_B" in k)  # it learned

    # stage 3 data as in configs/train/stage3.yaml: image-layers statics + copy-paste videos
    cfg3 = make_config(3, optim={"max_steps": 2}, lora={"motion_weights": str(motion)},
                       data={"kinds": ["static", "copypaste"]})
    cfg3 = cfg3.model_copy(update={"model": cfg3.model.model_copy(update=model)})
    t3 = Trainer(cfg3, Stage3())
    assert {n.split(".")[2] for n in t3.param_names} == {"content"}
    motion_before = {k: v.clone() for k, v in t3.model.lora.state_dict_of("motion").items()}
    epoch = [t3.batch(s, 0) for s in range(len(t3.dataset))]
    scales = {b.keys[0]: b.motion_scale.item() for b in epoch}
    kinds = {k: t3.dataset.records[k].kind for k in scales}
    assert sorted(kinds.values()) == ["copypaste", "copypaste", "static"]  # one epoch sees every sample once
    assert all(scales[k] == (1.0 if kinds[k] == "static" else 0.0) for k in scales)
    t3.fit()
    assert all(torch.equal(motion_before[k], v) for k, v in t3.model.lora.state_dict_of("motion").items())
    assert (t3.out_dir / "final" / "content_lora.safetensors").exists()


def test_loss_decreases_on_fixed_batch(make_config):
    trainer = Trainer(make_config(1, optim={"lr": 2e-3, "max_grad_norm": 0}), Stage1())
    batch = trainer.batch(0, 0)
    losses = [trainer.optimize([batch], [_step_generator(0, 0, 0, 0)]) for _ in range(30)]
    assert losses[-1] < 0.5 * losses[0], losses
    assert min(losses[-5:]) < min(losses[:5])


def test_exact_resume(make_config, tmp_path):
    straight = Trainer(make_config(1, optim={"max_steps": 4}, checkpoint={"output_dir": str(tmp_path / "a")}),
                       Stage1()).fit()
    cfg = make_config(1, optim={"max_steps": 4}, checkpoint={"output_dir": str(tmp_path / "b")})
    first = Trainer(cfg, Stage1()).fit(max_steps=2)  # "interrupted" after a checkpoint at step 2
    resumed = Trainer(cfg, Stage1())
    assert resumed.step == 2
    rest = resumed.fit()
    assert first + rest == straight  # bit-identical loss sequence


def test_conditional_training_keeps_condition_clean_and_out_of_the_loss(make_config):
    trainer = Trainer(make_config(1, conditioning="decomposition"), Stage1())
    mask = trainer.cond_mask
    assert mask.tolist() == [False] * 6 + [True] * 2  # blend = last latent group
    seen = {}
    model = trainer.forward_model

    def spy(noisy, text, t, motion):
        v = model(noisy, text, t, motion)
        v.retain_grad()
        seen.update(noisy=noisy, v=v)
        return v

    trainer.forward_model = spy
    batch = trainer.batch(0, 0)
    trainer.loss(batch, _step_generator(0, 0, 0, 0)).backward()
    assert torch.equal(seen["noisy"][:, mask], batch.latents[:, mask])  # condition enters clean
    grad = seen["v"].grad
    assert torch.count_nonzero(grad[:, mask]) == 0
    assert torch.count_nonzero(grad[:, ~mask]) == grad[:, ~mask].numel()


def test_stage2_requires_static_data(make_config):
    with pytest.raises(ValueError, match="static"):
        Trainer(make_config(2, data={"static": "kind"}), Stage2())


def test_latent_cache_gives_identical_losses(make_config, tmp_path):
    cache = str(tmp_path / "cache")
    plain = Trainer(make_config(1, data={"random_crop": False}), Stage1())
    cached = Trainer(make_config(1, data={"random_crop": False, "cache_dir": cache},
                                 checkpoint={"output_dir": str(tmp_path / "c")}), Stage1())
    a, b = plain.batch(0, 0), cached.batch(0, 0)  # miss: computes and stores
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 1
    c = cached.batch(0, 0)  # hit
    assert torch.equal(a.latents, c.latents) and torch.equal(a.text, c.text) and torch.equal(b.latents, c.latents)


@pytest.mark.slow
@pytest.mark.ray
def test_ray_train_one_cpu_worker(ray_local, make_config):
    from layerflow_train.ray_train import fit_with_ray

    cfg = make_config(1, optim={"max_steps": 2}, checkpoint={"every_n_steps": 1})
    result = fit_with_ray(cfg)
    assert result.error is None and result.metrics["step"] == 2
    assert result.checkpoint is not None
    assert (Path(cfg.checkpoint.output_dir) / "final" / "layer_embedder.safetensors").exists()


def test_ray_config_paths_made_absolute_on_the_driver(make_config, tmp_path, monkeypatch):
    from layerflow_train.ray_train import absolute_paths

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LAYERFLOW_MODEL_ROOT", "models")
    cfg = make_config(3, lora={"motion_weights": "m/motion.safetensors", "content_weights": "~/c.safetensors"},
                      data={"shards": ["out/coarse", "out/x/*.tar"], "cache_dir": "cache"},
                      checkpoint={"output_dir": "out/train"})
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"model_dir": "CogVideoX-2b",
                                                                      "transformer_dir": "t"}),
                                 "ray": cfg.ray.model_copy(update={"storage_path": "s3://bucket/ray"})})
    got = absolute_paths(cfg)
    assert got.model.model_dir == str(tmp_path / "models" / "CogVideoX-2b")
    assert got.model.transformer_dir == str(tmp_path / "t") and got.model.layer_embedder_path is None
    assert got.data.shards == [str(tmp_path / "out/coarse"), str(tmp_path / "out/x/*.tar")]
    assert got.data.cache_dir == str(tmp_path / "cache")
    assert got.lora.motion_weights == str(tmp_path / "m/motion.safetensors")
    assert got.lora.content_weights == str(Path("~/c.safetensors").expanduser())
    assert got.checkpoint.output_dir == str(tmp_path / "out/train")
    assert got.ray.storage_path == "s3://bucket/ray"


@pytest.mark.slow
@pytest.mark.ray
def test_ray_train_with_relative_paths(ray_local, make_config, layered_data, tmp_path, monkeypatch):
    """The shipped configs use relative paths; Ray Train workers run in their own working directory."""
    from layerflow_train.ray_train import fit_with_ray

    monkeypatch.chdir(tmp_path)
    (tmp_path / "coarse").symlink_to(layered_data.coarse)
    cfg = make_config(1, optim={"max_steps": 1}, data={"shards": ["coarse"]},
                      checkpoint={"output_dir": "out/ray_rel", "every_n_steps": 1})
    result = fit_with_ray(cfg)
    assert result.error is None and result.metrics["step"] == 1
    assert (tmp_path / "out/ray_rel/final/layer_embedder.safetensors").exists()
