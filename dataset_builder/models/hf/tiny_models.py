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
