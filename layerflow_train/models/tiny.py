"""Random tiny CogVideoX components in the diffusers directory layout, built offline.

Tests and laptop smoke runs use them: same classes and code path as CogVideoX-2B, a few thousand
parameters, a character-level tokenizer built with ``tokenizers`` (no download, no sentencepiece model).
"""

from __future__ import annotations

import string
from pathlib import Path

from layerflow_train.config import TinyModelConfig

_SPECIALS = ["<pad>", "</s>", "<unk>"]  # T5 ids: pad=0, eos=1, unk=2


def build_char_tokenizer(max_length: int):
    from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    vocab = {tok: i for i, tok in enumerate(_SPECIALS + chars)}
    tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex("."), behavior="isolated")])
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                                   unk_token="<unk>", model_max_length=max_length)


def build_tiny_model_dir(out_dir: str | Path, cfg: TinyModelConfig, text_len: int) -> Path:
    """Write transformer/, vae/, text_encoder/, tokenizer/, scheduler/ with random weights (seeded)."""
    import torch
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    out = Path(out_dir)
    torch.manual_seed(cfg.seed)
    tokenizer = build_char_tokenizer(text_len)
    inner = cfg.num_attention_heads * cfg.attention_head_dim
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=cfg.num_attention_heads, attention_head_dim=cfg.attention_head_dim,
        in_channels=cfg.latent_channels, out_channels=cfg.latent_channels, time_embed_dim=inner,
        text_embed_dim=cfg.text_dim, num_layers=cfg.num_layers, sample_width=8, sample_height=8,
        sample_frames=9, max_text_seq_length=text_len)
    vae = AutoencoderKLCogVideoX(
        block_out_channels=(cfg.vae_channels,) * 4, latent_channels=cfg.latent_channels, layers_per_block=1,
        norm_num_groups=min(4, cfg.vae_channels), sample_height=64, sample_width=64)
    t5 = T5EncoderModel(T5Config(
        vocab_size=len(tokenizer), d_model=cfg.text_dim, d_kv=8, d_ff=2 * cfg.text_dim, num_layers=1,
        num_heads=2, relative_attention_num_buckets=8, decoder_start_token_id=0, pad_token_id=0,
        eos_token_id=1))
    # CogVideoX-2B scheduler settings (v-prediction, zero-terminal-SNR, SNR shift 3).
    scheduler = CogVideoXDDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
        prediction_type="v_prediction", rescale_betas_zero_snr=True, set_alpha_to_one=True,
        snr_shift_scale=3.0, timestep_spacing="trailing")
    transformer.save_pretrained(out / "transformer")
    vae.save_pretrained(out / "vae")
    t5.save_pretrained(out / "text_encoder")
    tokenizer.save_pretrained(out / "tokenizer")
    scheduler.save_pretrained(out / "scheduler")
    return out
