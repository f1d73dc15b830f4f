// LayerFlow dataset QA dashboard: a dependency-free single-page app over the JSON API of
// dashboard/server.py. Routes live in the URL hash so every view (and filter) can be bookmarked.
"use strict";

const LAYERS = ["fg", "alpha", "bg", "blend"];
const LAYER_MEMBERS = { fg: "fg.mp4", alpha: "alpha.mkv", bg: "bg.mp4", blend: "blend.mp4" }; // schemas.LAYER_MEMBERS
const CAPTION_INDEX = { fg: 0, bg: 1, blend: 2 }; // LayerFlow prompt prefixes "0, ", "1, ", "2, "
const PAGE = 60;
const view = document.getElementById("view");
let lastList = []; // keys of the last sample page, for prev/next in the sample view
let overviewCache = null;

// -- helpers -----------------------------------------------------------------------------------
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
async function api(path) {
  const res = await fetch(path);
  const body = await res.json();
  if (!res.ok) throw new Error(body.error || res.statusText);
  return body;
}
// replaceChildren() would print a null child as the text "null".
function render(...children) { view.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false)); }
function fmtBytes(n) {
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
}
// QA scores (ops/qa.py) come first wherever scores are listed; for these, higher is worse.
const QA_WORSE_IF_HIGH = new Set(["qa_empty_frames", "qa_edge_band_px", "qa_soft_visible_share", "qa_bg_remnant"]);
function orderedScores(scores) {
  const e = Object.entries(scores || {});
  return [...e.filter(([k]) => k.startsWith("qa_")), ...e.filter(([k]) => !k.startsWith("qa_"))];
}
function fmtNum(x) { return x === null || x === undefined ? "–" : Math.abs(x) >= 100 ? x.toFixed(0) : x.toFixed(3); }
function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, qs] = raw.split("?");
  return { parts: path.split("/").filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(qs || "") };
}
function samplesHref(params) {
  const qs = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== "" && v !== null && v !== undefined));
  return "#/samples" + (qs.toString() ? "?" + qs : "");
}
function setNav(name) {
  document.querySelectorAll("[data-nav]").forEach((a) => a.classList.toggle("active", a.dataset.nav === name));
}
async function overview() {
  if (!overviewCache) overviewCache = await api("/api/overview");
  document.getElementById("root").textContent = overviewCache.root || "";
  return overviewCache;
}
function bars(counts, hrefFor, cls) {
  const entries = Object.entries(counts);
  if (!entries.length) return h("div", { class: "empty" }, "none");
  const max = Math.max(...entries.map(([, n]) => n));
  return h("div", { class: "bars " + (cls || "") }, entries.flatMap(([name, n]) => [
    hrefFor ? h("a", { class: "name", href: hrefFor(name), title: name }, name) : h("span", { class: "name", title: name }, name),
    h("div", { class: "track" }, h("div", { class: "fill", style: `width:${(100 * n) / max}%` })),
    h("span", { class: "count" }, n),
  ]));
}
function histogram(name, hist) {
  const svgNS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(svgNS, "svg");
  const n = hist.counts.length, max = Math.max(1, ...hist.counts);
  svg.setAttribute("viewBox", `0 0 ${n * 10} 100`);
  svg.setAttribute("preserveAspectRatio", "none");
  const base = document.createElementNS(svgNS, "rect");
  base.setAttribute("x", 0); base.setAttribute("y", 99); base.setAttribute("width", n * 10); base.setAttribute("height", 1);
  base.setAttribute("class", "base");
  svg.append(base);
  hist.counts.forEach((c, i) => {
    const r = document.createElementNS(svgNS, "rect");
    const ht = (96 * c) / max;
    r.setAttribute("x", i * 10 + 0.5); r.setAttribute("width", 9);
    r.setAttribute("y", 100 - ht); r.setAttribute("height", Math.max(ht, c ? 1 : 0));
    r.setAttribute("class", "bar");
    const lo = hist.edges[i], hi = hist.edges[i + 1];
    const t = document.createElementNS(svgNS, "title");
    t.textContent = `${name} ${fmtNum(lo)}–${fmtNum(hi)}: ${c}`;
    r.append(t);
    r.addEventListener("click", () => { location.hash = samplesHref({ score: name, min: lo, max: hi }); });
    svg.append(r);
  });
  return h("div", { class: "hist" }, h("div", {}, h("b", {}, name), h("span", { class: "muted" }, ` (n=${hist.n})`)), svg,
    h("div", { class: "axis" }, h("span", {}, fmtNum(hist.edges[0])), h("span", {}, fmtNum(hist.edges[n]))));
}

