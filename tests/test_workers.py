"""The worker pool: heavy jobs in separate processes, at most size() at once, a queue message while waiting."""
from __future__ import annotations

import os
import time

import pytest

from dashboard import workers


def busy(seconds: float) -> tuple[int, float, float]:
    """Spin the CPU for `seconds`: (pid, start, end) on the monotonic clock of this machine."""
    start = time.time()
    x = 0
    while time.time() - start < seconds:
        x += 1
    return os.getpid(), start, time.time()


def fails(message: str) -> None:
    raise ValueError(message)


class Placeholder:
    """Stands in for st.empty(): records what it was told to show."""

    def __init__(self) -> None:
        self.shown: list[str] = []
        self.cleared = False

    def info(self, text: str, icon: str | None = None) -> None:
        self.shown.append(text)

    def empty(self) -> None:
        self.cleared = True


@pytest.fixture()
def pool_of(monkeypatch):
    def make(n: int) -> None:
        workers.shutdown()
        monkeypatch.setenv("DIGIT_LENS_WORKERS", str(n))
    yield make
    workers.shutdown()


def test_two_workers_run_two_heavy_jobs_at_once_in_other_processes(pool_of):
    pool_of(2)
    workers.run(busy, 0.01)                                  # start the workers (their start-up is not timed)
    futures = [workers.submit(busy, 1.0)[0] for _ in range(2)]
    (pid_a, start_a, end_a), (pid_b, start_b, end_b) = [f.result(timeout=120) for f in futures]
    assert os.getpid() not in (pid_a, pid_b) and pid_a != pid_b
    assert max(start_a, start_b) < min(end_a, end_b)         # they overlapped: both cores busy


def test_at_most_size_jobs_run_and_a_waiting_visitor_sees_the_queue(pool_of):
    pool_of(1)
    workers.run(busy, 0.01)
    first, _ = workers.submit(busy, 1.5)
    time.sleep(0.3)
    assert workers.pending() == 1
    shown = Placeholder()
    _, start, _ = workers.run(busy, 0.6, waiting=shown)      # longer than the 0.2 s poll: "Computing…" is seen
    _, _, end_first = first.result()
    assert start >= end_first                                # one worker: the second waited for the first
    assert shown.shown[0].startswith("Waiting for a worker: 1 heavy job(s)") and shown.shown[-1] == "Computing…"
    assert shown.cleared and workers.pending() == 0


def test_a_jobs_error_reaches_the_caller_with_its_type_and_message(pool_of):
    pool_of(1)
    with pytest.raises(ValueError, match="bad input"):
        workers.run(fails, "bad input")
    assert workers.pending() == 0


def test_zero_workers_run_inline(pool_of):
    pool_of(0)
    pid, _, _ = workers.run(busy, 0.01, waiting=Placeholder())
    assert pid == os.getpid() and workers.pool() is None


def die() -> None:
    os._exit(3)                                              # a worker killed mid-job (out of memory, SIGKILL)


def test_a_dead_worker_is_replaced_and_the_next_job_runs(pool_of):
    pool_of(1)
    with pytest.raises(Exception):
        workers.run(die)                                     # tried twice: each attempt kills its worker
    pid, _, _ = workers.run(busy, 0.01)
    assert pid != os.getpid() and workers.pending() == 0


def cache_setting() -> str | None:
    return os.environ.get("DIGIT_LENS_CACHE")


def test_a_job_sees_the_callers_settings_even_in_a_worker_started_before_them(pool_of, monkeypatch):
    """Read-only mode sets DIGIT_LENS_CACHE in the server: a worker must write caches where the server says."""
    pool_of(1)
    monkeypatch.delenv("DIGIT_LENS_CACHE", raising=False)
    assert workers.run(cache_setting) is None                # the worker is up before the setting
    monkeypatch.setenv("DIGIT_LENS_CACHE", "/tmp/elsewhere")
    assert workers.run(cache_setting) == "/tmp/elsewhere"


def test_a_model_of_a_class_imported_by_path_runs_in_this_process(pool_of, tmp_path):
    """A user's class file imported by path cannot be rebuilt in a worker: such jobs run inline."""
    import torch.nn as nn

    from model.external import load_class
    (tmp_path / "m.py").write_text("import torch.nn as nn\nclass M(nn.Module):\n    def forward(self, x):\n"
                                   "        return x\n")
    user = load_class(tmp_path / "m.py", "M")()
    assert not workers.portable(user) and workers.portable(nn.Sequential(nn.Linear(2, 2))) and workers.portable(3)
    pool_of(1)
    assert workers.run(pid_of, user) == os.getpid()
    assert workers.run(pid_of, nn.Linear(2, 2)) != os.getpid()


def pid_of(model) -> int:
    return os.getpid()


