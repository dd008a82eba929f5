"""Heavy work in a small pool of worker processes, shared by every session and bounded.

Streamlit runs every session's script as a thread of one process, so two visitors' heavy computations
(attribution maps of many images, sanity checks, the smallest change) share one interpreter: they
interleave instead of using both cores, and a light page waits behind them. Here heavy jobs run in at
most `size()` worker processes (default: one per core, $DIGIT_LENS_WORKERS to change; 0 runs every job
in the calling thread, as tests of single pages do):

    result = workers.run(jobs.attribution, run_dir, epoch, image, method, target, options,
                         waiting=placeholder)     # blocks this session's thread, shows its queue position

A job is a module-level function of `dashboard.jobs` (importable without Streamlit) with picklable
arguments; results come back pickled. Several sessions asking for the same result still compute it
once: the cached wrappers in dashboard.cache call `run` inside st.cache_data, which holds one lock per
key. While a job waits, `waiting` (an st.empty placeholder) says how many jobs are ahead and then that
it is computing, so a visitor never sees a frozen page.

Workers start with the "forkserver" method (never fork a process that runs threads), forked from a
server that has imported torch, dashboard.jobs and the analysis modules its jobs use already (so their
pages are shared by every worker, not copied), and use one torch thread each (the pool is the
parallelism). They keep no models: each job receives the dashboard's cached model, whose weights travel
through shared memory, and after each job a worker hands its freed memory back to the system. A pool
with no job for IDLE_S seconds ($DIGIT_LENS_WORKER_IDLE_S) stops its workers and the fork server they
come from; the next job starts them again (about 3 s).

Order: the visitor who asked first is served first. A page makes its heavy calls one after another (a new
example on Attributions: three maps, then three sanity and three deletion checks), so a plain first-in,
first-out queue interleaves everybody's jobs and everybody finishes last. Here every job carries the time
its script run began (`request_began`, called by dashboard/app.py), and a free worker takes the waiting job
of the earliest request (submission order within one request). Workers run at a lower CPU priority
(WORKER_NICE) than the server, so a light page is never slowed by heavy jobs.
"""
from __future__ import annotations

import contextlib
import functools
import heapq
import multiprocessing
import multiprocessing.forkserver
import os
import sys
import threading
import time
import types
from concurrent.futures import Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable

_pool: ProcessPoolExecutor | None = None
_lock = threading.Lock()
_wake = threading.Condition(_lock)   # tells the dispatcher that a job came or a worker got free
_inflight: dict[int, tuple[float, int]] = {}   # seq -> (request time, seq) of jobs not finished, all sessions
_waiting: list = []                  # heap of (request time, seq, job) not handed to the pool yet
_running: set[int] = set()           # seqs handed to the pool (at most size() at once)
_dispatcher: threading.Thread | None = None
_request = threading.local()         # .began: monotonic time the current script run began (request_began)
_next = 0
WORKER_NICE = 10  # workers' CPU priority below the server's (0): the server's light pages come first
_POLL_S = 0.2    # how often a waiting visitor's queue message is refreshed
_QUIET_S = 0.1   # jobs done within this show no message at all
# modules the fork server imports once, so that every worker shares their pages (not "__main__", its default)
# (the analysis modules import the last five only inside the functions that need them: the server imports the
# analysis modules too, for their tables of methods and kinds, and needs them only for jobs run inline: see submit)
PRELOAD = ["torch", "dashboard.jobs", "analysis.attributions", "analysis.trust", "analysis.counterfactual",
           "captum.attr", "captum.metrics", "scipy.ndimage", "scipy.stats", "skimage.metrics"]
_idle_timer: threading.Timer | None = None
# settings a job reads from the environment: sent with every job, since a worker may predate them
_ENV_KEYS = ("DIGIT_LENS_CACHE", "DIGIT_LENS_RUNS", "DIGIT_LENS_DATA", "DIGIT_LENS_READ_ONLY")


def size() -> int:
    """Worker processes to use: $DIGIT_LENS_WORKERS, else the number of cores (at most 4)."""
    env = os.environ.get("DIGIT_LENS_WORKERS")
    if env is not None and env.strip():
        return max(0, int(env))
    return max(1, min(4, os.cpu_count() or 1))


def idle_s() -> float:
    """Seconds without a job after which the workers stop: $DIGIT_LENS_WORKER_IDLE_S, else 60."""
    env = os.environ.get("DIGIT_LENS_WORKER_IDLE_S")
    return float(env) if env is not None and env.strip() else 60.0


