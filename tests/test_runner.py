"""The shared chunked runner of the language-model studies."""

import pytest

from conjugate.lm.runner import ProgressBar, in_chunks, release
from conjugate.runs import read_jsonl


def test_in_chunks_longest_first_and_appends_each_chunk(tmp_path):
    items = [{"id": i, "prompt": "x" * n} for i, n in enumerate([3, 9, 1, 7, 5])]
    seen, advanced = [], []

    def compute(part):
        seen.append([it["id"] for it in part])
        return [{"id": it["id"], "n": len(it["prompt"])} for it in part]

    rows = in_chunks(items, 2, compute, tmp_path / "out.jsonl", advanced.append)
    assert seen == [[1, 3], [4, 0], [2]]
    assert advanced == [2, 2, 1]
    assert [r["n"] for r in rows] == [9, 7, 5, 3, 1]
    assert list(read_jsonl(tmp_path / "out.jsonl")) == rows


def test_in_chunks_keeps_finished_chunks_when_a_later_one_fails(tmp_path):
    items = [{"id": i, "prompt": "x" * (10 - i)} for i in range(5)]

    def compute(part):
        if part[0]["id"] >= 2:
            raise RuntimeError("backend died")
        return [{"id": it["id"]} for it in part]

    with pytest.raises(RuntimeError, match="backend died"):
        in_chunks(items, 2, compute, tmp_path / "out.jsonl")
    assert [r["id"] for r in read_jsonl(tmp_path / "out.jsonl")] == [0, 1]


def test_in_chunks_rejects_a_bad_chunk(tmp_path):
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        in_chunks([{"prompt": "a"}], 0, lambda part: [], tmp_path / "out.jsonl")


def test_release_closes_and_progress_bar_is_silent_when_disabled():
    class Served:
        closed = False

        def close(self):
            self.closed = True

    backend = Served()
    release(backend)
    assert backend.closed
    bar = ProgressBar(False, 10, "x")
    bar.describe("y")
    bar.advance(3)
    bar.close()
    assert bar.bar is None