def alive(pid: int) -> bool:
    """Whether process pid exists and is not a zombie."""
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_idle_workers_stop_and_the_next_job_starts_them_again(pool_of, monkeypatch):
    pool_of(1)
    monkeypatch.setenv("DIGIT_LENS_WORKER_IDLE_S", "0.5")
    first_pid = workers.run(busy, 0.01)[0]
    deadline = time.time() + 30
    while (workers._pool is not None or alive(first_pid)) and time.time() < deadline:
        time.sleep(0.1)
    assert workers._pool is None, "the idle pool was not stopped"
    assert not alive(first_pid), "the idle worker process did not exit"
    server = workers.fork_server_pid()
    while server is not None and alive(server) and time.time() < deadline:
        time.sleep(0.1)
    assert server is None or not alive(server), "the fork server outlived its workers (it holds torch alone)"
    second_pid = workers.run(busy, 0.01)[0]                  # a new worker (and fork server), same results
    assert second_pid not in (first_pid, os.getpid())
    assert workers.fork_server_pid() is not None and alive(workers.fork_server_pid())


def test_a_job_keeps_the_pool_from_stopping_while_it_runs(pool_of, monkeypatch):
    pool_of(1)
    monkeypatch.setenv("DIGIT_LENS_WORKER_IDLE_S", "0.3")
    workers.run(busy, 0.01)                                  # the idle timer starts after this job
    pid, start, end = workers.run(busy, 1.5)                 # longer than the idle time: must not be cut off
    assert end - start >= 1.5 and pid != os.getpid()


def test_a_quick_job_returns_when_done_and_shows_no_message(pool_of, monkeypatch):
    pool_of(1)
    workers.run(busy, 0.01)                                  # start the worker
    monkeypatch.setattr(workers, "_QUIET_S", 30.0)           # a message would only come after 30 s
    shown, start = Placeholder(), time.monotonic()
    workers.run(busy, 0.01, waiting=shown)
    assert time.monotonic() - start < 15, "the job's end was not noticed until the quiet period was over"
    assert shown.shown == [] and not shown.cleared


def test_a_free_worker_takes_the_job_of_the_earliest_request(pool_of):
    """A page makes its heavy calls one after another: the visitor who asked first is served first, even for a
    job submitted after another visitor's (first in, first out would interleave them, and both finish last)."""
    import threading
    pool_of(1)
    workers.run(busy, 0.01)
    blocker, _ = workers.submit(busy, 1.0)                  # holds the only worker while both submit
    futures, early_began, late_submitted = {}, threading.Event(), threading.Event()

    def early() -> None:                                     # a script run that began first...
        workers.request_began()
        early_began.set()
        late_submitted.wait()
        futures["early"] = workers.submit(busy, 0.05)[0]     # ...submits its job second

    def late() -> None:
        early_began.wait()
        time.sleep(0.02)
        workers.request_began()
        futures["late"] = workers.submit(busy, 0.05)[0]
        late_submitted.set()
    threads = [threading.Thread(target=early), threading.Thread(target=late)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _, _, end_blocker = blocker.result(timeout=60)
    (_, start_early, _), (_, start_late, _) = futures["early"].result(timeout=60), futures["late"].result(timeout=60)
    assert end_blocker <= start_early < start_late
    assert workers.pending() == 0


def niceness() -> int:
    return os.nice(0)


def test_workers_run_below_the_servers_cpu_priority(pool_of):
    """A light page (the server) comes before heavy jobs when the cores are busy."""
    pool_of(1)
    assert workers.run(niceness) == min(19, os.nice(0) + workers.WORKER_NICE)


def layers_known(model) -> bool:
    from analysis.layers import known_layers
    return known_layers(model) is not None


def test_a_worker_gets_the_layers_the_server_found_and_does_not_trace_again(pool_of):
    from analysis.attributions import private_copy
    from analysis.layers import known_layers, layers_of
    from model.net import Net
    pool_of(1)
    net = Net().eval()
    assert workers.run(layers_known, net) is False           # never traced here: the worker knows nothing
    found = layers_of(net)
    assert workers.run(layers_known, net) is True
    assert known_layers(private_copy(net)) == found          # a private copy has the same layers, untraced


SERVER_ONLY_NEEDS_NOT = ("captum", "matplotlib", "scipy", "skimage", "sklearn", "cleanlab")


def server_imports() -> set[str]:
    """The modules dashboard/app.py and its pages import (app.py's SERVER_LIFETIME_MODULES included)."""
    import ast

    from tests.browser_util import ROOT
    names: set[str] = set()
    for path in [ROOT / "dashboard" / "app.py", *sorted((ROOT / "dashboard" / "app_pages").glob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                names |= {a.name for a in node.names}
            elif isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "SERVER_LIFETIME_MODULES":
                names |= set(ast.literal_eval(node.value))
    # the drawing canvas registers a Streamlit component when imported (only possible inside a running app)
    return {n for n in names if n.split(".")[0] not in ("__future__", "streamlit_drawable_canvas")}


def test_the_server_imports_none_of_what_only_workers_need():
    """The dashboard's server leaves maps, sanity checks and label issues to the workers (whose fork server
    preloads those libraries): importing every module its pages import loads none of them (about 100 MB)."""
    import subprocess
    import sys

    from tests.browser_util import ROOT
    names = server_imports()
    code = f"""
import importlib, sys
sys.path.insert(0, {str(ROOT)!r})
for name in {sorted(names)!r}:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError:
        pass                                      # `from package import name` where name is not a module
print(" ".join(sorted({{m.split(".")[0] for m in sys.modules}} & set({SERVER_ONLY_NEEDS_NOT!r}))))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "analysis.attributions" in names and "dashboard.why" in names
    assert out.stdout.strip() == "", f"the server would import {out.stdout.strip()}"