def _init_worker() -> None:
    import gc

    import torch
    torch.set_num_threads(1)
    os.nice(WORKER_NICE)
    gc.freeze()   # what the fork server imported: never walked by collections, so never copied into this worker


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, looked up once per process (None when this is not glibc)."""
    import ctypes
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def give_back_heap() -> None:
    """Return the heap's free pages to the system: glibc keeps what a process freed for its next allocations, so
    without this a process's memory stays at its highest point (the server calls it after every script run)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _release_memory() -> None:
    """In a worker, after a job: collect its garbage and give freed heap back to the system."""
    import gc
    gc.collect()
    give_back_heap()


def _warm(seconds: float) -> None:
    """Hold a worker a moment, so that the pool starts all of its processes at once (it starts them on demand)."""
    time.sleep(seconds)


def pool() -> ProcessPoolExecutor | None:
    """The shared pool (started on first use), or None when jobs run inline (size() == 0)."""
    global _pool
    n = size()
    if n == 0:
        return None
    with _lock:
        if _pool is None:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(PRELOAD)   # "__main__", its default, is the page script under Streamlit
            _pool = ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_init_worker)
            with _plain_main():
                for _ in range(n):          # starts all n processes now (the pool starts them on demand)
                    _pool.submit(_warm, 0.5)
            _start_idle_timer()             # a pool started for nothing stops too
        return _pool


@contextlib.contextmanager
def _plain_main():
    """An empty __main__ while workers start: a new process re-imports its parent's __main__, which under
    Streamlit is the page script being run (Streamlit itself swaps __main__ for every script run)."""
    saved = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = saved


def pending() -> int:
    """Jobs submitted to the pool and not finished yet (queued or running), over all sessions."""
    return len(_inflight)


def request_began() -> None:
    """Mark the start of a script run (a visitor's request) in this thread: its jobs are served in that order."""
    _request.began = time.monotonic()


def _ahead(seq: int) -> int | None:
    """Jobs ahead of job `seq` (running, or waiting for an earlier request), or None when it has a worker."""
    with _lock:
        if seq in _running or seq not in _inflight:
            return None
        mine = _inflight[seq]
        return len(_running) + sum(1 for s, key in _inflight.items() if key < mine and s not in _running)


def _call(env: dict[str, str | None], fn: Callable, args: tuple, layers: dict) -> Any:
    """In a worker: take the caller's settings (cache folder, ...) and the layers it found in its models (so
    that the models rebuilt here are not traced again, tens of ms each), then run the job."""
    from analysis.layers import remember_layers
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    for i, found in layers.items():
        remember_layers(args[i], found)
    try:
        return fn(*args)
    finally:
        _release_memory()


def portable(obj: Any) -> bool:
    """Whether a worker can rebuild obj from a pickle: a model whose classes live in importable modules (a
    user's class file imported by path is not; its torch.fx rewrite is). Other arguments: always."""
    import torch.fx as fx
    import torch.nn as nn
    if not isinstance(obj, nn.Module):
        return True
    for m in obj.modules():
        if isinstance(m, fx.GraphModule):
            continue
        if not _importable(type(m).__module__.split(".")[0]):
            return False
    return True


@functools.lru_cache(maxsize=64)
def _importable(top: str) -> bool:
    """Whether a fresh process finds the top-level module `top` on sys.path (not one imported by file path)."""
    from importlib.machinery import PathFinder
    return top != "__main__" and (top in sys.builtin_module_names or PathFinder.find_spec(top, sys.path) is not None)


def submit(fn: Callable, *args: Any) -> tuple[Future, int]:
    """Start fn(*args) in a worker (or run it now when there is no pool, or when an argument is a model a
    worker cannot rebuild): (its future, its sequence number)."""
    global _next
    if size() == 0 or not all(portable(a) for a in args):
        f: Future = Future()
        try:
            f.set_result(fn(*args))
        except BaseException as e:  # the future carries the job's own exception to the caller
            f.set_exception(e)
        return f, -1
    f = Future()
    job = (f, _call, ({k: os.environ.get(k) for k in _ENV_KEYS}, fn, args, _known_layers(args)))
    with _lock:
        seq, _next = _next, _next + 1
        key = (getattr(_request, "began", time.monotonic()), seq)
        _inflight[seq] = key   # counted before the pool is asked for: it is never stopped for idleness under a job
        heapq.heappush(_waiting, (*key, job))
        _start_dispatcher()
        _wake.notify()
    return f, seq


def _start_dispatcher() -> None:
    """(Under _lock) start the thread that hands waiting jobs to the pool, once per server."""
    global _dispatcher
    if _dispatcher is None or not _dispatcher.is_alive():
        _dispatcher = threading.Thread(target=_dispatch, name="digit-lens-workers", daemon=True)
        _dispatcher.start()


