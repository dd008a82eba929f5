"""Runs: every training run at a glance, a comparison of several, a report to download, and training from the page."""
import numpy as np
import pandas as pd
import streamlit as st

from dashboard import cache, figures, mode, report, state, training, ui
from model.net import VARIANTS
from model.runs import RunError, filter_runs
from model.config import TrainConfig
from model.train import OTHER_DEFAULTS, PRESETS

LAUNCHES = "runs_launches"   # session key: the training processes started from this page
PROGRESS_SECONDS = 2
READ_ONLY = mode.read_only()  # a shared server (`-- --read-only`): no training from here, nothing written
READ_ONLY_NOTE = ("🔒 **This server is read-only**: runs can be viewed but not trained or stopped here. "
                  "To train, run the dashboard on your own machine (`make run`) or `python -m model.train`.")

sel = state.current()
st.title("🗂️ Runs")
ui.intro(
    "Every training run in the runs folder: how far it got and how good it is. Pick several to compare "
    "their curves and settings, download a report of the selected run, or train a new one from here.",
    """
- **Status**: 🟢 completed, 🔵 running, 🟠 interrupted (stopped; its finished epochs are kept), 🔴 failed,
  📥 imported (a checkpoint brought in from elsewhere).
- **Architecture**: the variant of our network (seed, small-fc, …), or for a network brought in from
  elsewhere (`python -m model.import_checkpoint`) its class or archive, what its last layer returns and
  how it wants its input normalised.
- **Best epoch** is the epoch with the lowest validation loss (the one the sidebar starts at); *val acc*
  and *test acc* are measured at that epoch. *Top val acc* is the highest validation accuracy of any epoch.
- **Duration** adds up the time of the finished epochs.
- **Compare**: the validation curves of the picked runs on one chart, and only the settings that differ
  between them (everything else was the same).
- **Train a run**: the training runs as its own process (`python -m model.train`), so the dashboard stays
  responsive and the run keeps going if you close the tab. The architecture is one of our variants or the
  class of an imported run (trained from its kept class file, `--model-file`). *Stop* ends it cleanly: the run is marked
  interrupted and every finished epoch stays usable. One training at a time (the CPU is shared).
""")

launches: list[training.Launch] = [] if READ_ONLY else st.session_state.setdefault(LAUNCHES, [])
for launch in launches:
    training.poll(launch)          # note processes that have ended (training.launch also reaps them)


def start_training(**options) -> None:
    """Launch a training process into the runs folder and remember it in this session."""
    name = options.pop("name", None) or options.get("preset") or options.get("variant") or options.get(
        "model_class") or "run"
    launches.append(training.launch(sel.runs_dir, name, **options))


def any_running() -> bool:
    return any(training.is_running(launch) for launch in launches)


