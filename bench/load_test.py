"""Load test: N concurrent browser sessions touring one dashboard server ("A class of thirty on one server").

    python bench/load_test.py [--run RUN_DIR] [--sessions 1 4] [--rounds 2] [--timeout 300] [--nice-browsers]

For each N in `--sessions`, starts `streamlit run dashboard/app.py` on its own private copy of the run
(files symlinked, an empty `cache/`, like bench/page_render.py: caches start cold, the real run folder is
never written). One unmeasured warm-up tour by a single session loads the model and the imports; then
`--rounds` times, N sessions (one headless Chromium, N browser contexts, each its own Streamlit session,
driven concurrently with Playwright's async API) each make one tour:

    runs        open the app (Runs page, a full page load: new session)
    attributions  click Attributions in the sidebar
    attr example  type the session's OWN new example position and press Enter (distinct positions for
                  every session and round, never one shown before on that server)
    confusion   click Confusion & errors
    kernels     click Kernels & activations
    runs again  click Runs

A step's time is until the page settled, with the definition of tests/browser_util.py (script run
finished, nothing stale, charts drawn, images loaded, DOM quiet for 0.5 s; the time of the last DOM
change), and until its script run ended (the server's part; the browser may still be drawing). The
browsers run on the server's machine and share its two cores; --nice-browsers gives them the lowest
CPU priority, so that the server's work comes first, as when students' browsers run on their own
machines. A step's error is an "unexpected problem" text, an st.error box, an exception block, or a
timeout/Playwright error (the session then skips the rest of its tour). While the sessions run, the
server process tree (streamlit and its children) is sampled from /proc every 0.5 s: PSS, peak RSS and CPU
cores used (utime+stime deltas / wall time; 2.0 = both cores of this machine busy), and the CPU cores
the whole machine used (/proc/stat; includes Chromium, which runs on the same machine).

Prints, per step, the median (worst) seconds of both and the error count for each N; per N, the server
tree's median and peak PSS, peak RSS and mean CPU cores used; the server's own time per script run by
page ($DIGIT_LENS_TIMING_LOG, written by dashboard/app.py); and per step the ratio of its median to the
N=1 median. Chromium runs on the same machine as the server, so absolute times are noisy: the ratios
are the result.
Default run: the newest run in runs/ with saved predictions and checkpoints.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as `python bench/load_test.py`

import asyncio  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

from bench.attribution_page import default_run  # noqa: E402
from bench.page_render import linked_copy  # noqa: E402
from bench.common import browser_bench_parser, chosen_run  # noqa: E402
from model import runs  # noqa: E402
from tests.browser_util import (_CLOCK_JS, _SCRIPT_ENDS_JS, _SETTLED_JS, CHROMIUM, CHROMIUM_ARGS,  # noqa: E402
                                CLICK_NAV_JS, VIEWPORT, free_port, server_pid, streamlit_server)
from tests.browser_util import RssSampler, process_tree as _tree, usage as _usage  # noqa: E402  (the /proc sampling)

STEPS = ["runs", "attributions", "attr example", "confusion", "kernels", "runs again"]
# sidebar link text of each clicked step (see dashboard/app.py)
TITLES = {"attributions": "Attributions", "confusion": "Confusion & errors",
          "kernels": "Kernels & activations", "runs again": "Runs"}
SAMPLE_S = 0.5
QUIET_MS = 500.0
_ERRORS_JS = """() => {
  const out = [...document.querySelectorAll('[data-testid="stException"], [data-testid="stAlertContentError"]')]
    .map(e => e.innerText.slice(0, 300));
  const main = document.querySelector('[data-testid="stMainBlockContainer"]');
  if (main && main.innerText.includes('unexpected problem') && !out.some(t => t.includes('unexpected problem')))
    out.push('unexpected problem: ' + main.innerText.slice(0, 300));
  return out;
}"""



# ---------------------------------------------------------------- browser side (async twins of browser_util)

async def wait_rendered(page, since: float, timeout: float) -> tuple[float, float]:
    """Seconds from `since` (page clock, ms) to the last DOM change once the page settled (browser_util's rule),
    and to the end of the last script run (the server's part: the browser may still be drawing)."""
    deadline = time.monotonic() + timeout
    why = "not checked"
    while time.monotonic() < deadline:
        why = await page.evaluate(_SETTLED_JS, since)
        if not why:
            last, now = await page.evaluate("[window.__lastMutation, performance.now()]")
            if now - last >= QUIET_MS:
                if not await page.evaluate(_SETTLED_JS, since):
                    ends = await page.evaluate(_SCRIPT_ENDS_JS, since)
                    return (last - since) / 1000.0, (ends[-1] - since) / 1000.0
                why = "it settled, then changed again"
            else:
                await page.wait_for_timeout(max(50.0, QUIET_MS - (now - last)))
                continue
        await page.wait_for_timeout(100)
    raise TimeoutError(f"did not settle within {timeout:.0f}s: {why}")


async def _step(page, name: str, base_url: str, run_id: str, position: int, timeout: float) -> tuple[float, float]:
    """Do one tour step on `page`; seconds until it settled, and until its script run ended."""
    if name == "runs":
        await page.goto(f"{base_url}/?run={run_id}", wait_until="domcontentloaded")
        return await wait_rendered(page, 0.0, timeout)
    if name == "attr example":
        box = page.locator(".st-key-attr_index input")
        await box.fill(str(position))
        since = await page.evaluate("performance.now()")
        await box.press("Enter")
        return await wait_rendered(page, since, timeout)
    since = await page.evaluate(CLICK_NAV_JS, TITLES[name])
    if since is None:
        raise LookupError(f"no sidebar link {TITLES[name]!r}")
    return await wait_rendered(page, since, timeout)


@dataclass
class Tour:
    """One session's tour: seconds per finished step (until settled; until the script run ended), errors per step."""
    times: dict[str, float] = field(default_factory=dict)
    script: dict[str, float] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)


async def tour(browser, base_url: str, run_id: str, position: int, timeout: float) -> Tour:
    """One new session (own browser context) touring STEPS; stops at the first timeout or Playwright error."""
    out = Tour()
    context = await browser.new_context(viewport=VIEWPORT)
    try:
        page = await context.new_page()
        await page.add_init_script(_CLOCK_JS)
        for name in STEPS:
            try:
                out.times[name], out.script[name] = await _step(page, name, base_url, run_id, position, timeout)
                found = await page.evaluate(_ERRORS_JS)
            except Exception as e:  # timeout, missing widget, crashed page: counted, tour ends
                out.errors[name] = [f"{type(e).__name__}: {str(e)[:200]}"]
                break
            if found:
                out.errors[name] = found
    finally:
        await context.close()
    return out


# ---------------------------------------------------------------- server side: /proc sampling

def nice_browsers(level: int = 19) -> None:
    """Give every thread of every Chromium process on this machine the lowest CPU priority (renderers forked
    later inherit it from the zygote): the server gets the cores first, as it would if, as in a class, the
    browsers ran on the students' own machines and not on the server's two cores.

    With the kernel's autogroup scheduling (/proc/sys/kernel/sched_autogroup_enabled = 1, as here) a thread's
    nice value counts only against threads of its own session; sessions share the CPU by their autogroup's nice
    value. The server runs in a session of its own, so the browsers' autogroup (shared with this script, whose
    clock does not matter: step times are read from the browsers' own clocks) is niced too."""
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and "chromium" in os.readlink(f"/proc/{entry}/exe"):
                for task in os.listdir(f"/proc/{entry}/task"):
                    os.setpriority(os.PRIO_PROCESS, int(task), level)
                Path(f"/proc/{entry}/autogroup").write_text(str(level))
        except OSError:   # gone, not ours, or no autogroup scheduling
            continue


def _machine_busy_s() -> float:
    """CPU seconds all cores of the machine spent busy since boot (/proc/stat: all but idle and iowait)."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


class Sampler(RssSampler):
    """browser_util's RssSampler of the server tree every SAMPLE_S, plus the mean CPU cores the tree and the whole
    machine used; with `nice`, it keeps every Chromium process at the lowest priority (nice_browsers).

    PSS counts a page shared by the forked worker pool once; RSS summed over the tree counts it per process."""

    def __init__(self, pid: int, nice: bool = False):
        super().__init__(pid, every=SAMPLE_S)
        self.nice = nice
        self._cpu: dict[int, float] = {}   # pid -> last CPU seconds seen (so exited children keep their share)

    def now_mb(self) -> tuple[float, float]:
        if self.nice:
            nice_browsers()
        for pid in _tree(self.pid):
            cpu = _usage([pid])[1]
            if cpu:
                self._cpu[pid] = cpu
        return super().now_mb()

    def run(self) -> None:
        self.t0, self.busy0 = time.monotonic(), _machine_busy_s()
        self.now_mb()
        self.cpu0 = dict(self._cpu)
        super().run()
        self.now_mb()
        self.wall = time.monotonic() - self.t0
        self.machine_cores = (_machine_busy_s() - self.busy0) / self.wall

    def stop(self) -> dict[str, float]:
        """Peak server RSS, peak and median PSS (MB); mean CPU cores the server used, and the whole machine."""
        super().stop()
        rss, pss = [s[1] for s in self.samples], [s[2] for s in self.samples]
        cpu_s = sum(c - self.cpu0.get(pid, 0.0) for pid, c in self._cpu.items())
        return {"rss_mb": max(rss), "pss_mb": max(pss), "pss_median_mb": statistics.median(pss),
                "cores": cpu_s / self.wall, "machine": self.machine_cores}


# ---------------------------------------------------------------- one N

async def _load(base_url: str, run_id: str, n: int, rounds: int, positions, timeout: float, pid: int,
                nice: bool):
    from playwright.async_api import async_playwright
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            if nice:
                nice_browsers()
            warm = await tour(browser, base_url, run_id, next(positions), timeout)   # unmeasured
            if warm.errors:
                print(f"  warm-up errors: {warm.errors}", flush=True)
            sampler = Sampler(pid, nice)
            sampler.start()
            tours: list[Tour] = []
            t0, t0_wall = time.monotonic(), time.time()
            for r in range(rounds):
                batch = await asyncio.gather(*(tour(browser, base_url, run_id, next(positions), timeout)
                                               for _ in range(n)))
                tours += batch
                print(f"  N={n} round {r + 1}: {time.monotonic() - t0:.1f} s so far", flush=True)
            usage = sampler.stop()
        finally:
            await browser.close()
    return {"tours": tours, **usage, "wall": time.monotonic() - t0, "since": t0_wall}


def measure(run_dir: Path, n: int, rounds: int, positions, timeout: float, nice: bool = False) -> dict:
    """Fresh server on a fresh cold linked copy; warm-up tour; `rounds` x N concurrent tours."""
    with tempfile.TemporaryDirectory(prefix="load_test_") as tmp:
        copy = linked_copy(run_dir, Path(tmp) / "runs")
        port, timing = free_port(), Path(tmp) / "timing.jsonl"
        os.environ["DIGIT_LENS_TIMING_LOG"] = str(timing)      # the server's own clock (dashboard/app.py)
        try:
            with streamlit_server(copy.parent, port=port, log_path=Path(tmp) / "server.log") as url:
                result = asyncio.run(_load(url, copy.name, n, rounds, positions, timeout, server_pid(port), nice))
        finally:
            os.environ.pop("DIGIT_LENS_TIMING_LOG", None)
        lines = [json.loads(line) for line in timing.read_text().splitlines()] if timing.exists() else []
        result["script_runs"] = [r for r in lines if r["start"] >= result["since"]]
        return result


# ---------------------------------------------------------------- report

def positions(n_val: int):
    """Distinct validation positions, never example 0: one per tour, over the whole benchmark."""
    k = 0
    while True:
        k += 1
        yield (101 + 997 * k) % n_val


def _step_table(results: dict, ns: list[int], what: str, title: str) -> dict:
    """Print median (worst) seconds and errors per step for each N, of Tour.<what>; return the medians."""
    med, col = {}, 20
    print(f"\nper step, {title}")
    print(f"{'step':<14}" + "".join(f"{f'N={n} median (worst) s':>{col + 2}}{'errors':>8}" for n in ns))
    for s in STEPS:
        cells = ""
        for n in ns:
            tours = results[n]["tours"]
            v = [getattr(t, what)[s] for t in tours if s in getattr(t, what)]
            med.setdefault(n, {})[s] = statistics.median(v) if v else None
            errors = sum(1 for t in tours if s in t.errors)
            cells += f"{(f'{statistics.median(v):.2f} ({max(v):.2f})' if v else '-'):>{col + 2}}{errors:>8}"
        print(f"{s:<14}{cells}")
    return med


def main(argv: list[str] | None = None) -> int:
    ap = browser_bench_parser(__doc__, "the newest run in runs/ with predictions and checkpoints", "one step")
    ap.add_argument("--sessions", type=int, nargs="+", default=[1, 4],
                    help="numbers of concurrent sessions to test (default: 1 4)")
    ap.add_argument("--rounds", type=int, default=2, help="tours per session for each N (default: 2)")
    ap.add_argument("--nice-browsers", action="store_true",
                    help="run Chromium at the lowest CPU priority, so that the server's work comes first (as with "
                         "browsers on other machines)")
    args = ap.parse_args(argv)
    run_dir = chosen_run(args.run, default_run)
    if run_dir is None:
        return 2
    chosen = positions(len(runs.load_predictions(run_dir, runs.prediction_epochs(run_dir)[-1])["val_labels"]))
    print(f"run {run_dir}; one fresh server per N on a private linked copy with a cold cache/; "
          f"sessions {args.sessions}, rounds {args.rounds}, {os.cpu_count()} cores", flush=True)
    results = {}
    for n in args.sessions:
        results[n] = measure(run_dir, n, args.rounds, chosen, args.timeout, args.nice_browsers)

    ns = args.sessions
    med = {}
    for what, title in (("times", "until the page settled (drawn)"),
                        ("script", "until the script run ended (the server's part)")):
        med[what] = _step_table(results, ns, what, title)
    print(f"\n{'N':>4}{'tours':>7}{'wall s':>9}{'server PSS MB median (peak)':>29}{'RSS sum peak':>14}"
          f"{'server CPU cores':>18}{'machine CPU cores':>19}")
    for n in ns:
        r = results[n]
        memory = f"{r['pss_median_mb']:.0f} ({r['pss_mb']:.0f})"
        print(f"{n:>4}{len(r['tours']):>7}{r['wall']:>9.1f}{memory:>29}"
              f"{r['rss_mb']:>14.0f}{r['cores']:>18.2f}{r['machine']:>19.2f}")
    pages = sorted({r["page"] for n in ns for r in results[n]["script_runs"]})
    print("\nthe server's own time per script run (its clock, from its start to its end), by page")
    print(f"{'page':<22}" + "".join(f"{f'N={n} median (worst) s, runs':>32}" for n in ns))
    for page in pages:
        cells = ""
        for n in ns:
            v = [r["seconds"] for r in results[n]["script_runs"] if r["page"] == page]
            cells += f"{(f'{statistics.median(v):.2f} ({max(v):.2f}), {len(v)}' if v else '-'):>32}"
        print(f"{page:<22}{cells}")
    base = ns[0]
    print(f"\nmedian / N={base} median")
    print(f"{'step':<14}" + "".join(f"{f'N={n}':>8}" for n in ns))
    for s in STEPS:
        row = ""
        for n in ns:
            m = med["times"]
            ok = m[n][s] is not None and m[base][s]
            row += f"{(f'{m[n][s] / m[base][s]:.2f}' if ok else '-'):>8}"
        print(f"{s:<14}{row}")
    shown = [(n, i, s, e) for n in ns for i, t in enumerate(results[n]["tours"]) for s, e in t.errors.items()]
    for n, i, s, e in shown[:10]:
        print(f"error N={n} tour {i} step {s}: {e[0][:200]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