def _dispatch() -> None:
    """Forever: when a worker is free, give it the waiting job of the earliest request."""
    while True:
        with _wake:
            while not (_waiting and len(_running) < size()):
                _wake.wait()
            _, seq, (f, call, args) = heapq.heappop(_waiting)
            _running.add(seq)
        try:
            inner = pool().submit(call, *args)
        except Exception as e:   # a broken or stopped pool: the caller's run() retries with a new one
            inner = Future()
            inner.set_exception(e)
        inner.add_done_callback(functools.partial(_finished, seq, f))


def _finished(seq: int, f: Future, inner: Future) -> None:
    """A job ended in the pool: free its worker for the next one, then pass its result or error to the caller."""
    with _wake:
        _running.discard(seq)
        _inflight.pop(seq, None)
        if not _inflight:
            _start_idle_timer()
        _wake.notify()
    try:
        f.set_result(inner.result())
    except BaseException as e:   # the job's own error, a broken pool, or a pool stopped under it (cancelled)
        f.set_exception(e)


def _known_layers(args: tuple) -> dict:
    """{position: analysis.layers.Layers} of the model arguments whose layers this process has found already."""
    import torch.nn as nn

    from analysis.layers import known_layers
    found = {i: known_layers(a) for i, a in enumerate(args) if isinstance(a, nn.Module)}
    return {i: layers for i, layers in found.items() if layers is not None}


def _start_idle_timer() -> None:
    """(Under _lock, with no job in flight) stop the workers if no job comes within idle_s()."""
    global _idle_timer
    if _idle_timer is not None:
        _idle_timer.cancel()
    _idle_timer = threading.Timer(idle_s(), _stop_if_idle, args=(_next,))
    _idle_timer.daemon = True
    _idle_timer.start()


def _stop_if_idle(next_then: int) -> None:
    """Stop the pool's workers if no job was submitted since the timer started (next_then) and none runs."""
    global _pool
    with _lock:
        if _next != next_then or _inflight or _pool is None:
            return
        idle, _pool = _pool, None
    idle.shutdown(wait=True)
    with _lock:
        if _pool is None:     # no job came meanwhile (a new pool starts its workers under this lock)
            _stop_fork_server()


def _fork_server() -> Any:
    """multiprocessing's fork server object (one per process; private, so None if a Python lacks it)."""
    return getattr(multiprocessing.forkserver, "_forkserver", None)


def fork_server_pid() -> int | None:
    """The pid of multiprocessing's fork server, or None when it is not running."""
    return getattr(_fork_server(), "_forkserver_pid", None)


def _stop_fork_server() -> None:
    """Stop multiprocessing's fork server as well: once no worker shares its pages it holds torch and the analysis
    libraries alone (about 300 MB). The next pool starts it again (a few seconds: it imports them anew).

    Uses ForkServer._stop, private (CPython's own tests call it); without it the fork server simply stays."""
    stop = getattr(_fork_server(), "_stop", None)
    if stop is not None:
        stop()


def run(fn: Callable, *args: Any, waiting: Any = None) -> Any:
    """fn(*args) in a worker, waiting for it; `waiting` (an st.empty placeholder, optional) shows the queue.

    Raises whatever the job raised (its type and message cross the process boundary). A worker that died
    (killed, out of memory) breaks the pool: it is replaced and the job tried once more.
    """
    try:
        return _run(fn, args, waiting)
    except BrokenProcessPool:
        _discard_pool()
        return _run(fn, args, waiting)


def _run(fn: Callable, args: tuple, waiting: Any) -> Any:
    f, seq = submit(fn, *args)
    shown = None
    # wait on the future itself (not a sleep): a job returns the moment it is done; the message appears only for
    # jobs that take longer than _QUIET_S, and is refreshed every _POLL_S
    while waiting is not None and not wait([f], timeout=_POLL_S if shown else _QUIET_S).done:
        queued = _ahead(seq)
        text = (f"Waiting for a worker: {queued} heavy job(s) of other visitors ahead of yours "
                f"({size()} run at a time)…" if queued else "Computing…")
        if text != shown:
            waiting.info(text, icon="⏳")
            shown = text
    if shown is not None:
        waiting.empty()
    return f.result()


def _discard_pool() -> None:
    """Forget a broken pool (its jobs failed); the next job starts a new one."""
    global _pool
    with _lock:
        broken, _pool = _pool, None
    if broken is not None:
        broken.shutdown(wait=False, cancel_futures=True)


def shutdown() -> None:
    """Stop the workers (tests; the server's exit stops them anyway)."""
    global _pool
    with _lock:
        if _idle_timer is not None:
            _idle_timer.cancel()
        stopping, _pool = _pool, None
        dropped = [job[0] for *_, job in _waiting]
        _waiting.clear()
        for f in dropped:
            f.set_exception(RuntimeError("the worker pool was stopped"))
    if stopping is not None:   # outside the lock: a finishing job's callback takes it
        stopping.shutdown(wait=True, cancel_futures=True)
