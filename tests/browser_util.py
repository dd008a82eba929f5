"""Drive the real dashboard in headless Chromium: start the server, open pages, wait for them to settle.

Shared by `tests/test_browser.py`, `tests/test_memory.py`, `bench/page_render.py` and `bench/load_test.py`
(test_memory and load_test also share its /proc sampling of the server's memory: `server_pid`, `process_tree`,
`usage`, `RssSampler`). Needs Debian's chromium (`/usr/bin/chromium`, `.ci/run` installs it) and the `playwright` Python
package; Playwright's own browser download is never used.

"Rendered" means: the server has reported a finished script run since the navigation started (read
from the websocket: a fast run may never show as "running" in the DOM), the app's script state is
`notRunning`, no status widget ("Running...") and no stale element is left, the main block has
content, every Plotly chart has drawn its SVG, every image has loaded, and then the DOM stayed
unchanged for `quiet_ms`.
The render time is the time of the last DOM change before that quiet window; the script time, the
end of the last script run (what the server took).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1400, "height": 900}

# page name (file in dashboard/app_pages/) -> URL path Streamlit derives from it (runs is the default page)
PAGES: dict[str, str] = {
    "runs": "/", "curves": "/curves", "overfitting": "/overfitting", "data_page": "/data_page",
    "confusion": "/confusion", "attributions": "/attributions", "filters": "/filters", "draw": "/draw",
}

# Installed before any page script: timestamps every DOM change, and every "script finished" message
# the server sends (ForwardMsg field 6 = script_finished, a varint status; decoded from the websocket's
# protobuf frames, top-level fields only).
_CLOCK_JS = """
(() => {
  window.__lastMutation = performance.now();
  window.__finished = [];
  const status = (buf) => {
    const b = new Uint8Array(buf);
    let i = 0;
    const varint = () => { let x = 0, k = 1, c; do { c = b[i++]; x += (c & 0x7f) * k; k *= 128; } while (c & 0x80 && i < b.length); return x; };
    while (i < b.length) {
      const tag = varint(), field = Math.floor(tag / 8), wire = tag & 7;
      if (wire === 0) { const v = varint(); if (field === 6) return v; }
      else if (wire === 2) { const len = varint(); i += len; }  // (not `i += varint()`: i is read first)
      else if (wire === 1) { i += 8; } else if (wire === 5) { i += 4; } else { return -1; }
    }
    return -1;
  };
  const record = (t, buf) => { const s = status(buf); if (s >= 0) window.__finished.push([t, s]); };
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', (e) => {
        const t = performance.now();
        if (e.data instanceof ArrayBuffer) record(t, e.data);
        else if (e.data instanceof Blob) e.data.arrayBuffer().then((buf) => record(t, buf));
      });
    }
  };
  const observe = () => new MutationObserver(() => { window.__lastMutation = performance.now(); })
    .observe(document.documentElement, {subtree: true, childList: true, attributes: true, characterData: true});
  if (document.documentElement) observe(); else document.addEventListener('DOMContentLoaded', observe);
})();
"""

# Why the page is not finished yet ("" when it is, apart from the quiet window).
_SETTLED_JS = """
(since) => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app) return 'no stApp';
  const state = app.getAttribute('data-test-script-state');
  if (state !== 'notRunning') return 'script state ' + state;
  // 0 = finished, 1 = compile error (shown as an exception); 2 = stopped for a rerun, 3 = a fragment ran
  if (!window.__finished.some(([t, s]) => t >= since && s <= 1)) return 'no script run finished yet';
  if (document.querySelector('[data-testid="stStatusWidget"]')) return 'status widget shown';
  const main = document.querySelector('[data-testid="stMainBlockContainer"]');
  if (!main || !main.querySelector('[data-testid="stElementContainer"]')) return 'main block empty';
  if (main.querySelector('[data-stale="true"]')) return 'stale elements';
  if (main.querySelector('[data-testid="stSkeleton"]')) return 'skeleton shown';
  for (const chart of main.querySelectorAll('[data-testid="stPlotlyChart"]')) {
    if (chart.offsetParent !== null && !chart.querySelector('.main-svg')) return 'plotly chart not drawn';
  }
  for (const img of main.querySelectorAll('img')) {
    if (!img.complete) return 'image loading';
  }
  return '';
}
"""


def browser_missing() -> str | None:
    """Why the real-browser tools are unavailable, or None when chromium and playwright are both there."""
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        return f"{CHROMIUM} not found: install Debian's chromium (`apt-get install chromium`, .ci/run does it)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is not installed (`pip install -e .[dev]`)"
    return None


def free_port() -> int:
    """A TCP port that is free right now on localhost."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def streamlit_server(runs_dir: Path, port: int | None = None, timeout: float = 60.0,
                     log_path: Path | None = None, options: Sequence[str] = ()) -> Iterator[str]:
    """Run `streamlit run dashboard/app.py` on `runs_dir` and yield its base URL; always stop it.

    Args:
        runs_dir: folder of runs, passed as DIGIT_LENS_RUNS.
        port: the port to serve on. Default: a free one.
        timeout: seconds to wait for /_stcore/health.
        log_path: where the server's output goes. Default: discarded.
        options: extra Streamlit config options as "section.name=value" (e.g. "runner.postScriptGC=false").
    """
    port = port or free_port()
    env = dict(os.environ, DIGIT_LENS_RUNS=str(runs_dir))
    cmd = [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.headless", "true",
           "--server.port", str(port), "--browser.gatherUsageStats", "false"]
    for option in options:
        name, _, value = option.partition("=")
        cmd += [f"--{name}", value]
    log = open(log_path, "w") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with code {proc.returncode} before it was healthy")
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"streamlit not healthy after {timeout:.0f}s on {url}")
            time.sleep(0.2)
        yield url
    finally:
        _stop(proc)
        if log_path:
            log.close()


