"""The shared frame: the sidebar's run picker, epoch selector and compare list, and the one example
(split, position) that every page showing an example shares. Read by every page.

Pages call `current()` for the run and epoch, and `example_picker()` for the example. The URL always
carries the view: `?run=ID&epoch=N&split=val&index=I`, so a link reopens the same view; a link followed
into the app (or within it, st.page_link with query_params) is applied once.

The example lives in plain session keys (EXAMPLE_SPLIT, EXAMPLE_INDEX), never in a widget's key:
Streamlit forgets a widget's value when a page that does not draw it runs, and the selection must
survive a visit to another page. Each page's widgets are seeded from those keys and write back to them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import streamlit as st

from dashboard import cache
from model.runs import RunError, RunInfo

BADGES = {"running": "🔵 running", "completed": "🟢 completed", "failed": "🔴 failed",
          "interrupted": "🟠 interrupted", "imported": "📥 imported", "diverged": "💥 diverged"}
REFRESH_SECONDS = 3
SPLITS = {"val": "validation", "test": "test"}     # the splits an example can come from
EXAMPLE_SPLIT, EXAMPLE_INDEX = "example_split", "example_index"   # the shared example (not widget keys)
URL_KEYS = ("run", "epoch", "split", "index")


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


def badge(run: RunInfo) -> str:
    """The run's status as shown in the sidebar and the runs table; a diverged run says at which epoch."""
    if run.state == "failed":
        try:
            epoch = cache.load_status(run.path).get("diverged_epoch")
        except RunError:
            epoch = None
        if epoch is not None:
            return f"{BADGES['diverged']} at epoch {epoch}"
    return BADGES.get(run.state, run.state)


def current() -> Selection:
    """The selection made by `render_sidebar` in this script run."""
    sel = st.session_state.get("_selection")
    return sel if sel is not None else Selection(cache.runs_dir(), [])


def _apply_query_params(ids: list[str]) -> None:
    """Take ?run=&epoch=&index=&split= from a link into widget state, once per distinct link.

    A link followed inside the session (st.page_link with query_params) carries new values and is
    applied too; the same link is not re-applied on every rerun, so widgets stay free to change.
    """
    qp = st.query_params
    link = {k: qp.get(k) for k in URL_KEYS if qp.get(k) is not None}
    if not link or st.session_state.get("_qp_done") == link:
        return
    st.session_state["_qp_done"] = link
    if qp.get("run") in ids:
        st.session_state["run_id"] = qp["run"]
    if qp.get("epoch", "").isdigit():
        st.session_state["_wanted_epoch"] = int(qp["epoch"])
    if qp.get("index", "").isdigit():
        st.session_state[EXAMPLE_INDEX] = int(qp["index"])
    if qp.get("split") in SPLITS:
        st.session_state[EXAMPLE_SPLIT] = qp["split"]


def sync_url() -> None:
    """Write the current run, epoch and example into the URL (only what changed), so a link reopens the view."""
    sel = st.session_state.get("_selection")
    want = {"run": sel.run.run_id if sel is not None and sel.run else None,
            "epoch": str(sel.epoch) if sel is not None and sel.epoch is not None else None,
            "split": st.session_state.get(EXAMPLE_SPLIT), "index": st.session_state.get(EXAMPLE_INDEX)}
    want = {k: str(v) for k, v in want.items() if v is not None}
    if {k: st.query_params.get(k) for k in want} != want:
        st.query_params.update(want)
    st.session_state["_qp_done"] = {k: st.query_params.get(k) for k in URL_KEYS if st.query_params.get(k) is not None}


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
                          format_func=lambda i: f"{label[i]} · {badge(by_id[i])}",
                          help="Runs in the runs folder, newest first.")
    sel.run = by_id[run_id]
    sb.caption(f"{badge(sel.run)} · epoch {sel.run.last_epoch}  \n`{run_id}`")
    try:
        metrics = cache.load_metrics(sel.run.path)
    except RunError as e:
        sel.problem = str(e)
        sb.error(f"Cannot read `{e.path.name}` of this run.")
        metrics = None
    if metrics is not None and len(metrics):
        sel.epochs = [int(e) for e in metrics["epoch"]]
        sel.best_epoch = cache.best_epoch(sel.run_dir)
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
    sync_url()
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


# ----------------------------------------------------------------------------- the shared example

@dataclass
class Example:
    """One image of the run's validation or test split, as every page names it."""
    split: str            # "val" or "test"
    index: int            # position in the split: the row of the run's saved predictions
    file: str             # the official MNIST file its pixels come from: "train" or "test"
    row: int              # its row in that file
    label: int
    image: np.ndarray     # uint8 (28,28)

    @property
    def name(self) -> str:
        """The one name every page uses: "val #115"."""
        return f"{self.split} #{self.index}"

    @property
    def long_name(self) -> str:
        """"val #115 (official test file, row 115)"."""
        return f"{self.name} (official {self.file} file, row {self.row})"


def set_example(split: str | None = None, index: int | None = None) -> None:
    """Choose the shared example (a callback for buttons: "Show this example")."""
    if split is not None:
        st.session_state[EXAMPLE_SPLIT] = split
    if index is not None:
        st.session_state[EXAMPLE_INDEX] = int(index)


def _copy_to_shared(widget_key: str, shared_key: str) -> None:
    st.session_state[shared_key] = st.session_state[widget_key]


def example_picker(sel: Selection, prefix: str, where=None, epoch: int | None = None) -> Example:
    """Draw the split and position inputs of the shared example; return the example they select.

    Args:
        sel: the sidebar's selection (a run with saved predictions).
        prefix: the page's key prefix; the widgets are `<prefix>_split` and `<prefix>_index`.
        where: a container to draw in (default: the page).
        epoch: the epoch whose saved predictions give the labels (default: the last one with predictions).
    """
    where = where or st
    run_dir = sel.run_dir
    if st.session_state.get(EXAMPLE_SPLIT) not in SPLITS:
        st.session_state[EXAMPLE_SPLIT] = "val"
    split_key, index_key = f"{prefix}_split", f"{prefix}_index"
    st.session_state[split_key] = st.session_state[EXAMPLE_SPLIT]
    split = where.selectbox("Split", list(SPLITS), key=split_key, format_func=SPLITS.get,
                            on_change=_copy_to_shared, args=(split_key, EXAMPLE_SPLIT),
                            help="Examples come from the run's validation or test split.")
    epochs = cache.prediction_epochs(run_dir)
    if not epochs:
        raise RunError(Path(run_dir) / "predictions", "no predictions saved")
    pred_epoch = epoch if epoch in epochs else epochs[-1]
    _, labels, official = cache.split_predictions(run_dir, pred_epoch, split)
    n = len(labels)
    index = st.session_state.get(EXAMPLE_INDEX)
    if not isinstance(index, (int, np.integer)) or not 0 <= int(index) < n:
        index = 0
    st.session_state[EXAMPLE_INDEX] = st.session_state[index_key] = int(index)
    index = int(where.number_input(f"Example (0–{n - 1})", 0, n - 1, key=index_key, on_change=_copy_to_shared,
                                   args=(index_key, EXAMPLE_INDEX),
                                   help="Position in the split. Every page that shows an example shows this one."))
    file, row = cache.load_config(run_dir).data.official_file(split), int(official[index])
    image = cache.official_images(file, [row])[0]          # its row is known: no second read of the predictions
    sync_url()
    return Example(split, index, file, row, int(labels[index]), image)