// -- overview ----------------------------------------------------------------------------------
async function renderOverview() {
  setNav("overview");
  overviewCache = null;
  const o = await overview();
  const card = (num, lbl) => h("div", { class: "card" }, h("div", { class: "num" }, num), h("div", { class: "lbl" }, lbl));
  const stages = Object.entries(o.reject_stages).map(([stage, n]) => h("div", { class: "stage" },
    h("div", { class: "stage-name" }, h("a", { href: `#/rejects?stage=${encodeURIComponent(stage)}` }, stage), h("span", { class: "muted" }, ` — ${n}`)),
    bars(o.reject_reasons[stage], null, "warn")));
  render(
    h("div", { class: "cards" },
      card(o.samples, "samples"), card(o.shards, "shards"), card(o.rejects, "rejects"), card(o.clips, "clips"),
      card(o.sources, "source videos"), card(fmtBytes(o.bytes), "sample bytes"),
      card(Object.keys(o.shapes).join(", ") || "–", "frames × H × W")),
    h("div", { class: "grid2" },
      h("section", { class: "panel" }, h("h3", {}, "Labels"), bars(o.labels, (l) => samplesHref({ label: l }))),
      h("section", { class: "panel" }, h("h3", {}, "Rejects by stage and reason"), stages.length ? stages : h("div", { class: "empty" }, "no rejects")),
      h("section", { class: "panel" }, h("h3", {}, "Kinds"), bars(o.kinds, (k) => samplesHref({ kind: k })),
        h("h3", { style: "margin-top:14px" }, "Tags"), bars(Object.fromEntries(Object.entries(o.tags).slice(0, 30)), (t) => samplesHref({ tag: t })))),
    h("section", { class: "panel", style: "margin-top:14px" }, h("h3", {}, "Score histograms (click a bar to list those samples)"),
      o.score_names.length ? h("div", { class: "hists" }, o.score_names.map((s) => histogram(s, o.score_hists[s])))
        : h("div", { class: "empty" }, "no scores")));
}

