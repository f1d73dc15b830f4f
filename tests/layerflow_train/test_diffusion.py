import torch
from diffusers import CogVideoXDDIMScheduler

from layerflow_train.diffusion import add_noise, condition_frame_mask, layerflow_loss


def _sched():
    return CogVideoXDDIMScheduler(prediction_type="v_prediction", rescale_betas_zero_snr=True, snr_shift_scale=3.0,
                                  timestep_spacing="trailing", beta_schedule="scaled_linear", beta_start=0.00085,
                                  beta_end=0.012)


def test_condition_masks_cover_the_right_latent_groups():
    assert condition_frame_mask("none", 2).tolist() == [False] * 8
    assert condition_frame_mask("fg", 2).tolist() == [True] * 4 + [False] * 4
    assert condition_frame_mask("bg", 2).tolist() == [False] * 4 + [True] * 2 + [False] * 2
    assert condition_frame_mask("decomposition", 2).tolist() == [False] * 6 + [True] * 2


def test_conditional_masking_excludes_condition_clip():
    ac = _sched().alphas_cumprod.float()
    g = torch.Generator().manual_seed(0)
    latents, noise = torch.randn(2, 8, 4, 4, 6, generator=g), torch.randn(2, 8, 4, 4, 6, generator=g)
    t = torch.tensor([100, 900])
    mask = condition_frame_mask("bg", 2)
    noisy = add_noise(ac, latents, noise, t, mask)
    assert torch.equal(noisy[:, mask], latents[:, mask])  # condition kept clean
    assert not torch.allclose(noisy[:, ~mask], latents[:, ~mask])
    # matches the scheduler's own noising on generated frames
    ref = _sched().add_noise(latents, noise, t)
    torch.testing.assert_close(noisy[:, ~mask], ref[:, ~mask])

    v = torch.randn(2, 8, 4, 4, 6, generator=g, requires_grad=True)
    loss = layerflow_loss(ac, v, noisy, latents, t, mask)
    loss.backward()
    assert torch.count_nonzero(v.grad[:, mask]) == 0
    assert torch.count_nonzero(v.grad[:, ~mask]) == v.grad[:, ~mask].numel()
    v2 = v.detach().clone()
    v2[:, mask] += 100.0  # wildly wrong prediction on the condition clip: loss unchanged
    assert torch.equal(layerflow_loss(ac, v2, noisy, latents, t, mask), loss.detach())
    v3 = v.detach().clone()
    v3[:, ~mask] += 1.0
    assert layerflow_loss(ac, v3, noisy, latents, t, mask) != loss.detach()


def test_loss_zero_for_exact_v_prediction():
    sched = _sched()
    ac = sched.alphas_cumprod.float()
    g = torch.Generator().manual_seed(3)
    latents, noise = torch.randn(1, 8, 4, 2, 2, generator=g), torch.randn(1, 8, 4, 2, 2, generator=g)
    t = torch.tensor([400])
    none = condition_frame_mask("none", 2)
    noisy = add_noise(ac, latents, noise, t, none)
    v_true = sched.get_velocity(latents, noise, t)
    assert layerflow_loss(ac, v_true, noisy, latents, t, none) < 1e-8
    assert layerflow_loss(ac, torch.zeros_like(v_true), noisy, latents, t, none) > 0.1
