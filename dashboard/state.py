"""The shared frame: the sidebar's run picker, epoch selector and compare list, read by every page.

Pages call `current()` for the selection. Links between pages carry `?run=ID&epoch=N&index=I`;
the sidebar picks those up once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from dashboard import cache
from model.runs import RunError, RunInfo

BADGES = {"running": "🔵 running", "completed": "🟢 completed", "failed": "🔴 failed",
          "interrupted": "🟠 interrupted", "imported": "📥 imported"}
REFRESH_SECONDS = 3


@dataclass
class Selection:
    """What the sidebar has selected."""
    runs_dir: Path
    runs: list[RunInfo]
    run: RunInfo | None = None
    epochs: list[int] = field(default_factory=list)   # finished epochs (rows of metrics.csv)
    epoch: int | None = None
    best_epoch: int | None = None
    compare: list[RunInfo] = field(default_factory=list)
    problem: str | None = None                         # why the run cannot be read, if it cannot

    @property
    def run_dir(self) -> str | None:
        return str(self.run.path) if self.run else None


def current() -> Selection:
    """The selection made by `render_sidebar` in this script run."""
    sel = st.session_state.get("_selection")
    return sel if sel is not None else Selection(cache.runs_dir(), [])


def best_epoch(metrics) -> int | None:
    from analysis.overfitting import diagnose
    try:
        return diagnose(metrics).best_epoch
    except ValueError:
        return int(metrics["epoch"].iloc[-1]) if len(metrics) else None


def _apply_query_params(ids: list[str]) -> None:
    """Take ?run=&epoch=&index=&split= from a link into widget state, once per distinct link.

    A link followed inside the session (st.page_link with query_params) carries new values and is
    applied too; the same link is not re-applied on every rerun, so widgets stay free to change.
    """
    qp = st.query_params
    link = {k: qp.get(k) for k in ("run", "epoch", "index", "split") if qp.get(k) is not None}
    if not link:
        st.session_state["_qp_done"] = None
        return
    if st.session_state.get("_qp_done") == link:
        return
    st.session_state["_qp_done"] = link
    if qp.get("run") in ids:
        st.session_state["run_id"] = qp["run"]
    if qp.get("epoch", "").isdigit():
        st.session_state["_wanted_epoch"] = int(qp["epoch"])
    if qp.get("index", "").isdigit():
        st.session_state["attr_index"] = int(qp["index"])
    if qp.get("split") in ("val", "test"):
        st.session_state["attr_split"] = qp["split"]


def render_sidebar() -> Selection:
    """Draw the run picker, epoch selector and compare list; remember and return the selection."""
    folder = cache.runs_dir()
    all_runs = cache.list_runs(str(folder))
    sel = Selection(folder, all_runs)
    st.session_state["_selection"] = sel
    sb = st.sidebar
    sb.markdown("### 🔍 digit-lens")
    if not all_runs:
        sb.info(f"No runs yet in `{folder}`. Train one from the **Runs** page.")
        return sel
    ids = [r.run_id for r in all_runs]
    by_id = {r.run_id: r for r in all_runs}
    _apply_query_params(ids)
    if st.session_state.get("run_id") not in ids:
        st.session_state["run_id"] = ids[0]
    names = [r.name for r in all_runs]
    label = {r.run_id: r.name if names.count(r.name) == 1 else f"{r.name} ({r.run_id})" for r in all_runs}
    run_id = sb.selectbox("Run", ids, key="run_id",
                          format_func=lambda i: f"{label[i]} · {BADGES.get(by_id[i].state, by_id[i].state)}",
                          help="Runs in the runs folder, newest first.")
    sel.run = by_id[run_id]
    sb.caption(f"{BADGES.get(sel.run.state, sel.run.state)} · epoch {sel.run.last_epoch}  \n`{run_id}`")
    try:
        metrics = cache.load_metrics(sel.run.path)
    except RunError as e:
        sel.problem = str(e)
        sb.error(f"Cannot read `{e.path.name}` of this run.")
        metrics = None
    if metrics is not None and len(metrics):
        sel.epochs = [int(e) for e in metrics["epoch"]]
        sel.best_epoch = best_epoch(metrics)
        _render_epoch_picker(sb, sel)
    elif sel.problem is None:
        sb.info("This run has no finished epoch yet.")
    others = [i for i in ids if i != run_id]
    chosen = sb.multiselect("Compare with", others, key="compare_runs",
                            format_func=label.get, help="Pages that can overlay runs show these too.")
    sel.compare = [by_id[i] for i in chosen]
    if sel.run.state == "running":
        with sb:
            _watch_running_run(str(sel.run.path), len(sel.epochs))
    return sel


def _render_epoch_picker(sb, sel: Selection) -> None:
    """Epoch slider, defaulting to the best epoch (by validation loss), last epoch one click away."""
    last = sel.epochs[-1]
    wanted = st.session_state.pop("_wanted_epoch", None)  # from a link
    if st.session_state.get("_epoch_run") != sel.run.run_id:  # a new run: start at its best epoch
        st.session_state["_epoch_run"] = sel.run.run_id
        st.session_state["epoch"] = wanted if wanted in sel.epochs else (sel.best_epoch or last)
    elif wanted in sel.epochs:
        st.session_state["epoch"] = wanted
    if st.session_state.get("epoch") not in sel.epochs:
        st.session_state["epoch"] = sel.best_epoch or last
    if len(sel.epochs) > 1:
        sb.select_slider("Epoch", sel.epochs, key="epoch",
                         help="Every page shows this epoch. Default: the best epoch by validation loss.")
    sel.epoch = int(st.session_state["epoch"])
    c1, c2 = sb.columns(2)
    c1.button(f"Best ({sel.best_epoch})", key="epoch_best", width="stretch",
              on_click=lambda: st.session_state.update(epoch=sel.best_epoch))
    c2.button(f"Last ({last})", key="epoch_last", width="stretch",
              on_click=lambda: st.session_state.update(epoch=last))


def _watch_running_run(run_dir: str, known_epochs: int) -> None:
    """While a run trains, check every few seconds for a new epoch and rerun the app when one lands."""
    @st.fragment(run_every=REFRESH_SECONDS)
    def watch() -> None:
        try:
            n = len(cache.load_metrics(run_dir))
        except RunError:
            return
        if n != known_epochs:
            st.rerun(scope="app")
        st.caption(f"⏳ training… checking for new epochs every {REFRESH_SECONDS}s")
    watch()
