"""Static QA report that opens from disk (file://), for sharing a build without running a server.

    python -m dashboard.export --data out/coarse --out out/coarse/qa

Writes ``index.html`` (styles, data and the small filter script inline: browsers block fetch() from
file://), ``data.json`` (the same data for scripts) and ``sheets/<key>.png`` contact sheets
(first/middle/last frame of fg, alpha, bg, blend). All references are relative.
"""

from __future__ import annotations

import argparse
import json
import math
from html import escape
from pathlib import Path

from dashboard.data import Dataset
from dashboard.media import sample_contact_sheet
from dashboard.server import STATIC_DIR, _finite

_EXTRA_CSS = """
.report section { margin-top: 14px; }
.srow { display: grid; grid-template-columns: minmax(360px, 640px) 1fr; gap: 14px; background: var(--panel);
  border: 1px solid var(--line); border-radius: 8px; padding: 12px; margin-bottom: 12px; }
.srow img { width: 100%; border: 1px solid var(--line); border-radius: 4px; }
.srow .meta { display: flex; flex-direction: column; gap: 6px; }
.hidden { display: none !important; }
"""

_FILTER_JS = """
const box = document.getElementById("filter");
box.addEventListener("input", () => {
  const needle = box.value.trim().toLowerCase();
  let shown = 0;
  document.querySelectorAll(".srow").forEach((row) => {
    const hit = !needle || row.dataset.text.includes(needle);
    row.classList.toggle("hidden", !hit);
    shown += hit;
  });
  document.getElementById("shown").textContent = shown;
});
"""


def _bars(counts: dict[str, int], cls: str = "") -> str:
    if not counts:
        return '<div class="empty">none</div>'
    top = max(counts.values())
    rows = "".join(
        f'<span class="name" title="{escape(k)}">{escape(k)}</span><div class="track"><div class="fill" '
        f'style="width:{100 * n / top:.1f}%"></div></div><span class="count">{n}</span>' for k, n in counts.items())
    return f'<div class="bars {cls}">{rows}</div>'


def _fmt(x: float | None) -> str:
    return "–" if x is None or not math.isfinite(x) else (f"{x:.0f}" if abs(x) >= 100 else f"{x:.3f}")


def _hist(name: str, hist: dict) -> str:
    top = max(hist["counts"] or [1]) or 1
    n = len(hist["counts"])
    rects = "".join(
        f'<rect class="bar" x="{i * 10 + 0.5}" width="9" y="{100 - 96 * c / top:.2f}" height="{96 * c / top:.2f}">'
        f'<title>{escape(name)} {_fmt(hist["edges"][i])}–{_fmt(hist["edges"][i + 1])}: {c}</title></rect>'
        for i, c in enumerate(hist["counts"]))
    return (f'<div class="hist"><div><b>{escape(name)}</b> <span class="muted">(n={hist["n"]})</span></div>'
            f'<svg viewBox="0 0 {n * 10} 100" preserveAspectRatio="none"><rect class="base" x="0" y="99" '
            f'width="{n * 10}" height="1"></rect>{rects}</svg><div class="axis"><span>{_fmt(hist["edges"][0])}'
            f'</span><span>{_fmt(hist["edges"][-1])}</span></div></div>')


def _kv(items: dict) -> str:
    rows = "".join(f'<tr><td>{escape(str(k))}</td><td class="mono">'
                   f'{escape(json.dumps(v) if isinstance(v, (dict, list)) else str(v))}</td></tr>'
                   for k, v in items.items())
    return f'<table class="kv">{rows}</table>'


def _sample_html(row: dict, record: dict | None, sheet: str) -> str:
    rec = record or {}
    caps = rec.get("captions") or {"fg": row["caption_fg"], "bg": row["caption_bg"], "blend": row["caption_blend"]}
    text = " ".join([row["key"], row["label"], row["kind"], *row["tags"], *caps.values()]).lower()
    tags = "".join(f'<span class="chip">{escape(t)}</span>' for t in row["tags"])
    captions = "".join(f'<div class="cap"><span class="which">{i}, {layer}</span>'
                       f'<span>{escape(caps[layer])}</span></div>'
                       for i, layer in enumerate(("fg", "bg", "blend")))
    scores = {k: _fmt(v) for k, v in row["scores"].items()}
    prov = rec.get("provenance") or {"source_uri": row["source_uri"], "start_frame": row["start_frame"]}
    return (
        f'<div class="srow" id="{escape(row["key"])}" data-text="{escape(text)}">'
        f'<a href="{escape(sheet)}"><img src="{escape(sheet)}" alt="contact sheet of {escape(row["key"])}" '
        f'loading="lazy"></a><div class="meta"><div><span class="key mono">{escape(row["key"])}</span> '
        f'<span class="chip label">{escape(row["label"])}</span><span class="chip kind">{escape(row["kind"])}</span>'
        f'{tags}</div><div class="muted">{row["num_frames"]} frames · {row["width"]}×{row["height"]} · '
        f'{row["fps"]:.2f} fps · {escape(row["shard"])}</div><div class="captions">{captions}</div>'
        f'{_kv(scores)}{_kv(prov)}</div></div>')