# ----------------------------------------------------------------------------- live progress of launched runs
@st.fragment(run_every=PROGRESS_SECONDS if any_running() else None)
def render_launches() -> None:
    """Progress of the trainings started here: epoch k of n, a progress bar, the log tail, Stop."""
    if st.session_state.pop("runs_rerun_app", False):   # a button here changed the sidebar's selection
        st.rerun(scope="app")
    active = [launch for launch in launches if not launch.dismissed]
    if not active:
        return
    st.subheader("Training from the dashboard")
    for launch in active:
        p = training.progress(launch)
        with st.container(border=True):
            head, buttons = st.columns([4, 1])
            badge = state.BADGES.get(p.state, "⏳ starting" if p.state == "starting" else p.state)
            total = p.epochs_total or "?"
            batch = f" · batch {p.batch[0]}/{p.batch[1]} of epoch {p.epochs_done + 1}" if p.batch else ""
            head.markdown(f"**{launch.name}** · {badge} · epoch {p.epochs_done} of {total} finished{batch}"
                          + (f" · `{p.run_dir.name}`" if p.run_dir else ""))
            head.progress(p.fraction, text=f"{p.fraction:.0%}")
            if p.returncode is None:
                buttons.button("⏹ Stop", key=f"runs_stop_{launch.pid}", width="stretch",
                               on_click=training.stop, args=(launch,),
                               help="Send SIGTERM: the run is marked interrupted; finished epochs are kept.")
            else:
                buttons.button("Dismiss", key=f"runs_dismiss_{launch.pid}", width="stretch",
                               on_click=lambda item=launch: setattr(item, "dismissed", True))
            if p.run_dir is not None and p.epochs_done:
                buttons.button("Open", key=f"runs_open_{launch.pid}", width="stretch",
                               help="Select this run in the sidebar.",
                               on_click=lambda rid=p.run_dir.name: st.session_state.update(run_id=rid,
                                                                                           runs_rerun_app=True))
            if p.state == "failed":
                st.error(f"**The training failed** (exit code {p.returncode}); the end of its log "
                         f"`{launch.log_path}` is below.")
            with st.expander("Log", expanded=p.state == "failed"):
                st.code(p.log_tail or "(nothing yet)", language=None)
        seen = st.session_state.setdefault("runs_seen", {})
        now = (p.state, p.epochs_done, p.run_dir is not None)
        if seen.get(launch.pid) not in (None, now):   # a new epoch, a new run folder or an end: refresh the page
            seen[launch.pid] = now
            st.rerun(scope="app")
        seen[launch.pid] = now


# ----------------------------------------------------------------------------- the empty state
if not sel.runs:
    if READ_ONLY:
        st.info(f"**No runs yet** in `{sel.runs_dir}`.")
    else:
        st.info(f"**No runs yet** in `{sel.runs_dir}`. Train a quick run (4 epochs on 20,000 images, a few "
                "minutes on a laptop CPU) to fill every page of the dashboard.")
        st.button("🚀 Train a quick run", key="runs_quick", type="primary", disabled=any_running(),
                  on_click=start_training, kwargs={"preset": "quick", "name": "quick"})

if not READ_ONLY:
    render_launches()


# ----------------------------------------------------------------------------- the table of runs
def summary_row(run) -> dict:
    """One row of the runs table: the run's settings and its analysis.curves.run_summary (accuracies as fractions)."""
    t = run.config.train
    row = {"run": run.run_id, "name": run.name, "status": state.badge(run),
           "architecture": run.config.architecture, "optimizer": t.optimizer, "lr": t.lr,
           "epochs": f"{run.last_epoch}/{t.epochs}", "best epoch": None, "val acc": np.nan,
           "test acc": np.nan, "top val acc": np.nan, "duration": "—", "started": run.started_at[:16].replace("T", " ")}
    try:
        s = cache.run_summary(str(run.path))
    except RunError:
        row["status"] += " ⚠️ unreadable metrics"
        return row
    if s["epochs_done"]:
        row.update({"epochs": f"{s['epochs_done']}/{t.epochs}", "best epoch": s["best_epoch"], "val acc": s["val_acc"],
                    "test acc": s["test_acc"], "top val acc": s["top_val_acc"], "duration": figures.duration(s["seconds"])})
    return row


