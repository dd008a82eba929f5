"""The on-disk cache for slow analysis results, one file per key in the run's cache folder.

The folder is `model.runs.cache_dir(run)`: `<run_dir>/cache/` by default, or
`$DIGIT_LENS_CACHE/<runs-folder-hash>/<run-id>/` when $DIGIT_LENS_CACHE is set. A read-only server
(dashboard/mode.py) sets it to `${XDG_CACHE_HOME:-~/.cache}/digit-lens` unless it is set already, so
serving a class never writes into a run folder.

Usage:
    from analysis.cache import cached, make_key

    key = make_key("class_mean", "ig", epoch=3, cls=7, n=100)   # "class_mean__ig__epoch003__cls7__n100"
    heatmap = cached(run_dir, key, lambda: slow_compute(...), kind="npz")

What each kind stores and gives back:
    "npz"             a np.ndarray, or a dict of str -> np.ndarray   -> <key>.npz
    "json"            anything json.dumps accepts (dict, list, numbers, strings) -> <key>.json
    "parquet-or-csv"  a pd.DataFrame: parquet when pyarrow is installed (keeps dtypes and
                      index), else CSV                                   -> <key>.parquet / .csv

Rules:
    * The key is the whole identity of a result. Put in it everything the result depends on
      (method, epoch, class, sample size, ...) and a version tag ("v2") when the computation changes.
      Checkpoints of a finished epoch never change, so results keyed by epoch never go stale.
    * Files are written atomically (model.runs.atomic_write_bytes): a reader sees a whole file or none.
    * A missing, unreadable or corrupt cache file is recomputed and rewritten, never an error.
    * If the run folder cannot be written (read-only), the result is computed and returned uncached.
    * Within one process, two threads asking for the same key compute it once (a lock per file).
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import threading
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from model import runs
from model.runs import atomic_write_bytes

KINDS = ("npz", "json", "parquet-or-csv")
SINGLE_ARRAY = "__array__"   # the npz member name used when the cached value is one array
MAX_KEY_CHARS = 120          # longer keys are cut and end with a short hash, to stay a valid file name

_locks: dict[Path, threading.Lock] = {}
_locks_guard = threading.Lock()


def _has_pyarrow() -> bool:
    try:
        import pyarrow  # noqa: F401
        return True
    except ImportError:
        return False


def make_key(*parts: object, **fields: object) -> str:
    """A readable cache key: parts as they are, then fields as name+value, joined by "__".

    `epoch` values are written with three digits, like the run files (epoch_003):
        make_key("class_mean", "ig", epoch=3, cls=7, n=100) -> "class_mean__ig__epoch003__cls7__n100"
    """
    items = [str(p) for p in parts]
    for name, value in fields.items():
        if name == "epoch" and isinstance(value, (int, np.integer)):
            items.append(f"epoch{int(value):03d}")
        else:
            items.append(f"{name}{value}")
    return "__".join(items)


def safe_key(key: str) -> str:
    """The key as a file name: letters, digits, '_', '-', '.' kept, anything else becomes '-'."""
    if not key or not key.strip():
        raise ValueError("cache key must be a non-empty string")
    safe = re.sub(r"[^A-Za-z0-9_.\-]", "-", key.strip()).lstrip(".")
    if len(safe) > MAX_KEY_CHARS or safe != key:
        # two different keys must never share a file: add a hash of the original when we changed it
        digest = hashlib.sha1(key.encode()).hexdigest()[:10]
        safe = f"{safe[:MAX_KEY_CHARS - 11]}-{digest}"
    return safe


def cache_dir(run_dir: Path | str) -> Path:
    """The run's cache folder (`model.runs.cache_dir`, the owner of the run format)."""
    return runs.cache_dir(run_dir)


