"""What each open session costs the server's memory ("A class of thirty on one server").

    python bench/session_memory.py [--run RUN_DIR] [--sessions 12] [--timeout 300]

Starts `streamlit run dashboard/app.py` on a private copy of the run (files symlinked, an empty `cache/`,
like bench/page_render.py), then opens `--sessions` sessions one after another, each in its own browser
context, touring Runs → Attributions → Confusion & errors → Kernels & activations → Runs, and leaves every
session open, as a class leaves its tabs open. After each one it prints the PSS of the server's process tree
(streamlit and its workers; /proc). The first session loads the model and fills the shared caches; what each
later one adds is what a session keeps. Prints that as MB per session: the slope of a least-squares line
through sessions 2..N (the worker pool stops its idle workers after 60 s, so a drop of about 350 MB when that
happens is left out: the slope is fitted on the samples after the last drop).
Default run: the newest run in runs/ with at least 10 finished epochs.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as `python bench/session_memory.py`

import tempfile  # noqa: E402

import numpy as np  # noqa: E402

from bench.common import browser_bench_parser, chosen_run  # noqa: E402
from bench.page_render import default_run, linked_copy  # noqa: E402
from tests.browser_util import (free_port, launch_chromium, new_page, open_page, process_tree, pss,  # noqa: E402
                                server_pid, streamlit_server, switch_page)

TOUR = ["Attributions", "Confusion & errors", "Kernels & activations", "Runs"]
DROP_MB = 100.0   # a fall this large between two samples is the idle workers stopping, not a session leaving


def per_session_mb(tree_mb: list[float]) -> float:
    """MB per session: least-squares slope of tree_mb[k] (k = sessions open - 1) after the first session and after
    the last drop of more than DROP_MB (workers stopping); nan with fewer than 2 such samples."""
    start = 1
    for k in range(1, len(tree_mb)):
        if tree_mb[k - 1] - tree_mb[k] > DROP_MB:
            start = k
    y = np.asarray(tree_mb[start:], dtype=float)
    return float(np.polyfit(np.arange(len(y)), y, 1)[0]) if len(y) >= 2 else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = browser_bench_parser(__doc__, "the newest run in runs/ with at least 10 finished epochs", "one page")
    ap.add_argument("--sessions", type=int, default=12, help="sessions to open, one after another (default: 12)")
    args = ap.parse_args(argv)
    run_dir = chosen_run(args.run, default_run)
    if run_dir is None:
        return 2
    from playwright.sync_api import sync_playwright
    tree_mb: list[float] = []
    with tempfile.TemporaryDirectory(prefix="session_memory_") as tmp:
        copy = linked_copy(run_dir, Path(tmp))
        port = free_port()
        with streamlit_server(Path(tmp), port=port) as url, sync_playwright() as p:
            pid = server_pid(port)
            browser = launch_chromium(p)
            try:
                print(f"run {run_dir}; {args.sessions} sessions, each left open after its tour")
                print(f"{'sessions':>9}{'server tree PSS MB':>20}")
                for k in range(args.sessions):
                    page = new_page(browser)                 # its own context: its own Streamlit session
                    open_page(page, url, f"/?run={copy.name}", args.timeout)
                    for title in TOUR:
                        switch_page(page, title, args.timeout)
                    tree_mb.append(pss(process_tree(pid)) / 2**20)
                    print(f"{k + 1:>9}{tree_mb[-1]:>20.0f}", flush=True)
            finally:
                browser.close()
    print(f"\neach further open session: {per_session_mb(tree_mb):+.1f} MB of the server's memory")
    return 0


if __name__ == "__main__":
    sys.exit(main())