RUNS_PER_PAGE = 50       # rows of the runs table; only the shown page's runs are summarised
if sel.runs:
    st.subheader(f"All runs ({len(sel.runs)})")
    listed = sel.runs
    if len(sel.runs) > 10:
        f1, f2 = st.columns([3, 1])
        query = f1.text_input("Filter runs", key="runs_filter",
                              placeholder="words of the name, run id, variant or status",
                              help="Shows the runs whose name, id, variant, preset or status contain every word.")
        listed = filter_runs(sel.runs, query)
        pages = max(1, -(-len(listed) // RUNS_PER_PAGE))
        if not 1 <= st.session_state.get("runs_page", 1) <= pages:
            st.session_state["runs_page"] = 1
        page = int(f2.number_input(f"Page (of {pages})", 1, pages, key="runs_page")) if pages > 1 else 1
        first = (page - 1) * RUNS_PER_PAGE
        st.caption(f"{len(listed)} of {len(sel.runs)} runs match"
                   + (f"; showing {first + 1}–{min(first + RUNS_PER_PAGE, len(listed))}" if listed else ""))
        listed = listed[first:first + RUNS_PER_PAGE]
    # Every header fits its column: widths sum to what fits the main column on a 1400-px window; "started"
    # is left out of the view (the run id begins with the start time), the id comes last.
    def pct(label: str, help: str) -> st.column_config.NumberColumn:
        return st.column_config.NumberColumn(label, format="percent", width=70, help=help)

    table = pd.DataFrame([summary_row(r) for r in listed])
    if not listed:
        st.info("No run matches the filter.")
    else:
        st.dataframe(table, hide_index=True, width="stretch", key="runs_table",
                     column_order=[c for c in table.columns if c not in ("run", "started")] + ["run"],
                     column_config={"run": st.column_config.TextColumn("run id", width=190,
                                                                       help="started YYYYMMDD-HHMMSS, then the name"),
                                    "name": st.column_config.TextColumn(width=80),
                                    "status": st.column_config.TextColumn(width=160),
                                    "architecture": st.column_config.TextColumn(
                                        width=110, help="our variant, or the imported network's class or archive"),
                                    "optimizer": st.column_config.TextColumn(width=72),
                                    "lr": st.column_config.NumberColumn(format="%g", width=45),
                                    "epochs": st.column_config.TextColumn(width=58, help="finished / planned"),
                                    "best epoch": st.column_config.NumberColumn("best", width=45,
                                                                                help="best epoch (lowest val loss)"),
                                    "val acc": pct("val acc", "validation accuracy at the best epoch"),
                                    "test acc": pct("test acc", "test accuracy at the best epoch"),
                                    "top val acc": pct("top val", "the highest validation accuracy of any epoch"),
                                    "duration": st.column_config.TextColumn(width=68, help="sum of the epoch times")})

    # ------------------------------------------------------------------------- compare
    st.subheader("Compare runs")
    ids = [r.run_id for r in sel.runs]
    by_id = {r.run_id: r for r in sel.runs}
    if "runs_pick" not in st.session_state:
        st.session_state["runs_pick"] = [r.run_id for r in [sel.run, *sel.compare] if r is not None]
    st.session_state["runs_pick"] = [i for i in st.session_state["runs_pick"] if i in ids]
    picked = st.multiselect("Runs to compare", ids, key="runs_pick",
                            format_func=lambda i: f"{by_id[i].name} · {i}",
                            help="Starts with the sidebar's run and its compare list.")
    if len(picked) >= 1:
        names = {i: (by_id[i].name if [by_id[j].name for j in picked].count(by_id[i].name) == 1 else i) for i in picked}
        curves = {}
        for i in picked:
            try:
                curves[names[i]] = cache.load_metrics(by_id[i].path)
            except RunError as e:
                st.error(f"Cannot read `{e.path}`: {e}")
        left, right = st.columns(2)
        left.plotly_chart(figures.curves_figure(curves, "loss", ("val",)), key="runs_cmp_loss")
        right.plotly_chart(figures.curves_figure(curves, "acc", ("val",)), key="runs_cmp_acc")
        if len(picked) >= 2:
            diff = figures.config_diff({names[i]: by_id[i].config for i in picked})
            st.markdown("**Settings that differ**")
            if diff.empty:
                st.caption("The configs are the same (apart from names, times and versions).")
            else:
                st.dataframe(diff, width="stretch")
            st.button("Show these in the sidebar", key="runs_to_sidebar",
                      help="The first becomes the selected run, the others its compare list.",
                      on_click=lambda: st.session_state.update(run_id=picked[0], compare_runs=picked[1:]))
        else:
            st.caption("Pick a second run to see which settings differ.")

    # ------------------------------------------------------------------------- report
    st.subheader("Report of the selected run")
    if sel.run is not None and sel.epochs and not sel.problem:
        run_dir, epoch = sel.run_dir, sel.epoch
        st.markdown(f"**Architecture** of {sel.run.name}: {sel.run.config.architecture}")
        st.markdown(f"One HTML file for **{sel.run.name}** (`{sel.run.run_id}`), epoch {epoch}: curves, the "
                    "overfitting verdict, the confusion matrix and the per-class table. It opens offline.")
        st.download_button("⬇️ Download the HTML report", lambda: report.build_report(run_dir, epoch, "val"),
                           file_name=f"{sel.run.run_id}-epoch{epoch:03d}-report.html", mime="text/html",
                           key="runs_report", on_click="ignore")
    else:
        st.caption("The selected run has no readable finished epoch yet.")

# ----------------------------------------------------------------------------- train a new run
st.subheader("Train a new run")
if READ_ONLY:
    st.info(READ_ONLY_NOTE)
    st.stop()
running = any_running()
preset = st.radio("Preset", ["quick", "seed", "custom"], key="runs_preset", horizontal=True,
                  format_func={"quick": "quick (4 epochs, 20,000 images)",
                               "seed": "seed notebook (10 epochs, all 60,000, validate on test)",
                               "custom": "custom"}.get)
base = {**TrainConfig().to_dict(), **OTHER_DEFAULTS, **PRESETS.get(preset, {})}
# the architectures to train: our variants, and the class of every imported class-file run ("run:<run id>",
# trained again from the class file the run keeps)
CLASS_RUNS = training.class_architectures(sel.runs)
ARCHITECTURES = list(VARIANTS) + list(CLASS_RUNS)


def architecture_name(choice: str) -> str:
    if choice in CLASS_RUNS:
        return f"{CLASS_RUNS[choice].config.architecture} · from {CLASS_RUNS[choice].name}"
    return choice

with st.form("runs_train_form", border=True):
    c1, c2, c3 = st.columns(3)
    name = c1.text_input("Name", value=preset if preset != "custom" else "custom", key=f"runs_f_name_{preset}")
    epochs = c1.number_input("Epochs", 1, 200, int(base["epochs"]), key=f"runs_f_epochs_{preset}")
    lr = c2.number_input("Learning rate", 1e-5, 1.0, float(base["lr"]), format="%g", key=f"runs_f_lr_{preset}")
    optimizer = c2.selectbox("Optimizer", list(training.OPTIMIZERS), key=f"runs_f_opt_{preset}",
                             index=list(training.OPTIMIZERS).index(base["optimizer"]))
    variant = c3.selectbox("Architecture", ARCHITECTURES, index=ARCHITECTURES.index(base["variant"]),
                           key=f"runs_f_variant_{preset}", format_func=architecture_name,
                           help="A variant of our network (model/net.py), or the class of an imported run "
                                "(trained from the class file the run keeps).")
    subset = c3.number_input("Training examples (0 = all)", 0, 60000, int(base["subset"]), step=1000,
                             key=f"runs_f_subset_{preset}")
    eval_subset = c1.number_input("Validation/test examples (0 = all)", 0, 10000, int(base["eval_subset"]), step=500,
                                  key=f"runs_f_eval_{preset}", help="Fewer makes each epoch's evaluation faster.")
    submitted = st.form_submit_button("🚀 Start training", type="primary", disabled=running)
    if running:
        st.caption("A training started here is still running: stop it or wait for it to finish.")
if submitted and not running:
    network = training.network_options(CLASS_RUNS[variant]) if variant in CLASS_RUNS else {"variant": variant}
    start_training(name=name, preset=None if preset == "custom" else preset, epochs=int(epochs), lr=float(lr),
                   optimizer=optimizer, subset=int(subset), eval_subset=int(eval_subset), **network)
    st.rerun()
