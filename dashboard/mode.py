"""Whether the dashboard serves read-only (a class on one server), and where its analysis cache goes then.

Read-only is asked for with either
    streamlit run dashboard/app.py -- --read-only      (a script argument, after `--`)
    DIGIT_LENS_READ_ONLY=1 streamlit run dashboard/app.py   (1, true, yes or on)
and `make serve` uses the first. In read-only mode the pages offer no training (no form, no launch or
stop buttons) and nothing is written into the run folders: the slow-analysis cache (analysis/cache.py)
goes to `$DIGIT_LENS_CACHE`, which defaults to the per-user folder
    ${XDG_CACHE_HOME:-~/.cache}/digit-lens
(inside it, `model.runs.cache_dir` keeps one folder per runs folder, named by a hash of its path, and
one per run: `<root>/<runs-folder-hash>/<run-id>/`). Without read-only and without `$DIGIT_LENS_CACHE`
the cache stays in each run folder (`<run>/cache/`), as before.

Pages ask `read_only()`; the router calls `configure()` once per script run. No Streamlit import.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

FLAG = "--read-only"
ENV = "DIGIT_LENS_READ_ONLY"
CACHE_ENV = "DIGIT_LENS_CACHE"     # read by model.runs.cache_dir
TRUE = ("1", "true", "yes", "on")


def read_only() -> bool:
    """True when the app was started with `-- --read-only` or with $DIGIT_LENS_READ_ONLY set to 1/true/yes/on."""
    return FLAG in sys.argv[1:] or os.environ.get(ENV, "").strip().lower() in TRUE


def default_cache_root() -> Path:
    """The per-user cache root used in read-only mode when $DIGIT_LENS_CACHE is not set."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "digit-lens"


def configure() -> bool:
    """In read-only mode, point $DIGIT_LENS_CACHE at the per-user root unless it is set; returns read_only()."""
    ro = read_only()
    if ro and not os.environ.get(CACHE_ENV):
        os.environ[CACHE_ENV] = str(default_cache_root())
    return ro
