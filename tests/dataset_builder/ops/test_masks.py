import numpy as np


def test_containment_dedup_drops_a_part_beside_its_whole():
    from dataset_builder.ops.masks import containment, dedup_sequences, temporal_iou

    whole = np.zeros((4, 40, 40), np.uint8)
    whole[:, 5:35, 5:35] = 255
    part = np.zeros_like(whole)
    part[:, 10:22, 10:22] = 255  # inside the whole, IoU only 0.16
    other = np.zeros_like(whole)
    other[:, 36:40, 0:10] = 255
    assert temporal_iou(whole, part) < 0.2 and containment(whole, part) == 1.0
    assert dedup_sequences([whole, part, other], [0.9, 0.8, 0.5], 0.7) == ([0, 1, 2], [])
    kept, dropped = dedup_sequences([whole, part, other], [0.9, 0.8, 0.5], 0.7, containment_threshold=0.85)
    assert kept == [0, 2] and [(d, k) for d, k, _ in dropped] == [(1, 0)]
