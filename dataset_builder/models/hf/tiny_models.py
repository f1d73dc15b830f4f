"""Tiny random model directories built from configs (tests and CPU benchmarks of the paper backends).

Saved with ``save_pretrained`` so the backends load them through their real loading code; nothing is
downloaded: tokenizers are word-level vocabularies built here. Random weights give random answers -
these exercise plumbing, shapes and call counts, never quality.
"""

from __future__ import annotations

from pathlib import Path

WORDS = ["a", "photo", "of", "the", "is", "yes", "no", "these", "frames", "show", "video", "object", "real",
         "foreground", "highlighted", "red", "background", "scene", "describe", "person", "bike", "bicycle", "road",
         "tree", "car", "dog", "sky", "alone", "plain", "its", "and", "in", "one", "or", "two", "sentences",
         "question", "answer"]


def word_tokenizer(special: list[str], pad: str, eos: str | None = None):
    """A WordLevel fast tokenizer over WORDS + ``special`` (special tokens stay whole)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(["[UNK]", *special, *WORDS])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token=pad, eos_token=eos,
        additional_special_tokens=[s for s in special if s not in (pad, eos)],
    )


QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                "<|image_pad|>", "<|video_pad|>", "system", "user", "assistant", "You", "are", "helpful",
                "assistant."]


def build_tiny_qwen2_5_vl(out: str | Path) -> Path:
    """A tiny random Qwen2.5-VL (1 text layer, 1 vision block) with its image processor and tokenizer."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2VLImageProcessorPil

    out = Path(out)
    tok = word_tokenizer(QWEN_SPECIAL, pad="<|endoftext|>", eos="<|im_end|>")
    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIAL[:7]}
    torch.manual_seed(0)
    cfg = Qwen2_5_VLConfig(
        text_config={"vocab_size": len(tok), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                         "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 2048,
                         "rope_parameters": {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0},
                         "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
                         "pad_token_id": ids["<|endoftext|>"]},
        vision_config={"depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 32,
                           "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 56,
                           "fullatt_block_indexes": [0]},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    Qwen2_5_VLForConditionalGeneration(cfg).save_pretrained(out)
    Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=112 * 112).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def build_tiny_siglip(out: str | Path) -> Path:
    """A tiny random SigLIP (1 layer per tower, 32 px images) with its image processor and tokenizer."""
    import torch
    from transformers import SiglipConfig, SiglipImageProcessorPil, SiglipModel

    out = Path(out)
    tok = word_tokenizer(["<pad>", "</s>"], pad="<pad>", eos="</s>")
    torch.manual_seed(0)
    cfg = SiglipConfig(
        text_config={"vocab_size": len(tok), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                         "num_attention_heads": 2, "max_position_embeddings": 16, "pad_token_id": tok.pad_token_id,
                         "eos_token_id": tok.eos_token_id, "bos_token_id": tok.eos_token_id},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                           "image_size": 32, "patch_size": 8},
    )
    SiglipModel(cfg).save_pretrained(out)
    SiglipImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(out)
    tok.save_pretrained(out)
    return out




def build_tiny_owlv2_sam2(out: str | Path) -> Path:
    """<dir>/owlv2 (tiny Owlv2ForObjectDetection) + <dir>/sam2 (tiny Sam2VideoModel)."""
    import torch
    from transformers import (
        Owlv2Config,
        Owlv2ForObjectDetection,
        Owlv2ImageProcessorPil,
        Sam2VideoConfig,
        Sam2VideoModel,
    )

    out = Path(out)
    tok = word_tokenizer(["<pad>", "<eos>"], pad="<pad>", eos="<eos>")
    torch.manual_seed(0)
    owl = Owlv2Config(
        projection_dim=32,
        text_config={"vocab_size": len(tok), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                         "num_attention_heads": 2, "max_position_embeddings": 16, "pad_token_id": tok.pad_token_id,
                         "eos_token_id": tok.eos_token_id, "bos_token_id": tok.eos_token_id},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                           "image_size": 64, "patch_size": 16},
    )
    Owlv2ForObjectDetection(owl).save_pretrained(out / "owlv2")
    Owlv2ImageProcessorPil(size={"height": 64, "width": 64}).save_pretrained(out / "owlv2")
    tok.save_pretrained(out / "owlv2")

    s, h = 128, 128  # SAM2 ties memory dims: kv_in_dim 64 and hidden a multiple of it (>64)
    sam = Sam2VideoConfig(
        vision_config={
            "backbone_config": {
                "model_type": "sam2_hiera_det_model", "hidden_size": 16, "num_attention_heads": 1, "image_size": [s, s],
                "blocks_per_stage": [1, 1, 2, 1], "embed_dim_per_stage": [16, 32, 64, 128],
                "num_attention_heads_per_stage": [1, 1, 1, 1], "window_size_per_stage": [4, 4, 4, 2],
                "global_attention_blocks": [3], "window_positional_embedding_background_size": [4, 4],
            },
            "backbone_channel_list": [128, 64, 32, 16],
            "backbone_feature_sizes": [[s // 4, s // 4], [s // 8, s // 8], [s // 16, s // 16]], "fpn_hidden_size": h,
        },
        prompt_encoder_config={"hidden_size": h, "image_size": s, "mask_input_channels": 4},
        mask_decoder_config={"hidden_size": h, "mlp_dim": 64, "num_attention_heads": 2, "iou_head_hidden_dim": h},
        image_size=s, memory_attention_hidden_size=h, memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=64, memory_encoder_hidden_size=h,
        memory_encoder_output_channels=64, mask_downsampler_embed_dim=h, memory_fuser_embed_dim=h,
        memory_fuser_intermediate_dim=64, memory_attention_rope_feat_sizes=[s // 16, s // 16], num_maskmem=3,
    )
    Sam2VideoModel(sam).save_pretrained(out / "sam2")
    return out
