import json
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
    adapters = {n.split(".")[2] for n in t2.param_names if n.startswith("lora.")}
    assert adapters == {"motion"} and {n for n in t2.param_names if not n.startswith("lora.")} == \
        {"layer_embedder.embedding"}  # only the motion adapter (+ the layer embedder, as the authors) train
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
    assert {n.split(".")[2] for n in t3.param_names if n.startswith("lora.")} == {"content"}
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
    assert losses[-1] < 0.6 * losses[0], losses  # blocks + embedder only (patch embed, output frozen)
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


def test_stage1_trains_exactly_the_configured_blocks(make_config, tmp_path):
    """Default trainable set = authors' part_6_txt: blocks i % 6 == 5 + layer embedder, nothing else."""
    from layerflow_train.config import TinyModelConfig
    from layerflow_train.models.tiny import build_tiny_model_dir

    model_dir = build_tiny_model_dir(tmp_path / "tiny12", TinyModelConfig(num_layers=12), text_len=8)
    cfg = make_config(1, model={"model_dir": str(model_dir)}, trainable={"every_n_blocks": 6, "block_offset": 5})
    assert cfg.trainable == type(cfg.trainable)()  # the config default
    trainer = Trainer(cfg, Stage1())
    trainer.loss(trainer.batch(0, 0), _step_generator(0, 0, 0, 0)).backward()
    with_grad = {n for n, p in trainer.model.named_parameters() if p.grad is not None}
    expected = {n for n, _ in trainer.model.named_parameters()
                if n.startswith(("transformer.transformer_blocks.5.", "transformer.transformer_blocks.11."))
                or n.startswith("layer_embedder.")}
    assert with_grad == expected == set(trainer.param_names)
    assert all(trainer.model.get_parameter(n).grad.abs().sum() > 0 for n in expected)  # all really learn
    blocks = trainer.model.transformer.transformer_blocks
    assert sum(p.numel() for p in blocks[5].parameters()) * 2 + 3 * 32 == sum(p.numel() for p in trainer.params)


def test_lora_stages_train_the_layer_embedder_and_clip_at_0_1(make_config, tmp_path):
    cfg = make_config(2)
    assert cfg.optim.max_grad_norm == 0.1 and cfg.trainable.layer_embedder  # authors' defaults
    trainer = Trainer(cfg, Stage2())
    assert {n.split(".")[0] for n in trainer.param_names} == {"lora", "layer_embedder"}
    trainer.fit()
    assert trainer.last_grad_norm is not None
    exported = load_file(str(trainer.out_dir / "final" / "layer_embedder.safetensors"))["embedding"]
    assert exported.abs().sum() > 0  # zero-initialised, then trained
    frozen = Trainer(make_config(2, trainable={"layer_embedder": False},
                                 checkpoint={"output_dir": str(tmp_path / "f")}), Stage2())
    assert {n.split(".")[0] for n in frozen.param_names} == {"lora"}


def test_checkpoints_bounded_and_hold_trainable_weights_only(make_config):
    cfg = make_config(2, optim={"max_steps": 5}, checkpoint={"every_n_steps": 1, "keep_last": 2})
    trainer = Trainer(cfg, Stage2())
    trainer.fit()
    kept = sorted(p.name for p in trainer.checkpoint_root.iterdir())
    assert kept == ["step-00000004", "step-00000005"]
    saved = load_file(str(trainer.checkpoint_root / kept[-1] / "trainable.safetensors"))
    assert set(saved) == set(trainer.param_names) and not any(k.startswith("transformer.") for k in saved)


