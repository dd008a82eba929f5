"""A runs folder with 500 runs: how long listing them and drawing the Runs page take, against one run.

    python bench/many_runs.py [--runs 500] [--run RUN_DIR]

Makes `--runs` light copies of a run (config.json, status.json, metrics.csv) in a temporary folder and
times `model.runs.list_runs` and the Runs page's script run (Streamlit's AppTest after one unmeasured
run for the imports; cold caches, then a warm rerun), each against the same measurement on a folder with that one run. Timings on a shared
2-core machine are noisy: the ratios are the result. Aim: listing 500 runs under a second.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as `python bench/many_runs.py`

import argparse  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from model import runs  # noqa: E402

APP = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"


def light_copies(run_dir: Path, folder: Path, n: int) -> Path:
    """n copies of a run's config, status and metrics under folder (no checkpoints or predictions)."""
    for i in range(n):
        d = folder / f"20260101-{i:06d}-copy-{i:03d}"
        d.mkdir(parents=True)
        for name in (runs.CONFIG_FILE, runs.STATUS_FILE, runs.METRICS_FILE):
            shutil.copy(run_dir / name, d / name)
    return folder


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def runs_page_times(folder: Path) -> tuple[float, float]:
    """(cold, warm) seconds of the Runs page's script run on this runs folder."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest
    os.environ["DIGIT_LENS_RUNS"] = str(folder)
    st.cache_data.clear()
    at = AppTest.from_file(str(APP), default_timeout=600)
    cold = timed(at.run)
    warm = timed(at.run)
    assert not at.exception, [e.value for e in at.exception]
    return cold, warm


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=500, help="how many runs (default: 500)")
    ap.add_argument("--run", type=Path, default=None, help="the run to copy (default: the newest in runs/)")
    args = ap.parse_args(argv)
    infos = runs.list_runs(runs.REPO_ROOT / "runs")
    if args.run is None and not infos:
        raise SystemExit("no run in runs/ to copy: pass --run RUN_DIR")
    run_dir = args.run or infos[0].path
    with tempfile.TemporaryDirectory(prefix="many_runs_") as tmp:
        one, many = light_copies(run_dir, Path(tmp) / "one", 1), light_copies(run_dir, Path(tmp) / "many", args.runs)
        list_one = min(timed(lambda: runs.list_runs(one)) for _ in range(3))
        list_many = min(timed(lambda: runs.list_runs(many)) for _ in range(3))
        runs_page_times(one)                               # imports and first-run costs, not measured
        page_one, page_many = runs_page_times(one), runs_page_times(many)
    print(f"list_runs:            1 run {list_one * 1000:7.1f} ms   {args.runs} runs {list_many * 1000:7.1f} ms   "
          f"({list_many / list_one:.0f}x; aim: {args.runs} runs under 1 s: {'met' if list_many < 1 else 'NOT met'})")
    print(f"Runs page, cold:      1 run {page_one[0]:7.2f} s    {args.runs} runs {page_many[0]:7.2f} s    "
          f"({page_many[0] / page_one[0]:.1f}x)")
    print(f"Runs page, warm:      1 run {page_one[1]:7.2f} s    {args.runs} runs {page_many[1]:7.2f} s    "
          f"({page_many[1] / page_one[1]:.1f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
