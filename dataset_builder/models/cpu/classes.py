"""COCO class names as the CPU backends use them: groups, riders, naming from votes, captions' bookkeeping.

YOLOv3-tiny's classes are shared by the segmenter (object labels), the tagger (clip tags) and the
captioner (what else stays in a bg); this module is the one place that says which names are the same
thing ("sheep" and "dog" are both an "animal"), and that a rider and what they ride are one object.
"""

from __future__ import annotations

import numpy as np

#: Placeholder label of a track no class box vouched for (see ``models.base.is_placeholder``).
SALIENT_LABEL = "salient object"

#: COCO classes YOLOv3-tiny confuses within their group (a dog is a "sheep", a van a "truck") under a
#: name that is still true; classes outside these groups have no honest generic word but "object".
#: "person" is its own group: YOLO's most reliable class (a tennis player's boxes are weak, not wrong).
GROUP_OF = {
    "person": "person",
    **{c: "animal" for c in ("bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra",
                             "giraffe")},
    **{c: "vehicle" for c in ("bicycle", "car", "motorbike", "motorcycle", "aeroplane", "airplane", "bus",
                              "train", "truck", "boat")},
}

#: Tag of a clip with several people at once (the CPU tagger's ``group_min_people``): what stays in the
#: bg of each person taken out of it.
GROUP_OF_PEOPLE = "group of people"

#: A person on these is one object with it (a rider), never two to separate.
RIDDEN = {"bicycle", "motorbike", "motorcycle", "horse", "elephant", "skateboard", "surfboard"}
#: Groups of those ("animal", "vehicle"): a label that says only the group may be a ridden one.
RIDDEN_GROUPS = {GROUP_OF[c] for c in RIDDEN if c in GROUP_OF}


def rider_pair(a: str, b: str) -> bool:
    return (a == "person" and b in RIDDEN) or (b == "person" and a in RIDDEN)


def class_votes(votes: list[dict[str, float]], num_frames: int, min_share: float = 0.5,
                min_confidence: float = 0.5) -> list[str]:
    """The names that ``votes`` (one {class: confidence} per frame looked at, ``num_frames`` of them)
    support, best supported first, precision first. A class is named only when it was seen on at least
    ``min_share`` of the frames with mean confidence >= ``min_confidence`` and no other class of its
    group competes (YOLOv3-tiny calls the DAVIS dog a "sheep" on 2 of 9 keyframes). Otherwise its group
    ("animal", "vehicle") when the group was seen on at least two frames."""
    seen: dict[str, list[float]] = {}
    for vote in votes:
        for name, conf in vote.items():
            seen.setdefault(name, []).append(conf)
    need = min_share * max(1, num_frames)
    names: list[tuple[float, str]] = []
    for name, confs in seen.items():
        group = GROUP_OF.get(name)
        rivals = group is not None and any(GROUP_OF.get(o) == group for o in seen if o != name)
        if len(confs) >= need and float(np.mean(confs)) >= min_confidence and not rivals:
            names.append((sum(confs), name))
    named_groups = {GROUP_OF.get(x) for _, x in names}
    for group in sorted(set(GROUP_OF.values()) - named_groups):
        anchors = [max(c for n, c in v.items() if GROUP_OF.get(n) == group) for v in votes
                   if any(GROUP_OF.get(n) == group for n in v)]
        if len(anchors) >= 2:
            names.append((sum(anchors), group))
    names.sort(reverse=True)
    return [x for _, x in names]


def vote_label(votes: list[dict[str, float]], num_keyframes: int, min_share: float = 0.5,
               min_confidence: float = 0.5) -> str:
    """The label of a track from the class boxes its keyframe regions covered (``votes``: one
    {class: confidence} per anchor; see :func:`class_votes`): up to two names join ("person and horse"
    for a rider), :data:`SALIENT_LABEL` (a placeholder) when no class has the evidence."""
    names = class_votes(votes, num_keyframes, min_share, min_confidence)
    return " and ".join(names[:2]) if names else SALIENT_LABEL


def label_words(label: str) -> set[str]:
    """The names a label joins: "person and horse" -> {person, horse}."""
    return {w.strip() for w in label.split(" and ") if w.strip()}


def label_classes(label: str) -> set[str]:
    """The class names and groups a label stands for: "person and horse" -> {person, horse, animal}."""
    words = label_words(label)
    return words | {GROUP_OF[w] for w in words if w in GROUP_OF}


def part_of(name: str, label: str) -> bool:
    """Whether an object labelled ``label`` may be what a tag ``name`` saw: each class the tag names
    ("person and horse" names two) is the label's class or group ("sheep" in an "animal"), or its
    rider / what it rides (the "person" on a "vehicle", a "horse" under a "person"). Captions use it
    not to list an object's own parts as other content of its background (precision first: a person
    beside a car is left unsaid rather than a rider claimed to stay behind)."""
    classes = label_classes(label)
    # a ridden class, or a group name only ("animal": which one is unknown, it may be a horse)
    ridden = label_words(label) & (RIDDEN | RIDDEN_GROUPS)

    def one(word: str) -> bool:
        group = GROUP_OF.get(word)
        if word in classes or (group is not None and group in classes):
            return True
        if word == "person":
            return bool(ridden)
        return (word in RIDDEN or word in RIDDEN_GROUPS) and "person" in classes

    words = label_words(name)
    return bool(words) and all(one(w) for w in words)