def test_precomputed_latents_give_the_same_loss_as_on_the_fly(make_config, tmp_path):
    """The precompute job (here in-process; Ray in the slow test) records each view's crop; training from
    it gives bit-identical batches and losses for the same crop, and reads no video, T5 or VAE."""
    from layerflow_train.precompute import precompute

    data = {"random_crop": True, "precompute_views": 2, "precompute_dtype": "float32", "caption_dropout": 0.3}
    pre_dir = str(tmp_path / "pre")
    cfg_pre = make_config(1, data={**data, "precomputed_dir": pre_dir}, checkpoint={"output_dir": str(tmp_path / "p")})
    precompute(cfg_pre, use_ray=False)
    plain = Trainer(make_config(1, data=data), Stage1())
    fast = Trainer(cfg_pre, Stage1())
    assert fast.comp.vae is None and fast.comp.text_encoder is None
    n = len(plain.dataset)
    assert fast.dataset.keys == [r.key for r in plain.dataset.refs]
    dropped = [p for p in range(2 * n) if plain.dataset.captions_dropped(*plain.dataset.locate(p))]
    assert dropped  # caption dropout covered (seeded)
    for step in sorted({0, n, dropped[0]}):  # epochs 0 and 1 = views 0 and 1
        a, b = plain.batch(step, 0), fast.batch(step, 0)
        assert a.keys == b.keys and torch.equal(a.latents, b.latents) and torch.equal(a.text, b.text)
        gen = [_step_generator(0, step, 0, 0) for _ in range(2)]
        assert torch.equal(plain.loss(a, gen[0]), fast.loss(b, gen[1]))
    # epoch 2 reuses view 0: recorded crop = the crop of epoch 0
    row = fast.dataset._read(0, 0)
    assert row["frames"] == plain.dataset.example(0, 0).view["frames"]
    assert fast.dataset.example(0, 2).view["frames"] == row["frames"]
    assert precompute(cfg_pre, use_ray=False) == Path(pre_dir)  # finished: reused, not redone
    with pytest.raises(ValueError, match="another"):
        precompute(make_config(1, data={**data, "precomputed_dir": pre_dir, "height": 16}), use_ray=False)
    with pytest.raises(ValueError, match="fingerprint"):
        Trainer(make_config(1, data={**data, "precomputed_dir": pre_dir, "frame_stride": 2}), Stage1())


def test_precompute_is_found_by_ray_paths_and_refused_after_the_dataset_changed(make_config, layered_data, tmp_path,
                                                                               monkeypatch):
    """`workflows/precompute.py` sees the documented relative paths, `train.py --ray` the same made absolute
    on the driver: one precompute for both. Latents of a dataset rebuilt since are refused, not reused."""
    import shutil

    from dataset_builder.io import layout
    from layerflow_train.precompute import precompute
    from layerflow_train.ray_train import absolute_paths

    static, copypaste = layout.shards_in_dir(layered_data.static)[0], layout.shards_in_dir(layered_data.copypaste)[0]
    shutil.copy(static, tmp_path / "data.tar")
    monkeypatch.chdir(tmp_path)
    cfg = make_config(1, data={"shards": ["data.tar"], "precomputed_dir": "pre", "precompute_dtype": "float32"},
                      checkpoint={"output_dir": "out"})
    precompute(cfg, use_ray=False)
    assert len(Trainer(absolute_paths(cfg), Stage1()).dataset) == 1  # what each --ray worker builds
    shutil.copy(copypaste, tmp_path / "data.tar")  # the dataset is rebuilt: other samples
    with pytest.raises(ValueError, match="older state"):
        precompute(cfg, use_ray=False)
    with pytest.raises(ValueError, match="older state"):
        Trainer(cfg, Stage1())


def test_bf16_autocast_keeps_fp32_master_weights(make_config):
    cfg = make_config(1, optim={"mixed_precision": "bf16", "cpu_autocast": True},
                      trainable={"every_n_blocks": 2, "block_offset": 1})
    trainer = Trainer(cfg, Stage1())
    assert trainer.autocast_dtype == torch.bfloat16
    dtypes = {n: p.dtype for n, p in trainer.model.named_parameters()}
    assert {dtypes[n] for n in trainer.param_names} == {torch.float32}
    losses = trainer.fit()
    assert all(torch.isfinite(torch.tensor(losses)))


@pytest.mark.slow
def test_logged_loss_is_averaged_over_ranks(tmp_path):
    """Two gloo processes with different local losses log the same mean."""
    import torch.multiprocessing as mp

    mp.spawn(_mean_worker, args=(str(tmp_path),), nprocs=2, join=True)
    got = sorted((tmp_path / f"r{r}").read_text() for r in range(2))
    assert got == ["2.0 ok", "2.0 ok"]