def export_report(data_dir: str | Path, out_dir: str | Path, limit: int | None = None) -> dict:
    """Write the report; returns counts. ``limit`` caps how many samples get a contact sheet."""
    dataset = Dataset(data_dir)
    out = Path(out_dir)
    (out / "sheets").mkdir(parents=True, exist_ok=True)
    summary = dataset.summary()
    rows = dataset.manifest[:limit] if limit is not None else dataset.manifest
    samples_html, records = [], {}
    for row in rows:
        sheet = f"sheets/{row['key']}.png"
        (out / sheet).write_bytes(sample_contact_sheet(dataset, row["key"]))
        records[row["key"]] = dataset.record(row["key"])
        samples_html.append(_sample_html(row, records[row["key"]], sheet))
    data = {"root": str(dataset.root), "overview": summary, "samples": rows, "records": records,
            "rejects": dataset.rejects}
    payload = json.dumps(_finite(data), allow_nan=False)
    (out / "data.json").write_text(payload)

    stages = "".join(f'<div class="stage"><div class="stage-name">{escape(stage)} <span class="muted">— {n}</span>'
                     f'</div>{_bars(summary["reject_reasons"][stage], "warn")}</div>'
                     for stage, n in summary["reject_stages"].items()) or '<div class="empty">no rejects</div>'
    hists = "".join(_hist(name, summary["score_hists"][name]) for name in summary["score_names"])
    rejects = "".join(
        f'<tr><td><span class="stagechip">{escape(r["stage"])}</span></td><td>{escape(r["reason"])}</td>'
        f'<td class="mono">{escape(r["source_uri"])}</td><td class="mono">{escape(r["clip_id"] or "–")}</td>'
        f'<td class="detail">{escape(r["detail"])}</td></tr>' for r in dataset.rejects)
    cards = "".join(f'<div class="card"><div class="num">{escape(str(v))}</div><div class="lbl">{k}</div></div>'
                    for k, v in (("samples", summary["samples"]), ("shards", summary["shards"]),
                                 ("rejects", summary["rejects"]), ("clips", summary["clips"]),
                                 ("source videos", summary["sources"])))
    css = (STATIC_DIR / "style.css").read_text() + _EXTRA_CSS
    html = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>LayerFlow dataset QA report</title>
<style>{css}</style></head>
<body><header class="topbar"><span class="brand">LayerFlow dataset QA report</span>
<span id="root">{escape(str(dataset.root))}</span></header>
<main class="report">
<div class="cards">{cards}</div>
<div class="grid2">
<section class="panel"><h3>Labels</h3>{_bars(summary["labels"])}</section>
<section class="panel"><h3>Rejects by stage and reason</h3>{stages}</section>
<section class="panel"><h3>Kinds</h3>{_bars(summary["kinds"])}<h3 style="margin-top:14px">Tags</h3>
{_bars(dict(list(summary["tags"].items())[:30]))}</section></div>
<section class="panel"><h3>Score histograms</h3><div class="hists">{hists or '<div class="empty">no scores</div>'}</div>
</section>
<section><h2>Samples (<span id="shown">{len(rows)}</span> of {summary["samples"]})</h2>
<div class="filters"><input id="filter" class="search" type="search" placeholder="filter: label, tag, caption, key">
</div>{"".join(samples_html) or '<div class="empty">no samples</div>'}</section>
<section><h2>Rejects ({len(dataset.rejects)})</h2><div class="panel" style="padding:0;overflow:auto">
<table class="list"><thead><tr><th>stage</th><th>reason</th><th>source</th><th>clip</th><th>detail</th></tr></thead>
<tbody>{rejects}</tbody></table></div></section>
<p class="muted">Data: <a href="data.json">data.json</a></p>
</main><script>{_FILTER_JS}</script></body></html>
"""
    (out / "index.html").write_text(html)
    return {"samples": len(rows), "sheets": len(rows), "rejects": len(dataset.rejects), "out": str(out)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="write a static QA report of a built dataset")
    parser.add_argument("--data", required=True, help="dataset directory (contains shards/, _stats/)")
    parser.add_argument("--out", required=True, help="report directory (created)")
    parser.add_argument("--limit", type=int, default=None, help="at most this many samples (first in manifest)")
    args = parser.parse_args(argv)
    print(export_report(args.data, args.out, args.limit))


if __name__ == "__main__":
    main()