// -- samples grid ------------------------------------------------------------------------------
async function renderSamples(params) {
  setNav("samples");
  const o = await overview();
  const f = Object.fromEntries(["label", "tag", "kind", "score", "min", "max", "q", "sort", "order", "offset"].map((k) => [k, params.get(k) || ""]));
  const offset = parseInt(f.offset || "0", 10);
  const apply = (patch) => { location.hash = samplesHref({ ...f, offset: "", ...patch }); };
  const select = (name, options, label) => h("label", {}, label,
    h("select", { onchange: (e) => apply({ [name]: e.target.value }) },
      h("option", { value: "" }, "any"), options.map((v) => h("option", { value: v, selected: v === f[name] }, v))));
  const num = (name, ph) => h("input", { class: "num", type: "number", step: "any", placeholder: ph, value: f[name],
    onchange: (e) => apply({ [name]: e.target.value }) });
  const search = h("input", { class: "search", type: "search", placeholder: "caption / key / label text", value: f.q,
    onkeydown: (e) => { if (e.key === "Enter") apply({ q: e.target.value }); } });
  const qs = new URLSearchParams(Object.entries({ ...f, offset, limit: PAGE }).filter(([, v]) => v !== ""));
  const res = await api("/api/samples?" + qs);
  lastList = res.items.map((r) => r.key);
  const cards = res.items.map((r) => h("a", { class: "scard", href: `#/sample/${encodeURIComponent(r.key)}` },
    h("img", { src: `/thumb/${encodeURIComponent(r.key)}.png`, loading: "lazy", alt: r.key }),
    h("div", { class: "body" },
      h("div", {}, h("span", { class: "chip label" }, r.label), h("span", { class: "chip kind" }, r.kind), r.tags.slice(0, 4).map((t) => h("span", { class: "chip" }, t))),
      h("div", { class: "cap", title: r.caption_blend }, r.caption_blend),
      h("div", { class: "scores" }, (f.sort && f.sort in r.scores ? [[f.sort, r.scores[f.sort]]] : [])
        .concat(orderedScores(r.scores).filter(([k]) => k !== f.sort)).slice(0, 4)
        .map(([k, v]) => `${k.replace(/^qa_/, "")} ${fmtNum(v)}`).join(" · ")),
      h("div", { class: "key", title: r.key }, r.key))));
  render(
    h("div", { class: "filters" },
      select("label", Object.keys(o.labels), "label"), select("tag", Object.keys(o.tags), "tag"),
      select("kind", Object.keys(o.kinds), "kind"), select("score", o.score_names, "score"),
      h("label", {}, "min", num("min", "min")), h("label", {}, "max", num("max", "max")),
      select("sort", o.score_names, "sort by"),
      h("label", {}, "order", h("select", { onchange: (e) => apply({ order: e.target.value }) },
        ["asc", "desc"].map((v) => h("option", { value: v === "asc" ? "" : v, selected: (f.order || "") === (v === "asc" ? "" : v) }, v)))),
      h("label", {}, "search", search),
      h("button", { onclick: () => apply({ q: search.value }) }, "Apply"),
      h("button", { onclick: () => { location.hash = "#/samples"; } }, "Clear")),
    h("div", { class: "muted" }, `${res.total} sample${res.total === 1 ? "" : "s"} match`),
    pager(res, (off) => apply({ offset: off || "" })),
    cards.length ? h("div", { class: "sgrid" }, cards) : h("div", { class: "empty" }, "No sample matches these filters."),
    pager(res, (off) => apply({ offset: off || "" })));
}
function pager(res, go) {
  if (res.total <= res.limit) return null;
  return h("div", { class: "pager" },
    h("button", { disabled: res.offset === 0, onclick: () => go(Math.max(0, res.offset - res.limit)) }, "‹ prev"),
    h("span", { class: "muted" }, `${res.offset + 1}–${Math.min(res.total, res.offset + res.limit)} of ${res.total}`),
    h("button", { disabled: res.offset + res.limit >= res.total, onclick: () => go(res.offset + res.limit) }, "next ›"));
}