def _stop(proc: subprocess.Popen) -> None:
    """Stop the server's process group (streamlit and anything it started): SIGTERM, then SIGKILL."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, 15)
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(10)
        except ProcessLookupError:
            pass


# ----------------------------------------------------------------------------- the server's memory and CPU, from /proc

def server_pid(port: int) -> int:
    """The pid of the streamlit process serving on `port`."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"streamlit" in cmd and b"--server.port" in cmd and str(port).encode() in cmd:
                return int(entry)
    raise LookupError(f"no streamlit process on port {port}")


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants, from /proc/*/stat parent ids."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += [p for p, pp in parent.items() if pp == pid]
    return out


def usage(pids: list[int]) -> tuple[int, float]:
    """(RSS bytes, CPU seconds utime+stime) summed over `pids` (vanished ones skipped)."""
    page, tick = os.sysconf("SC_PAGE_SIZE"), os.sysconf("SC_CLK_TCK")
    rss, cpu = 0, 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        cpu += (int(fields[11]) + int(fields[12])) / tick   # utime, stime (stat fields 14, 15)
        rss += int(fields[21]) * page                       # rss (stat field 24), in pages
    return rss, cpu


def pss(pids: list[int]) -> int:
    """Proportional set size, bytes, summed over `pids` (vanished ones skipped): a page shared by k of them counts
    1/k in each, so a forked tree (the worker pool shares torch with its fork server) is not counted k times."""
    total = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        total += next((int(line.split()[1]) * 1024 for line in text.splitlines() if line.startswith("Pss:")), 0)
    return total


class RssSampler(threading.Thread):
    """Samples the memory of a process tree every `every` s until stopped: `samples` is [(monotonic s, RSS MB,
    PSS MB)] (RSS summed over the tree counts pages its processes share once per process; PSS does not)."""

    def __init__(self, pid: int, every: float = 0.25):
        super().__init__(daemon=True)
        self.pid, self.every, self.samples, self._done = pid, every, [], threading.Event()

    def now_mb(self) -> tuple[float, float]:
        """The tree's (RSS, PSS) right now, MB (also recorded)."""
        pids = process_tree(self.pid)
        rss_mb, pss_mb = usage(pids)[0] / 2**20, pss(pids) / 2**20
        self.samples.append((time.monotonic(), rss_mb, pss_mb))
        return rss_mb, pss_mb

    def run(self) -> None:
        self.now_mb()
        while not self._done.wait(self.every):
            self.now_mb()

    def stop(self) -> None:
        self._done.set()
        self.join()

    def between(self, t0: float, t1: float, kind: str = "pss") -> list[float]:
        """The MB samples ("pss" or "rss") taken from monotonic time t0 to t1."""
        i = 2 if kind == "pss" else 1
        return [sample[i] for sample in self.samples if t0 <= sample[0] <= t1]


def launch_chromium(playwright):
    """Debian's headless chromium through Playwright (never Playwright's own browser download)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


@dataclass
class ConsoleLog:
    """Browser console errors and uncaught page errors of one page (attach before navigating)."""
    errors: list[str] = field(default_factory=list)

    def attach(self, page) -> ConsoleLog:
        page.on("console", lambda m: self.errors.append(f"console.error: {m.text} [{m.location.get('url', '')}]")
                if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        return self


def new_page(browser):
    """A fresh page (own context, so a fresh Streamlit session) with the render clock installed."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.add_init_script(_CLOCK_JS)
    return page


# The page-clock times (ms) at which script runs started after `since` ended (finished, not rerun-pending).
_SCRIPT_ENDS_JS = "(since) => window.__finished.filter(([t, s]) => t >= since && s <= 1).map(([t]) => t)"


@dataclass
class Render:
    """How long one navigation took, in seconds from its start."""
    settled: float  # until the last DOM change (what the user waits for)
    script: float   # until the app's script run ended (server side; the browser may still be drawing)


def wait_rendered(page, since: float = 0.0, timeout: float = 60.0, quiet_ms: float = 500.0) -> Render:
    """Wait until the page has settled (see the module docstring); return when it last changed.

    Args:
        page: a Playwright page made by `new_page`.
        since: the page clock (performance.now(), ms) at which the navigation started: a script run
            counts only if it finished after it. 0 for a fresh page load.
        timeout: seconds before giving up (TimeoutError).
        quiet_ms: how long the DOM must stay unchanged.
    Returns:
        Seconds from `since` to the last DOM change and to the end of the last script run.
    """
    deadline = time.monotonic() + timeout
    why = "not checked"
    while time.monotonic() < deadline:
        why = page.evaluate(_SETTLED_JS, since)
        if not why:
            last, now = page.evaluate("[window.__lastMutation, performance.now()]")
            if now - last >= quiet_ms:
                if not page.evaluate(_SETTLED_JS, since):
                    ends = page.evaluate(_SCRIPT_ENDS_JS, since)
                    end = ends[-1]
                    return Render((last - since) / 1000.0, (end - since) / 1000.0)
            else:
                page.wait_for_timeout(max(50.0, quiet_ms - (now - last)))
                continue
            why = "it settled, then changed again"
        page.wait_for_timeout(100)
    errors = app_errors(page)
    raise TimeoutError(f"page {page.url} did not settle within {timeout:.0f}s: {why}"
                       + (f"; errors on the page: {errors}" if errors else ""))


def open_page(page, base_url: str, path: str, timeout: float = 60.0) -> Render:
    """Load `base_url + path` (a full page load, new script run) and wait for it to settle."""
    page.goto(base_url + path, wait_until="domcontentloaded")
    return wait_rendered(page, 0.0, timeout)


# Clicks the sidebar link whose text is `title`; returns the click's performance.now(), or null without one.
CLICK_NAV_JS = """(title) => {
    const link = [...document.querySelectorAll('[data-testid="stSidebarNavLink"]')]
        .find(a => a.innerText.trim().split('\\n').pop().trim() === title);
    if (!link) return null;
    const t = performance.now();
    link.click();
    return t;
}"""


def switch_page(page, title: str, timeout: float = 60.0) -> Render:
    """Click the sidebar link titled `title` (client-side navigation) and wait for the page to settle."""
    since = page.evaluate(CLICK_NAV_JS, title)
    if since is None:
        raise LookupError(f"no sidebar link with text {title!r}")
    return wait_rendered(page, since, timeout)


def nav_titles(page) -> dict[str, str]:
    """Sidebar navigation: URL path -> link text (without the icon)."""
    pairs = page.eval_on_selector_all('[data-testid="stSidebarNavLink"]',
                                      "els => els.map(a => [new URL(a.href).pathname, a.innerText])")
    return {path: text.strip().split("\n")[-1].strip() for path, text in pairs}


def app_errors(page) -> list[str]:
    """Texts of Streamlit exception blocks and st.error boxes on the page."""
    return page.eval_on_selector_all(
        '[data-testid="stException"], [data-testid="stAlertContentError"]',
        "els => els.map(e => e.innerText.slice(0, 500))")


def screenshot_full(page, path: Path, max_height: int = 20000) -> None:
    """Screenshot the whole app: Streamlit scrolls inside its main container, not the document, so the
    viewport is made as tall as the content for the shot (then restored)."""
    height = page.evaluate("""() => Math.max(...['stMain', 'stAppViewContainer', 'stSidebarContent']
        .map(id => document.querySelector(`[data-testid="${id}"]`))
        .filter(Boolean).map(e => e.scrollHeight), document.documentElement.scrollHeight)""")
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"], "height": min(max_height, max(size["height"], int(height)))})
    try:
        page.wait_for_timeout(300)  # let the layout react to the new size
        _wait_quiet(page)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path), full_page=True)
    finally:
        page.set_viewport_size(size)


def _wait_quiet(page, quiet_ms: float = 400.0, timeout: float = 10.0) -> None:
    """Wait (at most `timeout` s) until the DOM has not changed for `quiet_ms`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        idle = page.evaluate("performance.now() - window.__lastMutation")
        if idle >= quiet_ms:
            return
        page.wait_for_timeout(quiet_ms - idle)
