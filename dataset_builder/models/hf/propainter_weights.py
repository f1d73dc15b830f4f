"""Official ProPainter checkpoints -> the state-dict names of pytorchcv's ProPainter networks.

The released weights (github.com/sczhou/ProPainter, release v0.1.0) are ``raft-things.pth`` (RAFT,
saved from ``nn.DataParallel``: ``module.`` prefix), ``recurrent_flow_completion.pth`` and
``ProPainter.pth``. pytorchcv re-implements the same networks with different module names, so the
files do not load as they are: RAFT has 179 official keys and 169 pytorchcv keys (the official context
encoder registers each first-block BatchNorm twice, as ``norm3`` and ``downsample.1``) and only 2 names
in common. The rename rules below were written against the official module definitions' state-dict
names (tests/dataset_builder/models/data/propainter_official_keys.json lists them with their shapes) and
are checked to be a bijection onto pytorchcv's names with equal shapes.

Convert once (writes the three files the ``propainter`` backend loads)::

    python -m dataset_builder.models.hf.propainter_weights --src weights/ --dst $LAYERFLOW_MODEL_ROOT/propainter

or put the official files in the model directory: the backend converts them on load.

Licence: ProPainter's code and weights are under the S-Lab License 1.0 - non-commercial use only;
commercial use needs the authors' permission. Datasets built with the ``propainter`` inpainter inherit
that restriction (docs/models.md).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

#: Network -> released file name.
OFFICIAL_FILES = {"raft": "raft-things.pth", "rfc": "recurrent_flow_completion.pth", "propainter": "ProPainter.pth"}
#: Network -> file name the backend loads (pytorchcv's names).
CONVERTED_FILES = {"raft": "raft_things.pth", "rfc": "propainter_rfc.pth", "propainter": "propainter.pth"}

Rule = tuple[str, str | Callable[[re.Match], str]]


def _numbered(template: str, index_group: int, offset: int = 1, step: int = 1) -> Callable[[re.Match], str]:
    """Replacement rendering ``template`` ({1}, {2}... = groups) with ``{n}`` = group ``index_group`` // step
    + offset: 0-based block indices -> 1-based ``unit{n}``, ``nn.Sequential`` conv indices 0, 2, 4 (between
    activations) -> ``conv1, conv2, conv3`` (step 2)."""
    def render(m: re.Match) -> str:
        return template.format(m.group(0), *m.groups(), n=int(m.group(index_group)) // step + offset)
    return render


def _propagation(prefix: str) -> list[Rule]:
    """Second-order deformable propagation module, shared by the flow completion net and ProPainter."""
    fp = "feat_prop_module"
    return [
        (rf"^{fp}\.deform_align\.(\w+)\.conv_offset\.(\d+)\.(weight|bias)$",
         _numbered(prefix + fp + ".deform_align.{1}.conv_offset.conv{n}.conv.{3}", 2, step=2)),
        (rf"^{fp}\.deform_align\.(\w+)\.(weight|bias)$", prefix + fp + r".deform_align.\1.deform_conv.\2"),
        (rf"^{fp}\.backbone\.(\w+)\.(\d+)\.(weight|bias)$",
         _numbered(prefix + fp + ".backbone.{1}.conv{n}.conv.{3}", 2, step=2)),
    ]


RAFT_RULES: list[Rule] = [
    (r"^module\.", ""),
    (r"^([fc]net)\.conv1\.", r"\1.features.init_block.conv."),
    (r"^cnet\.norm1\.", "cnet.features.init_block.bn."),
    (r"^([fc]net)\.layer(\d)\.(\d)\.conv([12])\.", _numbered("{1}.features.stage{2}.unit{n}.body.conv{4}.conv.", 3)),
    (r"^cnet\.layer(\d)\.(\d)\.norm([12])\.", _numbered("cnet.features.stage{1}.unit{n}.body.conv{3}.bn.", 2)),
    (r"^([fc]net)\.layer(\d)\.0\.downsample\.0\.", r"\1.features.stage\2.unit1.identity_conv.conv."),
    (r"^cnet\.layer(\d)\.0\.downsample\.1\.", r"cnet.features.stage\1.unit1.identity_conv.bn."),
    (r"^([fc]net)\.conv2\.", r"\1.features.final_block."),
    (r"^update_block\.encoder\.convc([12])\.", r"update_block.encoder.conv_corr.conv_list.conv\1.conv."),
    (r"^update_block\.encoder\.convf([12])\.", r"update_block.encoder.conv_flow.conv_list.conv\1.conv."),
    (r"^update_block\.encoder\.conv\.", "update_block.encoder.conv_out.conv."),
    (r"^update_block\.gru\.conv([zrq])1\.", r"update_block.gru.horizontal_gru.conv_\1.conv."),
    (r"^update_block\.gru\.conv([zrq])2\.", r"update_block.gru.vertical_gru.conv_\1.conv."),
    (r"^update_block\.flow_head\.conv1\.", "update_block.flow_head.conv1.conv."),
    (r"^update_block\.mask\.0\.", "update_block.mask.conv1.conv."),
    (r"^update_block\.mask\.2\.", "update_block.mask.conv2."),
]
#: Official names that alias another tensor (same module registered twice); checked equal, then dropped.
RAFT_ALIASES = [(r"^module\.cnet\.layer(\d)\.0\.norm3\.(.+)$", r"module.cnet.layer\1.0.downsample.1.\2")]

_SKIP4 = "hg.skip_seq.skip4."
RFC_RULES: list[Rule] = [
    (r"^downsample\.0\.", "hg.down_seq.down1.conv.conv."),
    # encoder1/encoder2 -> down2/down3; their blocks sit at Sequential indices 0 and 2
    (r"^encoder([12])\.(\d)\.conv([12])\.0\.",
     lambda m: f"hg.down_seq.down{int(m.group(1)) + 1}.block{int(m.group(2)) // 2 + 1}.conv{m.group(3)}.conv."),
    (r"^mid_dilation\.(\d)\.(weight|bias)$", _numbered(_SKIP4 + "mid_dilation.conv{n}.conv.{2}", 1, step=2)),
    *_propagation(_SKIP4),
    (r"^feat_prop_module\.fusion\.", _SKIP4 + "feat_prop_module.fusion."),
    (r"^decoder2\.0\.", "hg.up_seq.up3.conv1.conv."),
    (r"^decoder2\.2\.conv\.", "hg.up_seq.up3.conv2.conv."),
    (r"^decoder1\.0\.", "hg.up_seq.up2.conv1.conv."),
    (r"^decoder1\.2\.conv\.", "hg.up_seq.up2.conv2.conv."),
    (r"^upsample\.0\.", "hg.up_seq.up1.conv1.conv."),
    (r"^upsample\.2\.conv\.", "hg.up_seq.up1.conv2.conv."),
    (r"^edgeDetector\.projection\.0\.", "edgeDetector.proj.conv."),
    (r"^edgeDetector\.mid_layer_([12])\.0\.", r"edgeDetector.res_unit.body.conv\1.conv."),
    (r"^edgeDetector\.out_layer\.", "edgeDetector.out_conv."),
]

PROPAINTER_RULES: list[Rule] = [
    # encoder.layers: conv/LeakyReLU pairs, conv 2k -> pytorchcv layer k
    (r"^encoder\.layers\.(\d+)\.(weight|bias)$", _numbered("encoder.layers.{n}.conv.{2}", 1, offset=0, step=2)),
    (r"^decoder\.0\.conv\.", "decoder.unit1.conv1.conv."),
    (r"^decoder\.2\.", "decoder.unit1.conv2.conv."),
    (r"^decoder\.4\.conv\.", "decoder.unit2.conv1.conv."),
    (r"^decoder\.6\.", "decoder.unit2.conv2.conv."),
    *_propagation(""),
    (r"^feat_prop_module\.fuse\.(\d)\.(weight|bias)$", _numbered("feat_prop_module.fuse.conv{n}.conv.{2}", 1, step=2)),
]

RULES = {"raft": RAFT_RULES, "rfc": RFC_RULES, "propainter": PROPAINTER_RULES}
ALIASES = {"raft": RAFT_ALIASES, "rfc": [], "propainter": []}


def rename(net: str, key: str) -> str:
    """The pytorchcv name of one official key (every matching rule applies, in order)."""
    for pattern, repl in RULES[net]:
        key = re.sub(pattern, repl, key)
    return key


def alias_of(net: str, key: str) -> str | None:
    """The official key that ``key`` duplicates, or None."""
    for pattern, target in ALIASES[net]:
        if re.match(pattern, key):
            return re.sub(pattern, target, key)
    return None


def convert_state_dict(net: str, official: Mapping[str, Any]) -> dict[str, Any]:
    """Rename an official state dict to pytorchcv's names; aliases must equal what they duplicate."""
    import torch

    out: dict[str, Any] = {}
    for key, value in official.items():
        original = alias_of(net, key)
        if original is not None:
            if original not in official or not torch.equal(official[original], value):
                raise ValueError(f"{net}: {key} should duplicate {original}")
            continue
        new = rename(net, key)
        if new in out:
            raise ValueError(f"{net}: {key} and another key both map to {new}")
        out[new] = value
    return out


def load_official(net: str, path: str | Path) -> dict[str, Any]:
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return convert_state_dict(net, state)


def convert_dir(src: str | Path, dst: str | Path) -> list[Path]:
    """Convert the three official files in ``src`` into ``dst`` (pytorchcv names); returns written paths."""
    import torch

    src, dst = Path(src), Path(dst)
    missing = [name for name in OFFICIAL_FILES.values() if not (src / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{src} lacks the official ProPainter files {missing}")
    dst.mkdir(parents=True, exist_ok=True)
    written = []
    for net, name in OFFICIAL_FILES.items():
        out = dst / CONVERTED_FILES[net]
        torch.save(load_official(net, src / name), out)
        written.append(out)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Convert official ProPainter weights for the propainter backend")
    parser.add_argument("--src", required=True, help="directory with raft-things.pth, recurrent_flow_completion.pth, "
                                                     "ProPainter.pth")
    parser.add_argument("--dst", required=True, help="model directory of the inpaint stage")
    args = parser.parse_args(argv)
    for path in convert_dir(args.src, args.dst):
        print(path)


if __name__ == "__main__":
    main()
