import io
import json
import re
from html.parser import HTMLParser

from PIL import Image

from dashboard.export import export_report
from tests.dashboard.conftest import SAMPLES, H, W


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs = []

    def handle_starttag(self, tag, attrs):
        self.refs += [v for k, v in attrs if k in ("src", "href") and v]


def test_export_writes_self_contained_report(tiny_dataset, tmp_path):
    out = tmp_path / "qa"
    result = export_report(tiny_dataset, out)
    assert result["samples"] == 3 and result["rejects"] == 3
    html = (out / "index.html").read_text()
    parser = _Refs()
    parser.feed(html)
    local = [r for r in parser.refs if not r.startswith("#")]
    assert local, "report references no assets"
    for ref in local:
        assert not re.match(r"^[a-z]+:|^/", ref), f"not a relative reference: {ref}"  # opens from disk
        assert (out / ref).is_file(), ref
    sheets = sorted(p.name for p in (out / "sheets").glob("*.png"))
    assert sheets == sorted(f"{k}.png" for k in SAMPLES)
    for key in SAMPLES:
        assert f"sheets/{key}.png" in local
        img = Image.open(out / "sheets" / f"{key}.png")
        # 4 layer rows of tiles at least as tall as the 200-px-wide tile of a 16x32 frame
        assert img.size[1] >= 4 * (200 * H // W)
    data = json.loads((out / "data.json").read_text())
    assert data["overview"]["samples"] == 3 and len(data["rejects"]) == 3
    assert data["records"]["clipb_00"]["captions"]["blend"] == SAMPLES["clipb_00"][4]
    for _, (*_, blend_caption) in SAMPLES.items():
        assert blend_caption in html
    assert "<script src" not in html and "<link" not in html  # css and js are inline


def test_export_limit(tiny_dataset, tmp_path):
    result = export_report(tiny_dataset, tmp_path / "qa", limit=1)
    assert result["samples"] == 1 and len(list((tmp_path / "qa" / "sheets").glob("*.png"))) == 1
    Image.open(io.BytesIO((tmp_path / "qa" / "sheets" / "clipa_00.png").read_bytes())).verify()
