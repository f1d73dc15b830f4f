import numpy as np
import pytest

from dataset_builder.io.video import iter_frames
from dataset_builder.ops.clips import ClipPlanError, plan_clips_in_shots
from dataset_builder.ops.shots import detect_cuts, shots_from_cuts
from dataset_builder.samples.synthetic import make_synthetic_clip


def test_cut_between_two_scenes_is_found_and_pans_are_not_cuts():
    a = make_synthetic_clip(seed=1, num_frames=12, height=72, width=128, camera_pan=True).frames
    b = make_synthetic_clip(seed=2, num_frames=12, height=72, width=128, camera_pan=True).frames
    cuts, total = detect_cuts(np.concatenate([a, b]))
    assert cuts == [12] and total == 24
    assert detect_cuts(a)[0] == []


def test_real_cuts_in_bikes(bikes_path):
    cuts, total = detect_cuts(iter_frames(bikes_path)[1])
    assert total == 250
    # the five hard cuts, checked by eye; one extra split inside a whip pan is tolerated
    assert {30, 76, 137, 187, 242} <= set(cuts) and len(cuts) <= 6


def test_shots_and_plans_never_cross_cuts():
    shots = shots_from_cuts([30, 76, 137], 200)
    assert shots == [(0, 30), (30, 76), (76, 137), (137, 200)]
    plans = plan_clips_in_shots(shots, 16, 3, 3)
    assert len(plans) == 3
    for plan in plans:
        first, last = plan.frame_indices()[0], plan.frame_indices()[-1]
        assert any(s <= first and last < e for s, e in shots)
    assert [p.start_frame for p in plans] == sorted(p.start_frame for p in plans)
    with pytest.raises(ClipPlanError, match="longest 10 frames"):
        plan_clips_in_shots([(0, 10), (10, 20)], 16, 1, 2)


def test_homographies_are_memoised_by_content_and_safe_to_mutate():
    from dataset_builder.ops import motion

    clip = make_synthetic_clip(seed=4, num_frames=6, height=72, width=128, camera_pan=True).frames
    first, _ = motion.pairwise_homographies(clip, max_side=128)
    first[0, 0, 0] = 1e6  # a caller scribbling on its result must not poison the cache
    again, _ = motion.pairwise_homographies(clip.copy(), max_side=128)
    assert again[0, 0, 0] != 1e6
    np.testing.assert_allclose(again, motion._estimate_pairwise(clip, 128, 500, 1.5)[0])
    other, _ = motion.pairwise_homographies(clip[::-1].copy(), max_side=128)
    assert not np.allclose(other, again)  # different content, different answer