def _mean_worker(rank: int, root: str) -> None:
    import os

    import torch.distributed as dist

    from layerflow_train.trainer import assert_same_step, mean_over_ranks

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=os.environ.get("I10_PORT", "29517"))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        mean = mean_over_ranks(1.0 + 2 * rank, torch.device("cpu"))
        assert_same_step(7, torch.device("cpu"))
        try:
            assert_same_step(7 + rank, torch.device("cpu"))
            status = "not refused"
        except RuntimeError:
            status = "ok"
        Path(root, f"r{rank}").write_text(f"{mean} {status}")
    finally:
        dist.destroy_process_group()


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
                      data={"shards": ["out/coarse", "out/x/*.tar"], "precomputed_dir": "pre"},
                      checkpoint={"output_dir": "out/train"})
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"model_dir": "CogVideoX-2b",
                                                                      "transformer_dir": "t"}),
                                 "ray": cfg.ray.model_copy(update={"storage_path": "s3://bucket/ray"})})
    got = absolute_paths(cfg)
    assert got.model.model_dir == str(tmp_path / "models" / "CogVideoX-2b")
    assert got.model.transformer_dir == str(tmp_path / "t") and got.model.layer_embedder_path is None
    assert got.data.shards == [str(tmp_path / "out/coarse"), str(tmp_path / "out/x/*.tar")]
    assert got.data.precomputed_dir == str(tmp_path / "pre")
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


@pytest.mark.slow
@pytest.mark.ray
def test_two_ray_workers_resume_from_the_ray_checkpoint(ray_local, make_config, tmp_path):
    """2 CPU workers (gloo DDP): Ray storage keeps only keep_last checkpoints, a rerun of the same run
    resumes every rank from Ray's newest checkpoint (not a local dir: the workers' temp copies are gone)
    and continues with the same losses as an uninterrupted 2-worker run."""
    from layerflow_train.ray_train import fit_with_ray

    def cfg(name, steps):
        return make_config(2, optim={"max_steps": steps}, ray={"num_workers": 2, "name": name,
                                                               "storage_path": str(tmp_path / "ray")},
                           checkpoint={"every_n_steps": 1, "keep_last": 2, "output_dir": str(tmp_path / name)})

    straight = fit_with_ray(cfg("straight", 4))
    assert straight.error is None and straight.metrics["step"] == 4
    first = fit_with_ray(cfg("interrupted", 3))
    assert first.error is None and first.metrics["step"] == 3
    run_dir = tmp_path / "ray" / "interrupted"
    kept = [p for p in run_dir.glob("checkpoint_*") if p.is_dir()]
    assert len(kept) == 2  # CheckpointConfig(num_to_keep=keep_last)
    assert not (tmp_path / "interrupted" / "checkpoints").exists()  # nothing local to resume from
    resumed = fit_with_ray(cfg("interrupted", 4))
    assert resumed.error is None and resumed.metrics["step"] == 4
    assert resumed.metrics["loss"] == straight.metrics["loss"]
    assert len([p for p in run_dir.glob("checkpoint_*") if p.is_dir()]) == 2


def test_validation_samples_and_tensorboard_logs(make_config):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = make_config(1, optim={"max_steps": 2}, tracking={"tensorboard": True},
                      validation={"every_n_steps": 2, "num_steps": 1,
                                  "prompts": [{"fg": "a ball", "bg": "a wall", "blend": "a ball at a wall"}]})
    trainer = Trainer(cfg, Stage1())
    losses = trainer.fit()
    out = trainer.out_dir / "validation" / "step-00000002" / "prompt-0"
    assert {p.name for p in out.iterdir()} == {"fg_rgba.mov", "fg.mp4", "alpha.mkv", "bg.mp4", "blend.mp4"}
    acc = EventAccumulator(str(trainer.out_dir / "tensorboard"))
    acc.Reload()
    logged = [e.value for e in acc.Scalars("train/loss")]
    assert logged == pytest.approx(losses)
    assert "train/grad_norm" in acc.Tags()["scalars"]


