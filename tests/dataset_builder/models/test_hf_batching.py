"""BatchRunner: chunking, out-of-memory back-off to smaller batches, and the final OOM at one item."""

from __future__ import annotations

import pytest

from dataset_builder.models.hf.batching import BatchRunner, is_oom


class FakeModel:
    """Runs out of memory on any batch larger than ``capacity``."""

    def __init__(self, capacity: int):
        self.capacity, self.batches = capacity, []

    def __call__(self, chunk):
        if len(chunk) > self.capacity:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        self.batches.append(len(chunk))
        return [x * 10 for x in chunk]


def test_chunks_and_counts():
    runner = BatchRunner(4)
    model = FakeModel(capacity=8)
    assert runner.run("gen", list(range(10)), model) == [x * 10 for x in range(10)]
    assert model.batches == [4, 4, 2]
    assert runner.stats.calls == {"gen": 3} and runner.stats.items == {"gen": 10}


def test_oom_halves_the_batch_and_keeps_order():
    freed = []
    runner = BatchRunner(8, on_oom=lambda: freed.append(1))
    model = FakeModel(capacity=3)
    assert runner.run("gen", list(range(9)), model) == [x * 10 for x in range(9)]  # 8 -> OOM, 4 -> OOM, 2 fits
    assert runner.limit == 2 and model.batches == [2, 2, 2, 2, 1] and runner.stats.oom_retries == 2
    assert len(freed) == 2
    model.batches.clear()
    runner.run("gen", [1, 2, 3], model)
    assert model.batches == [2, 1]  # the smaller limit sticks for later calls


def test_oom_at_one_item_and_other_errors_raise():
    with pytest.raises(RuntimeError, match="out of memory"):
        BatchRunner(4).run("gen", [1, 2], FakeModel(capacity=0))

    def broken(chunk):
        raise ValueError("missing kernel")

    runner = BatchRunner(4)
    with pytest.raises(ValueError):
        runner.run("gen", [1, 2, 3], broken)
    assert runner.limit == 4 and runner.stats.oom_retries == 0


def test_is_oom():
    torch = pytest.importorskip("torch")
    assert is_oom(torch.OutOfMemoryError("x")) and is_oom(RuntimeError("CUDA out of memory."))
    assert not is_oom(RuntimeError("shape mismatch")) and not is_oom(ValueError("out of memory"))
