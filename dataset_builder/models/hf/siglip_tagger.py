"""RAM-style open-vocabulary tagging with SigLIP zero-shot scores (backend ``siglip``).

The recognize-anything (RAM/RAM++) code is not a transformers model, so we reproduce what the
pipeline needs from it - a multi-label tag set over a fixed open vocabulary, split into subject and
scene tags - with SigLIP: its sigmoid (not softmax) image-text head scores every label independently,
which is exactly multi-label tagging. The default vocabulary is RAM's own 4585-tag list plus curated
words (``ram_vocab.txt``, built by ``workflows/build_tag_vocab.py``); only subjects (concrete foreground
object classes) become segmentation prompts. Per-tag thresholds come from a thresholds file fitted by
``workflows/calibrate_tagger.py`` for one model fingerprint. The vocabulary's text embeddings are computed
once per actor and cached on disk, keyed by the model fingerprint, the prompts and the dtype, so the other
actors on a node (and the next run) load them instead of re-encoding thousands of prompts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dataset_builder.config import BackendSpec, Resources
from dataset_builder.models.base import Tag
from dataset_builder.models.hf import loading
from dataset_builder.models.hf.batching import BatchRunner, CallStats

log = logging.getLogger(__name__)

VOCAB_PATH = Path(__file__).with_name("ram_vocab.txt")
#: Where the vocabulary's text embeddings are cached (options.embed_cache; "" disables the disk cache).
EMBED_CACHE = Path(os.environ.get("LAYERFLOW_CACHE", Path.home() / ".cache" / "layerflow")) / "tag_text_embeds"


@dataclass(frozen=True)
class VocabEntry:
    label: str
    is_subject: bool
    #: Calibrated per-tag threshold (RAM ships one per class); None -> the backend's global threshold.
    threshold: float | None = None


def load_vocab(path: str | Path = VOCAB_PATH) -> list[VocabEntry]:
    """Parse ``<label>\\t<subject|scene>[\\t<threshold>]`` lines (``#`` comments); underscores become spaces."""
    entries: list[VocabEntry] = []
    seen: set[str] = set()
    for lineno, raw in enumerate(Path(path).read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        label, kind, *rest = line.split("\t") + ([] if "\t" in line else [""])
        if kind not in ("subject", "scene") or len(rest) > 1:
            raise ValueError(f"{path}:{lineno}: expected '<label>\\t<subject|scene>[\\t<threshold>]', got {raw!r}")
        label = label.replace("_", " ")
        if label in seen:
            raise ValueError(f"{path}:{lineno}: duplicate label {label!r}")
        seen.add(label)
        entries.append(VocabEntry(label, kind == "subject", float(rest[0]) if rest else None))
    return entries


def tag_thresholds(vocab: list[VocabEntry], default: float, overrides: dict[str, float] | None = None,
                   calibrated: dict[str, float] | None = None) -> np.ndarray:
    """Per-tag thresholds: ``overrides`` (options.thresholds) > ``calibrated`` (the thresholds file) > the
    vocabulary's column > ``default``."""
    overrides, calibrated = overrides or {}, calibrated or {}
    return np.array([float(overrides.get(e.label, calibrated.get(
        e.label, e.threshold if e.threshold is not None else default))) for e in vocab], np.float32)


def load_thresholds(path: str | Path, model_fingerprint: str | None = None, prompt: str | None = None
                    ) -> dict[str, float]:
    """``{label: threshold}`` of a thresholds file (``workflows/calibrate_tagger.py``). Thresholds are on the
    probability scale of one model and one prompt template: a file calibrated for another model
    (fingerprint) or another template is refused."""
    data = json.loads(Path(path).read_text())
    made_for = data.get("model_fingerprint")
    if model_fingerprint is not None and made_for not in (None, model_fingerprint):
        raise ValueError(f"{path}: thresholds were calibrated for model {made_for}, this model is {model_fingerprint}; "
                         "re-run workflows/calibrate_tagger.py for it")
    made_with = data.get("prompt")
    if prompt is not None and made_with not in (None, prompt):
        raise ValueError(f"{path}: thresholds were calibrated with prompt template {made_with!r}, this tagger uses "
                         f"{prompt!r}; re-run workflows/calibrate_tagger.py --prompt {prompt!r}")
    return {str(label): float(t) for label, t in data["thresholds"].items()}


def text_embeddings(encode, prompts: list[str], key: str, cache_dir: str | Path | None, batch: int = 256):
    """L2-normalised text embeddings of ``prompts`` (float32 numpy, (V, D)), ``encode(list) -> tensor`` in
    chunks of ``batch``; read from / written to ``<cache_dir>/<key>-<prompts hash>.npy`` when a cache dir is
    given (written atomically, so actors starting together never read a half-written file)."""
    digest = hashlib.sha1("\n".join(prompts).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"{key}-{digest}.npy" if cache_dir else None
    if path is not None and path.is_file():
        cached = np.load(path)
        if cached.shape[0] == len(prompts):
            return cached
    chunks = [encode(prompts[i:i + batch]) for i in range(0, len(prompts), batch)]
    out = np.concatenate(chunks).astype(np.float32)
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # pid + random: actors of different pods (equal pids) may share the cache volume
            tmp = path.with_suffix(f".{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp.npy")
            np.save(tmp, out)
            os.replace(tmp, path)
        except OSError as exc:  # a read-only home must not stop tagging
            log.warning("could not cache tag text embeddings at %s: %s", path, exc)
    return out


def select_tags(
    probs: np.ndarray, vocab: list[VocabEntry], threshold: float | np.ndarray, max_tags: int,
    min_subjects: int = 0,
) -> list[Tag]:
    """Labels whose probability clears their (per-tag) threshold, best first, at most ``max_tags`` (top-k).

    With ``min_subjects`` > 0 and no subject above its threshold, the best-scoring subjects are kept anyway
    (with their real, low scores): segmentation then gets real nouns as prompts, never a placeholder
    that would end up as the object's label in the judge question and the captions.
    """
    thresholds = np.broadcast_to(np.asarray(threshold, np.float32), probs.shape)
    order = np.argsort(-probs, kind="stable")
    passed = [int(i) for i in order[probs[order] >= thresholds[order]][:max_tags]]
    if min_subjects and not any(vocab[i].is_subject for i in passed):
        best = [int(i) for i in order[_subject_mask(vocab)[order]][:min_subjects]]
        passed = sorted(set(passed[:max(0, max_tags - len(best))]) | set(best), key=lambda i: -probs[i])
    return [Tag(vocab[i].label, float(probs[i]), vocab[i].is_subject) for i in passed]


def _subject_mask(vocab: list[VocabEntry]) -> np.ndarray:
    return np.fromiter((e.is_subject for e in vocab), bool, len(vocab))


def calibrate_thresholds(probs: np.ndarray, labels: np.ndarray, target_precision: float = 0.8,
                         default: float = 0.1, min_positives: int = 1) -> np.ndarray:
    """Per-tag thresholds from scored, labelled images (``probs``/``labels`` (N, V)): for each tag the lowest
    threshold whose precision on the data is >= ``target_precision`` (RAM-style calibration); tags with fewer
    than ``min_positives`` positives, or never precise enough, keep ``default`` (NaN: leave them out)."""
    out = np.full(probs.shape[1], default, np.float32)
    for v in range(probs.shape[1]):
        order = np.argsort(-probs[:, v], kind="stable")
        hits = labels[order, v].astype(bool)
        if hits.sum() < max(1, min_positives):
            continue
        precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
        ok = np.flatnonzero((precision >= target_precision) & hits)
        if len(ok):
            out[v] = float(probs[order[ok[-1]], v])
    return out


class SiglipTagger:
    """Tags a clip from the mean SigLIP image embedding of a few evenly spaced frames.

    Options: ``threshold`` (sigmoid probability, default 0.1, for tags without a calibrated threshold),
    ``thresholds_path`` (a thresholds file of ``workflows/calibrate_tagger.py`` for this model),
    ``thresholds`` ({label: threshold}, overrides both), ``max_tags`` (top-k, 20), ``min_subjects`` (1: keep
    the best subject even below threshold), ``num_frames`` (4), ``prompt`` (``"a photo of a {}."``, SigLIP's
    training template), ``vocab_path``, ``embed_cache`` (dir of the text-embedding cache, "" for none),
    ``max_batch`` (16 clips per image forward).
    """

    default_subdir = "siglip-so400m-patch14-384"
    #: Data files used when the option is not given (their fingerprints enter the backend revision).
    default_option_paths = {"vocab_path": str(VOCAB_PATH)}
    default_resources = Resources(num_cpus=1, num_gpus=0.125, batch_size=16, concurrency=8)

    def __init__(self, spec: BackendSpec) -> None:
        import torch
        from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

        from dataset_builder.models import provenance

        model_fingerprint, library_versions = provenance.model_fingerprint, provenance.library_versions

        opts = spec.options
        self.threshold = float(opts.get("threshold", 0.1))
        self.max_tags = int(opts.get("max_tags", 20))
        self.num_frames = int(opts.get("num_frames", 4))
        self.vocab = load_vocab(opts.get("vocab_path", self.default_option_paths["vocab_path"]))
        self.min_subjects = int(opts.get("min_subjects", 1))
        self.template = template = str(opts.get("prompt", "a photo of a {}."))

        path = loading.resolve_model_dir(spec, self.default_subdir)
        self.fingerprint = model_fingerprint(path)
        calibrated = (load_thresholds(opts["thresholds_path"], self.fingerprint, template)
                      if opts.get("thresholds_path") else {})
        self.thresholds = tag_thresholds(self.vocab, self.threshold, dict(opts.get("thresholds", {})), calibrated)
        self.model, self.device, self.dtype = loading.load_model(AutoModel, path, spec)
        self.image_processor = loading.load_pretrained(AutoImageProcessor, path, spec)
        tokenizer = loading.load_pretrained(AutoTokenizer, path, spec)
        # SigLIP was trained on max_length padding; other padding shifts its text embeddings.
        max_len = self.model.config.text_config.max_position_embeddings

        def encode(prompts: list[str]) -> np.ndarray:
            text = tokenizer(prompts, padding="max_length", truncation=True, max_length=max_len, return_tensors="pt")
            with torch.inference_mode():
                feats = _as_tensor(self.model.get_text_features(input_ids=text["input_ids"].to(self.device)))
            return feats.float().cpu().numpy()

        cache = opts.get("embed_cache", EMBED_CACHE)
        # the key names everything the embeddings depend on besides the prompts (hashed in text_embeddings):
        # an upgraded torch/transformers or another device must not read another's cached embeddings
        versions = ",".join(f"{k}={v}" for k, v in library_versions({"torch", "transformers"}).items())
        runtime = hashlib.sha1(f"{versions};{getattr(self.device, 'type', self.device)}".encode()).hexdigest()[:8]
        embeds = text_embeddings(encode, [template.format(entry.label) for entry in self.vocab],
                                 f"{self.fingerprint}-{self.dtype}-{max_len}-{runtime}".replace("torch.", ""),
                                 cache or None)
        self.text_embeds = torch.from_numpy(embeds).to(self.device)
        self.logit_scale = float(self.model.logit_scale.detach().exp())
        self.logit_bias = float(self.model.logit_bias.detach())
        self.stats = CallStats()
        self.runner = BatchRunner(int(opts.get("max_batch", 16)), self.stats)

    def probabilities(self, frames: np.ndarray) -> np.ndarray:
        """Sigmoid probability of every vocabulary label for the clip, shape ``(len(vocab),)``."""
        return self.probabilities_many([frames])[0]

    def probabilities_many(self, clips: list[np.ndarray]) -> list[np.ndarray]:
        """:meth:`probabilities` of several clips: the keyframes of up to ``max_batch`` clips go through
        the image tower in one forward (halved on out-of-memory)."""
        return self.runner.run("siglip_image", clips, self._probabilities)

    def _probabilities(self, clips: list[np.ndarray]) -> list[np.ndarray]:
        import torch

        picked = [frames[loading.sample_indices(len(frames), self.num_frames)] for frames in clips]
        images = [image for frames in picked for image in frames]
        pixels = self.image_processor(images=images, return_tensors="pt")["pixel_values"]
        with torch.inference_mode():
            feats = _as_tensor(self.model.get_image_features(pixel_values=pixels.to(self.device, self.dtype)))
        feats = torch.nn.functional.normalize(feats.float(), dim=-1)
        out, first = [], 0
        for frames in picked:
            image = torch.nn.functional.normalize(feats[first:first + len(frames)].mean(0), dim=-1)
            first += len(frames)
            logits = self.text_embeds @ image * self.logit_scale + self.logit_bias
            out.append(torch.sigmoid(logits).cpu().numpy())
        return out

    def tag(self, frames: np.ndarray) -> list[Tag]:
        return self.tag_clips([frames])[0]

    def tag_clips(self, clips: list[np.ndarray]) -> list[list[Tag]]:
        """Tags of every clip of a Ray batch, their keyframes in one image forward per ``max_batch`` clips."""
        return [select_tags(probs, self.vocab, self.thresholds, self.max_tags, self.min_subjects)
                for probs in self.probabilities_many(clips)]


def _as_tensor(out):
    """``get_*_features`` return a tensor in transformers 4.x and an output object in some 5.x models."""
    return out if hasattr(out, "float") else out.pooler_output