def test_validation_of_a_conditional_variant_is_refused_at_config_time(make_config):
    """Not after every_n_steps of training: validation cannot sample conditional variants."""
    with pytest.raises(ValueError, match="conditional"):
        make_config(1, conditioning="bg",
                    validation={"every_n_steps": 2, "prompts": [{"fg": "a", "bg": "b", "blend": "c"}]})


@pytest.mark.slow
def test_fsdp2_two_ranks_train_checkpoint_and_resume(make_config, tmp_path):
    """FSDP2 on 2 gloo CPU ranks: same losses as DDP, full (gathered) trainable weights in the checkpoint,
    resume continues; the export holds the full transformer."""
    import torch.multiprocessing as mp

    results = {}
    for mode in ("ddp", "fsdp"):
        cfg = make_config(1, distributed=mode, optim={"max_steps": 3, "max_grad_norm": 0},
                          checkpoint={"every_n_steps": 2, "output_dir": str(tmp_path / mode)})
        mp.spawn(_fsdp_worker, args=(cfg.model_dump_json(), str(tmp_path / f"{mode}.json")), nprocs=2, join=True)
        results[mode] = json.loads((tmp_path / f"{mode}.json").read_text())
    assert results["fsdp"]["losses"] == pytest.approx(results["ddp"]["losses"], rel=1e-4)
    assert results["fsdp"]["resumed_step"] == 2
    ckpt = load_file(str(tmp_path / "fsdp" / "checkpoints" / "step-00000002" / "trainable.safetensors"))
    ref = load_file(str(tmp_path / "ddp" / "checkpoints" / "step-00000002" / "trainable.safetensors"))
    assert set(ckpt) == set(ref) and all(ckpt[k].shape == ref[k].shape for k in ref)
    assert all(torch.allclose(ckpt[k], ref[k], atol=1e-5) for k in ref)
    assert (tmp_path / "fsdp" / "final" / "transformer" / "config.json").exists()


def _fsdp_worker(rank: int, cfg_json: str, out: str) -> None:
    import os

    import torch.distributed as dist

    from layerflow_train.config import TrainConfig

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29533")
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        cfg = TrainConfig.model_validate_json(cfg_json)
        trainer = Trainer(cfg, Stage1(), rank=rank, world_size=2, device=torch.device("cpu"), resume_local=False)
        losses = trainer.fit(max_steps=2)
        ckpt = Path(cfg.checkpoint.output_dir) / "checkpoints" / "step-00000002"
        dist.barrier()
        again = Trainer(cfg, Stage1(), rank=rank, world_size=2, device=torch.device("cpu"), resume_from=ckpt)
        resumed_step = again.step
        losses += again.fit()
        losses = [float(x) for x in losses]
        if rank == 0:
            Path(out).write_text(json.dumps({"losses": losses, "resumed_step": resumed_step}))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.ray
def test_precompute_on_ray_data_matches_the_local_job(ray_local, make_config, tmp_path):
    from layerflow_train.data.precomputed import PrecomputedDataset, precompute_fingerprint
    from layerflow_train.precompute import precompute

    got = {}
    for mode in ("local", "ray"):
        cfg = make_config(1, data={"precompute_views": 2, "precomputed_dir": str(tmp_path / mode)})
        precompute(cfg, use_ray=mode == "ray")
        ds = PrecomputedDataset(cfg.data, 0, precompute_fingerprint(cfg.model, cfg.data, 0))
        got[mode] = (ds, [ds._read(i, v) for i in range(len(ds)) for v in range(2)])
    (local, rows_l), (ray_ds, rows_r) = got["local"], got["ray"]
    assert local.keys == ray_ds.keys and torch.equal(local.null_text, ray_ds.null_text)
    for a, b in zip(rows_l, rows_r):
        assert a["frames"] == b["frames"] and torch.equal(a["latents"], b["latents"])
        assert torch.equal(a["text"], b["text"])