def cache_path(run_dir: Path | str, key: str, kind: str = "npz") -> Path:
    """Where `cached` stores a key of this kind."""
    if kind not in KINDS:
        raise ValueError(f"unknown cache kind {kind!r}; use one of {KINDS}")
    ext = {"npz": "npz", "json": "json"}.get(kind) or ("parquet" if _has_pyarrow() else "csv")
    return cache_dir(run_dir) / f"{safe_key(key)}.{ext}"


# ----------------------------------------------------------------------------- encode / decode

def _encode(value: Any, kind: str, ext: str) -> bytes:
    buf = io.BytesIO()
    if kind == "npz":
        if isinstance(value, np.ndarray):
            arrays = {SINGLE_ARRAY: value}
        elif isinstance(value, dict) and all(isinstance(v, np.ndarray) for v in value.values()):
            arrays = value
        else:
            raise TypeError(f"kind 'npz' caches an np.ndarray or a dict of arrays, got {type(value).__name__}")
        np.savez(buf, **arrays)
    elif kind == "json":
        return json.dumps(value).encode()
    else:
        if not isinstance(value, pd.DataFrame):
            raise TypeError(f"kind 'parquet-or-csv' caches a pd.DataFrame, got {type(value).__name__}")
        if ext == "parquet":
            value.to_parquet(buf)
        else:
            value.to_csv(buf, index=True)
    return buf.getvalue()


def _decode(path: Path, kind: str) -> Any:
    if kind == "npz":
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        return arrays[SINGLE_ARRAY] if list(arrays) == [SINGLE_ARRAY] else arrays
    if kind == "json":
        return json.loads(path.read_text())
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, index_col=0)


def _lock_for(path: Path) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(path, threading.Lock())


# ----------------------------------------------------------------------------- the cache

_MISSING = object()


def _read(path: Path, kind: str) -> Any:
    """The decoded file, or _MISSING when it is absent, unreadable or corrupt."""
    if not path.exists():
        return _MISSING
    try:
        return _decode(path, kind)
    except Exception:  # corrupt or foreign file: treat as missing  # noqa: BLE001
        return _MISSING


def load_cached(run_dir: Path | str, key: str, kind: str = "npz", default: Any = None) -> Any:
    """The cached value of a key, or `default` when it is missing or unreadable (nothing is computed)."""
    value = _read(cache_path(run_dir, key, kind), kind)
    return default if value is _MISSING else value


def cached(run_dir: Path | str, key: str, compute: Callable[[], Any], kind: str = "npz") -> Any:
    """The value stored under `key` in the run's cache; on a miss (or a corrupt file) compute and store it.

    Args:
        run_dir: the run folder; results go to `cache_dir(run_dir)/<safe-key>.<ext>`.
        key: a readable identity of the result, e.g. from `make_key`.
        compute: called with no arguments on a miss; its return value is stored and returned.
        kind: "npz" (array or dict of arrays), "json" (plain data) or "parquet-or-csv" (DataFrame).
            Default: "npz".
    Returns:
        The value, as decoded from the cache file (so a hit and a miss give equal values).
    """
    path = cache_path(run_dir, key, kind)
    with _lock_for(path):
        value = _read(path, kind)
        if value is not _MISSING:
            return value
        value = compute()
        data = _encode(value, kind, path.suffix[1:])
        try:
            atomic_write_bytes(path, data)
        except OSError as e:
            warnings.warn(f"analysis cache: could not write {path} ({e}); result not cached", stacklevel=2)
            return value
        stored = _read(path, kind)  # give back exactly what a later hit would give back
        return value if stored is _MISSING else stored


def clear_cache(run_dir: Path | str, prefix: str = "") -> int:
    """Delete cached files whose key starts with `prefix` (all when empty); returns how many."""
    folder = cache_dir(run_dir)
    if not folder.is_dir():
        return 0
    start = re.sub(r"[^A-Za-z0-9_.\-]", "-", prefix)
    n = 0
    for p in folder.iterdir():
        if p.is_file() and p.name.startswith(start) and not p.name.startswith("."):
            p.unlink(missing_ok=True)
            n += 1
    return n
