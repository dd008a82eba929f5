"""Page render times of the real dashboard in headless Chromium: first render (cold) and warm page switch.

    python bench/page_render.py [--run RUN_DIR] [--rounds 3] [--screenshots DIR] [--option runner.postScriptGC=false]

Starts `streamlit run dashboard/app.py` on a private copy of the run (files symlinked, an empty
`cache/` folder, so both Streamlit's caches and the on-disk analysis cache start cold and the real run
folder is never written), opens the Runs page, then clicks each page in the sidebar once (first
render, cold caches), then clicks through all pages `--rounds` more times (warm switch: client-side
navigation, caches filled). A render ends when the script run is over, no status widget or stale
element is left, every Plotly chart is drawn and the DOM has stayed unchanged for 0.5 s; the time
reported is that of the last DOM change. Prints a table (page, first render s, warm switch s = the
median over rounds, and in brackets the part until the server's script run ended) and the median
warm switch over all pages and rounds (target: at most 0.4 s).
Default run: the newest run in runs/ with at least 10 finished epochs.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as `python bench/page_render.py`

import statistics  # noqa: E402
import tempfile  # noqa: E402

from bench.common import browser_bench_parser, chosen_run  # noqa: E402
from model import runs  # noqa: E402
from tests.browser_util import (PAGES, launch_chromium, nav_titles, new_page, open_page,  # noqa: E402
                                screenshot_full, streamlit_server, switch_page)

TARGET_S = 0.4


def default_run(runs_dir: Path, min_epochs: int = 10) -> Path:
    """The newest run in runs_dir with at least `min_epochs` finished epochs."""
    for info in runs.list_runs(runs_dir):
        try:
            if len(runs.load_metrics(info.path)) >= min_epochs:
                return info.path
        except runs.RunError:
            continue
    raise SystemExit(f"no run with {min_epochs}+ epochs in {runs_dir}: pass --run RUN_DIR")


def linked_copy(run_dir: Path, dest_root: Path) -> Path:
    """A copy of the run folder made of symlinks to its files, without its on-disk analysis cache."""
    dest = dest_root / run_dir.name
    for src in run_dir.rglob("*"):
        rel = src.relative_to(run_dir)
        if rel.parts[0] == "cache" or src.is_dir():
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).symlink_to(src.resolve())
    (dest / "cache").mkdir(parents=True, exist_ok=True)
    return dest


def measure(base_url: str, run_id: str, rounds: int, timeout: float, shots: Path | None) -> dict[str, dict]:
    """First render and warm switch times (s) of every page, keyed by URL path."""
    from playwright.sync_api import sync_playwright
    times: dict[str, dict] = {path: {"first": None, "warm": [], "script": []} for path in PAGES.values()}
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = new_page(browser)
            times["/"]["first"] = open_page(page, base_url, f"/?run={run_id}", timeout).settled
            titles = nav_titles(page)
            order = [path for path in PAGES.values() if path != "/"] + ["/"]
            if shots:
                screenshot_full(page, shots / "runs.png")
            for path in order[:-1]:
                times[path]["first"] = switch_page(page, titles[path], timeout).settled
                if shots:
                    screenshot_full(page, shots / f"{_name(path)}.png")
            for _ in range(rounds):
                for path in order:
                    r = switch_page(page, titles[path], timeout)
                    times[path]["warm"].append(r.settled)
                    times[path]["script"].append(r.script)
        finally:
            browser.close()
    return times


def _name(path: str) -> str:
    return next(name for name, p in PAGES.items() if p == path)


def main(argv: list[str] | None = None) -> int:
    ap = browser_bench_parser(__doc__, "the newest run in runs/ with at least 10 epochs", "one page")
    ap.add_argument("--rounds", type=int, default=3, help="warm rounds through all pages (default: 3)")
    ap.add_argument("--screenshots", type=Path, default=None,
                    help="save a full-page screenshot of each page's first render here (default: none)")
    ap.add_argument("--option", action="append", default=[], metavar="SECTION.NAME=VALUE",
                    help="extra Streamlit config option for the server, repeatable (default: none)")
    args = ap.parse_args(argv)
    run_dir = chosen_run(args.run, default_run)
    if run_dir is None:
        return 2
    n_epochs = len(runs.load_metrics(run_dir))
    print(f"run {run_dir} ({n_epochs} epochs); private linked copy with a cold cache/"
          + (f"; options {' '.join(args.option)}" if args.option else ""))
    with tempfile.TemporaryDirectory(prefix="page_render_") as tmp:
        copy = linked_copy(run_dir, Path(tmp) / "runs")
        with streamlit_server(copy.parent, log_path=Path(tmp) / "server.log", options=args.option) as url:
            times = measure(url, copy.name, args.rounds, args.timeout, args.screenshots)
    print(f"\n{'page':<14}{'first render s':>16}{'warm switch s':>16}{'(script s)':>12}")
    warm_all = []
    for name, path in PAGES.items():
        t = times[path]
        warm_all += t["warm"]
        print(f"{name:<14}{t['first']:>16.2f}{statistics.median(t['warm']):>16.2f}"
              f"{statistics.median(t['script']):>12.2f}")
    med = statistics.median(warm_all)
    print(f"\nmedian warm switch over {len(warm_all)} switches: {med:.2f} s "
          f"(target ≤ {TARGET_S} s: {'met' if med <= TARGET_S else 'NOT met'}); worst {max(warm_all):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
