"""The on-disk analysis cache: hits do not recompute, corrupt files are recomputed, keys are safe."""
from __future__ import annotations

import threading
import time

import numpy as np
import pandas as pd
import pytest

from analysis import cache
from analysis.cache import cache_path, cached, clear_cache, load_cached, make_key, safe_key


class Counter:
    """A compute function that counts its calls."""

    def __init__(self, value):
        self.value, self.calls = value, 0

    def __call__(self):
        self.calls += 1
        return self.value


def test_make_key_is_readable():
    assert make_key("class_mean", "ig", epoch=3, cls=7, n=100) == "class_mean__ig__epoch003__cls7__n100"
    assert make_key("cm", epoch=12) == "cm__epoch012"


@pytest.mark.parametrize("kind,value", [
    ("npz", np.arange(12, dtype=np.float32).reshape(3, 4)),
    ("npz", {"a": np.array([1, 2, 3]), "b": np.eye(2, dtype=np.float16)}),
    ("json", {"ece": 0.25, "bins": [1, 2, 3], "name": "x"}),
    ("parquet-or-csv", pd.DataFrame({"epoch": [1, 2], "ece": [0.1, 0.05]}, index=pd.Index([5, 6], name="row"))),
])
def test_second_call_does_not_recompute(tmp_path, kind, value):
    compute = Counter(value)
    first = cached(tmp_path, "thing__epoch001", compute, kind=kind)
    second = cached(tmp_path, "thing__epoch001", compute, kind=kind)
    assert compute.calls == 1
    assert cache_path(tmp_path, "thing__epoch001", kind).parent == tmp_path / "cache"
    for got in (first, second):
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(got, value)
            assert got.dtype == value.dtype
        elif isinstance(value, pd.DataFrame):
            pd.testing.assert_frame_equal(got, value, check_dtype=False)
        elif kind == "npz":
            assert set(got) == set(value)
            for k in value:
                np.testing.assert_array_equal(got[k], value[k])
        else:
            assert got == value


@pytest.mark.parametrize("kind,value", [
    ("npz", np.ones(5)), ("json", [1, 2]), ("parquet-or-csv", pd.DataFrame({"x": [1.0]}))])
@pytest.mark.parametrize("garbage", [b"", b"not a file of this kind \x00\xff", b"PK\x03\x04 truncated zip"])
def test_corrupt_file_is_recomputed(tmp_path, kind, value, garbage):
    path = cache_path(tmp_path, "k", kind)
    path.parent.mkdir(parents=True)
    path.write_bytes(garbage)
    compute = Counter(value)
    got = cached(tmp_path, "k", compute, kind=kind)
    assert compute.calls == 1
    assert path.read_bytes() != garbage  # rewritten
    assert load_cached(tmp_path, "k", kind) is not None


def test_missing_key_gives_default(tmp_path):
    assert load_cached(tmp_path, "nothing", "json") is None
    assert load_cached(tmp_path, "nothing", "json", default=3) == 3


def test_json_null_is_a_hit(tmp_path):
    compute = Counter(None)
    cached(tmp_path, "none", compute, kind="json")
    cached(tmp_path, "none", compute, kind="json")
    assert compute.calls == 1


def test_keys_are_safe_and_distinct(tmp_path):
    bad = "../../etc/passwd"
    path = cache_path(tmp_path, bad, "json")
    assert path.parent == tmp_path / "cache" and "/" not in safe_key(bad)
    # keys that differ only in unsafe characters must not share a file
    assert safe_key("a/b") != safe_key("a:b")
    long_a, long_b = "x" * 300 + "a", "x" * 300 + "b"
    assert safe_key(long_a) != safe_key(long_b) and len(safe_key(long_a)) <= cache.MAX_KEY_CHARS
    assert safe_key("class_mean__ig__epoch003") == "class_mean__ig__epoch003"  # readable keys unchanged
    with pytest.raises(ValueError):
        safe_key("  ")
    with pytest.raises(ValueError):
        cache_path(tmp_path, "k", "pickle")


def test_wrong_value_type_is_a_clear_error(tmp_path):
    with pytest.raises(TypeError, match="npz"):
        cached(tmp_path, "k", lambda: [1, 2], kind="npz")
    with pytest.raises(TypeError, match="DataFrame"):
        cached(tmp_path, "k", lambda: {"a": 1}, kind="parquet-or-csv")


def test_unwritable_folder_still_returns_the_value(tmp_path, monkeypatch):
    def fail(path, data):
        raise PermissionError("read-only")
    monkeypatch.setattr(cache, "atomic_write_bytes", fail)
    with pytest.warns(UserWarning, match="not cached"):
        got = cached(tmp_path, "k", lambda: {"a": 1}, kind="json")
    assert got == {"a": 1}


def test_threads_compute_once(tmp_path):
    calls = []

    def slow():
        calls.append(1)
        time.sleep(0.2)
        return np.arange(3)

    results = []
    threads = [threading.Thread(target=lambda: results.append(cached(tmp_path, "slow", slow))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(results) == 4
    for r in results:
        np.testing.assert_array_equal(r, [0, 1, 2])


def test_clear_cache(tmp_path):
    cached(tmp_path, "cm__epoch001", lambda: np.ones(2))
    cached(tmp_path, "cm__epoch002", lambda: np.ones(2))
    cached(tmp_path, "ece__epoch001", lambda: [1], kind="json")
    assert clear_cache(tmp_path, "cm__") == 2
    assert load_cached(tmp_path, "ece__epoch001", "json") == [1]
    assert clear_cache(tmp_path) == 1
    assert clear_cache(tmp_path / "nope") == 0


def test_digit_lens_cache_moves_the_files_out_of_the_run(tmp_path, monkeypatch):
    """$DIGIT_LENS_CACHE (read-only serving): files go to <root>/<runs-folder hash>/<run-id>/, none into the run."""
    import hashlib
    run_a, run_b = tmp_path / "runs-a" / "r1", tmp_path / "runs-b" / "r1"     # same run id, two runs folders
    for run in (run_a, run_b):
        run.mkdir(parents=True)
    monkeypatch.setenv("DIGIT_LENS_CACHE", str(tmp_path / "elsewhere"))
    assert cached(run_a, "k", lambda: {"a": 1}, kind="json") == {"a": 1}
    assert cached(run_b, "k", lambda: {"b": 2}, kind="json") == {"b": 2}     # not run_a's file
    assert list(run_a.iterdir()) == [] and list(run_b.iterdir()) == []
    digest = hashlib.sha1(str((tmp_path / "runs-a").resolve()).encode()).hexdigest()[:12]
    assert (tmp_path / "elsewhere" / digest / "r1" / "k.json").is_file()
    assert clear_cache(run_a) == 1 and load_cached(run_b, "k", kind="json") == {"b": 2}
    monkeypatch.delenv("DIGIT_LENS_CACHE")
    cached(run_a, "k", lambda: {"a": 1}, kind="json")
    assert (run_a / "cache" / "k.json").is_file()