// -- sample view: four layers played in lockstep -----------------------------------------------
async function renderSample(key) {
  setNav("samples");
  const s = await api(`/api/sample/${encodeURIComponent(key)}`);
  const rec = s.record || {}, row = s.row;
  const fps = row.fps || 8, nFrames = row.num_frames;
  const videos = {};
  const players = LAYERS.filter((l) => s.layers[l]).map((l) => {
    const v = h("video", { src: s.layers[l], muted: true, playsinline: true, preload: "auto", loop: false });
    v.muted = true;
    videos[l] = v;
    return h("div", { class: "player" },
      h("div", { class: "title" }, h("span", {}, l), h("a", { href: s.members[LAYER_MEMBERS[l]].url, download: "", title: "stored member, as in the shard" }, LAYER_MEMBERS[l])), v);
  });
  const master = videos.blend || Object.values(videos)[0];
  const slider = h("input", { type: "range", min: 0, max: Math.max(0, nFrames - 1), step: 1, value: 0 });
  const counter = h("span", { class: "frame" }, `frame 0 / ${nFrames - 1}`);
  const playBtn = h("button", {}, "▶ play");
  const speed = h("select", {}, [0.25, 0.5, 1, 2].map((r) => h("option", { value: r, selected: r === 1 }, `${r}×`)));
  const all = Object.values(videos);
  const frameOf = (t) => Math.min(nFrames - 1, Math.max(0, Math.floor(t * fps + 1e-3)));
  const seekFrame = (i) => { all.forEach((v) => { v.pause(); v.currentTime = (i + 0.5) / fps; }); show(i); };
  const show = (i) => { slider.value = i; counter.textContent = `frame ${i} / ${nFrames - 1}`; };
  let raf = 0;
  const tick = () => {
    // Followers are nudged back whenever they drift more than half a frame from the master.
    const t = master.currentTime;
    for (const v of all) if (v !== master && Math.abs(v.currentTime - t) > 0.5 / fps) v.currentTime = t;
    show(frameOf(t));
    if (!master.paused) raf = requestAnimationFrame(tick);
  };
  const play = () => {
    all.forEach((v) => { v.playbackRate = parseFloat(speed.value); v.currentTime = master.currentTime; v.play().catch(() => {}); });
    playBtn.textContent = "❚❚ pause"; cancelAnimationFrame(raf); raf = requestAnimationFrame(tick);
  };
  const pause = () => { all.forEach((v) => v.pause()); playBtn.textContent = "▶ play"; seekFrame(frameOf(master.currentTime)); };
  playBtn.addEventListener("click", () => (master.paused ? play() : pause()));
  master.addEventListener("ended", () => { all.forEach((v) => { v.currentTime = 0; }); play(); }); // loop in lockstep
  slider.addEventListener("input", () => { playBtn.textContent = "▶ play"; seekFrame(parseInt(slider.value, 10)); });
  speed.addEventListener("change", () => all.forEach((v) => { v.playbackRate = parseFloat(speed.value); }));
  master.addEventListener("loadeddata", () => seekFrame(0), { once: true });

  const idx = lastList.indexOf(key);
  const navBtn = (d, label) => h("button", { disabled: idx < 0 || !lastList[idx + d],
    onclick: () => { location.hash = `#/sample/${encodeURIComponent(lastList[idx + d])}`; } }, label);
  const caps = rec.captions || { fg: row.caption_fg, bg: row.caption_bg, blend: row.caption_blend };
  const prov = rec.provenance || {};
  const kv = (obj) => h("table", { class: "kv" }, Object.entries(obj).map(([k, v]) =>
    h("tr", {}, h("td", {}, k), h("td", { class: "mono" }, typeof v === "object" && v !== null ? JSON.stringify(v) : String(v)))));
  render(
    h("div", { class: "sample-head" },
      h("span", { class: "key" }, key), h("span", { class: "chip label" }, row.label), h("span", { class: "chip kind" }, row.kind),
      h("span", { class: "muted" }, `${nFrames} frames · ${row.width}×${row.height} · ${fps.toFixed(2)} fps · object ${row.object_id}`),
      h("span", { class: "nav" }, navBtn(-1, "‹ prev"), h("a", { href: "#/samples" }, "grid"), navBtn(1, "next ›"))),
    h("div", { class: "players" }, players),
    h("div", { class: "controls" }, playBtn,
      h("button", { onclick: () => seekFrame(Math.max(0, parseInt(slider.value, 10) - 1)) }, "◀ frame"),
      h("button", { onclick: () => seekFrame(Math.min(nFrames - 1, parseInt(slider.value, 10) + 1)) }, "frame ▶"),
      slider, counter, speed),
    h("div", { class: "grid2", style: "margin-top:0" },
      h("section", { class: "panel captions" }, h("h3", {}, "Captions"),
        ["fg", "bg", "blend"].map((l) => h("div", { class: "cap" }, h("span", { class: "which" }, `${CAPTION_INDEX[l]}, ${l}`), h("span", {}, caps[l])))),
      h("section", { class: "panel" }, h("h3", {}, "Tags"),
        (rec.tags || row.tags).length ? (rec.tags || row.tags).map((t) => h("a", { class: "chip", href: samplesHref({ tag: t }) }, t)) : h("span", { class: "muted" }, "none"),
        h("h3", { style: "margin-top:12px" }, "QA scores"),
        qaTable(rec.scores || row.scores),
        h("h3", { style: "margin-top:12px" }, "Other scores"),
        kv(Object.fromEntries(orderedScores(rec.scores || row.scores).filter(([k]) => !k.startsWith("qa_")).map(([k, v]) => [k, fmtNum(v)]))),
        h("h3", { style: "margin-top:12px" }, "Sample"),
        kv({ clip_id: row.clip_id, shard: row.shard, motion_scale: rec.motion_scale ?? "null (real video)", fg_fill: rec.fg_fill ?? "", schema_version: rec.schema_version || row.schema_version })),
      h("section", { class: "panel" }, h("h3", {}, "Provenance"), kv(prov),
        h("h3", { style: "margin-top:12px" }, "Members"),
        kv(Object.fromEntries(Object.entries(s.members).map(([suf, m]) => [suf, fmtBytes(m.size)]))))),
    h("section", { class: "panel sheet", style: "margin-top:14px" }, h("h3", {}, "First / middle / last frame"),
      h("img", { src: s.sheet, alt: "contact sheet", loading: "lazy" })));
}

