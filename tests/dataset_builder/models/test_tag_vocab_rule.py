"""workflows/build_tag_vocab.py: which open tags are concrete foreground object classes (segmentation prompts),
on a hand-made slice of WordNet's noun hierarchy with the roots the rule names."""

from __future__ import annotations

from workflows.build_tag_vocab import EXCLUDED_ROOTS, INCLUDED_ROOTS, WordNet, build, is_subject


def _wordnet() -> WordNet:
    tree = {"entity": None, "artifact": "entity", "person": "entity", "animal": "entity", "food": "entity",
            "location": "entity", "structure": "artifact", "way": "artifact", "facility": "artifact",
            "area": "artifact", "clothing": "artifact", "creation": "artifact", "surface": "artifact",
            "building_material": "artifact", "paving": "artifact", "fixture": "artifact", "fabric": "artifact",
            "dog": "animal", "car": "artifact", "ball": "artifact", "building": "structure", "road": "way",
            "room": "area", "shirt": "clothing", "painting": "creation", "lake": "location", "run": "entity",
            "pizza": "food", "skier": "person", "garden": "location"}
    names = sorted(tree)
    offset = {name: i + 1 for i, name in enumerate(names)}
    senses = {name: [offset[name]] for name in names}
    for lemma, n in INCLUDED_ROOTS + EXCLUDED_ROOTS:  # the rule's roots are (lemma, sense number)
        senses[lemma] = [900 + k for k in range(n - 1)] + [offset[lemma]]
    hypernyms = {offset[name]: [offset[parent]] if parent else [] for name, parent in tree.items()}
    tagged = {(name, "n"): 5 for name in names} | {("run", "v"): 50, ("ball", "v"): 1}
    return WordNet(senses, hypernyms, {offset[n]: [n] for n in names}, tagged)


def test_only_concrete_foreground_objects_are_subjects():
    wn = _wordnet()
    for label in ("dog", "car", "pizza", "skier", "police dog", "sports ball", "dogs"):
        assert is_subject(label, wn), label
    for label in ("building", "road", "room", "shirt", "painting", "lake", "garden", "run", "city view",
                  "restaurant room", "3D CG rendering", ""):
        assert not is_subject(label, wn), label


def test_curated_flags_win_and_labels_stay_unique():
    vocab = build(["dog", "lake", "dog", " car "], _wordnet(), {"lake": True, "fire truck": True})
    assert vocab == [("dog", True), ("lake", True), ("car", True), ("fire truck", True)]
