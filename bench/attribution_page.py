"""Attributions page in headless Chromium: time from typing a new example to its maps, and to its trust figures.

    python bench/attribution_page.py [--run RUN_DIR] [--examples 3] [--timeout 300]

Starts `streamlit run dashboard/app.py` on a private copy of the run (files symlinked, an empty `cache/`:
the on-disk analysis cache starts cold and the real run folder is never written), opens Attributions on
example 0 of the validation split with the default methods (Saliency, Integrated Gradients, Grad-CAM) and
waits for it (model loading, imports: not measured). Then, for `--examples` examples never shown
before, types the example's position and presses Enter, and measures:

    maps      until every map shows the new example (each map's Plotly figure has new data, drawn,
              not stale): what the user waits for before seeing the maps;
    complete  until the page has settled (script run over, nothing stale, DOM quiet for 0.5 s; see
              tests/browser_util.py): with trust checks on, the trust figures are all there.

once with trust checks on and once (other new examples) with them off. Prints each time and the
medians, and the ratios that say whether the maps come first: maps(on) / complete(on) (the share of the
wait spent before the maps appear), maps(on) / maps(off) (near 1: the trust checks do not delay the
maps) and complete(on) / complete(off) (what the trust checks cost). Absolute times depend on the
machine; the ratios are the result.
Default run: the newest run in runs/ with saved predictions.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as `python bench/attribution_page.py`

import statistics  # noqa: E402
import tempfile  # noqa: E402

from bench.page_render import linked_copy  # noqa: E402
from bench.common import browser_bench_parser, chosen_run  # noqa: E402
from model import runs  # noqa: E402
from tests.browser_util import (launch_chromium, new_page, open_page, streamlit_server,  # noqa: E402
                                wait_rendered)

MAP_KEYS = ["attr_map_saliency", "attr_map_integrated_gradients", "attr_map_gradcam"]   # the default methods

# Remember each map's data now, then poll until every map shows other data, is drawn and not stale.
_WATCH_MAPS_JS = """
(keys) => {
  const sig = (key) => {
    const el = document.querySelector('.st-key-' + key);
    if (!el) return null;
    const box = el.closest('[data-testid="stElementContainer"]') || el;
    if (box.getAttribute('data-stale') === 'true') return null;
    const gd = el.querySelector('.js-plotly-plot');
    if (!gd || !gd.data || !gd.data.length || !gd.querySelector('.main-svg')) return null;
    return JSON.stringify(gd.data[0].z);
  };
  const before = keys.map(sig);
  window.__mapsShown = null;
  const tick = () => {
    const now = keys.map(sig);
    if (now.every((s, i) => s !== null && s !== before[i])) { window.__mapsShown = performance.now(); return; }
    setTimeout(tick, 10);
  };
  tick();
}
"""


def default_run(runs_dir: Path) -> Path:
    """The newest run in runs_dir with saved predictions and checkpoints."""
    for info in runs.list_runs(runs_dir):
        if runs.prediction_epochs(info.path) and runs.checkpoint_epochs(info.path):
            return info.path
    raise SystemExit(f"no run with predictions and checkpoints in {runs_dir}: pass --run RUN_DIR")


def show_example(page, position: int, timeout: float) -> tuple[float, float]:
    """Type `position` into the example box and press Enter: (seconds to the maps, seconds to settled)."""
    box = page.locator(".st-key-attr_index input")
    box.fill(str(position))
    page.evaluate(_WATCH_MAPS_JS, MAP_KEYS)
    since = page.evaluate("performance.now()")
    box.press("Enter")
    done = wait_rendered(page, since, timeout)
    shown = page.evaluate("window.__mapsShown")
    if shown is None:
        raise RuntimeError(f"example {position}: the maps never showed new data")
    return (shown - since) / 1000.0, done.settled


def measure(base_url: str, run_id: str, positions: list[list[int]], timeout: float) -> dict[str, list]:
    """{"on": [(maps s, complete s), ...], "off": [...]} for new examples with trust checks on, then off."""
    from playwright.sync_api import sync_playwright
    out: dict[str, list] = {"on": [], "off": []}
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = new_page(browser)
            open_page(page, base_url, f"/attributions?run={run_id}&split=val&index=0", timeout)
            for mode, batch in zip(("on", "off"), positions):
                if mode == "off":
                    since = page.evaluate("performance.now()")
                    page.locator(".st-key-attr_trust label").first.click()
                    wait_rendered(page, since, timeout)
                for position in batch:
                    maps, complete = show_example(page, position, timeout)
                    out[mode].append((maps, complete))
                    print(f"trust {mode:<3}  example {position:>5}: maps {maps:6.2f} s, complete {complete:6.2f} s",
                          flush=True)
        finally:
            browser.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = browser_bench_parser(__doc__, "the newest run in runs/ with predictions and checkpoints", "one example")
    ap.add_argument("--examples", type=int, default=3, help="new examples per setting (default: 3)")
    args = ap.parse_args(argv)
    run_dir = chosen_run(args.run, default_run)
    if run_dir is None:
        return 2
    n = len(runs.load_predictions(run_dir, runs.prediction_epochs(run_dir)[-1])["val_labels"])
    picks = [(101 + 997 * i) % n for i in range(2 * args.examples)]       # distinct, never example 0
    positions = [picks[:args.examples], picks[args.examples:]]
    print(f"run {run_dir}; private linked copy with a cold cache/; examples {positions}")
    with tempfile.TemporaryDirectory(prefix="attribution_page_") as tmp:
        copy = linked_copy(run_dir, Path(tmp) / "runs")
        with streamlit_server(copy.parent, log_path=Path(tmp) / "server.log") as url:
            times = measure(url, copy.name, positions, args.timeout)
    med = {mode: tuple(statistics.median(t[i] for t in times[mode]) for i in (0, 1)) for mode in times}
    (maps_on, all_on), (maps_off, all_off) = med["on"], med["off"]
    print(f"\nmedian, trust checks on : maps {maps_on:.2f} s, complete {all_on:.2f} s")
    print(f"median, trust checks off: maps {maps_off:.2f} s, complete {all_off:.2f} s")
    print(f"maps(on) / complete(on)  = {maps_on / all_on:.2f}   (share of the wait before the maps show)")
    print(f"maps(on) / maps(off)     = {maps_on / maps_off:.2f}   (near 1: trust checks do not delay the maps)")
    print(f"complete(on) / complete(off) = {all_on / all_off:.2f}   (what the trust checks cost)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