// QA scores of one sample: each links to the samples grid sorted by it, worst first.
function qaTable(scores) {
  const qa = orderedScores(scores).filter(([k]) => k.startsWith("qa_"));
  if (!qa.length) return h("span", { class: "muted" }, "none (built without the layer_qa stage)");
  return h("table", { class: "kv" }, qa.map(([k, v]) => h("tr", {},
    h("td", {}, h("a", { href: samplesHref({ sort: k, order: QA_WORSE_IF_HIGH.has(k) ? "desc" : "" }),
      title: "list samples by this score, worst first" }, k.replace(/^qa_/, ""))),
    h("td", { class: "mono" }, fmtNum(v)))));
}

// -- rejects -----------------------------------------------------------------------------------
async function renderRejects(params) {
  setNav("rejects");
  const o = await overview();
  const stage = params.get("stage") || "", q = params.get("q") || "", offset = parseInt(params.get("offset") || "0", 10);
  const go = (patch) => {
    const qs = new URLSearchParams(Object.entries({ stage, q, offset: "", ...patch }).filter(([, v]) => v !== "" && v !== 0));
    location.hash = "#/rejects" + (qs.toString() ? "?" + qs : "");
  };
  const res = await api("/api/rejects?" + new URLSearchParams({ stage, q, offset, limit: 200 }));
  const search = h("input", { class: "search", type: "search", placeholder: "reason / detail / source", value: q,
    onkeydown: (e) => { if (e.key === "Enter") go({ q: e.target.value }); } });
  render(
    h("div", { class: "filters" },
      h("label", {}, "stage", h("select", { onchange: (e) => go({ stage: e.target.value }) }, h("option", { value: "" }, "any"),
        Object.keys(o.reject_stages).map((s) => h("option", { value: s, selected: s === stage }, `${s} (${o.reject_stages[s]})`)))),
      h("label", {}, "search", search), h("button", { onclick: () => go({ q: search.value }) }, "Apply")),
    h("div", { class: "muted" }, `${res.total} reject${res.total === 1 ? "" : "s"}`),
    pager(res, (off) => go({ offset: off })),
    res.items.length ? h("div", { class: "panel", style: "padding:0;overflow:auto" }, h("table", { class: "list" },
      h("thead", {}, h("tr", {}, ["stage", "reason", "source", "clip", "object", "detail", "when"].map((c) => h("th", {}, c)))),
      h("tbody", {}, res.items.map((r) => h("tr", {},
        h("td", {}, h("span", { class: "stagechip" }, r.stage)), h("td", {}, r.reason),
        h("td", { class: "mono", title: r.source_uri }, r.source_uri.split("/").slice(-2).join("/")),
        h("td", { class: "mono" }, r.clip_id || "–"), h("td", {}, r.object_id >= 0 ? r.object_id : "–"),
        h("td", { class: "detail" }, r.detail), h("td", { class: "muted" }, r.created_at))))))
      : h("div", { class: "empty" }, "No rejects."));
}

// -- router ------------------------------------------------------------------------------------
async function route() {
  const { parts, params } = parseHash();
  try {
    if (parts[0] === "samples") await renderSamples(params);
    else if (parts[0] === "sample" && parts[1]) await renderSample(parts[1]);
    else if (parts[0] === "rejects") await renderRejects(params);
    else await renderOverview();
  } catch (err) {
    render(h("div", { class: "error" }, `Could not load this view: ${err.message}`));
  }
  window.scrollTo(0, 0);
}
window.addEventListener("hashchange", route);
route();
