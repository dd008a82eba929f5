"""Overfitting: the verdict, the generalization gap, which classes get worse, calibration and training dynamics."""
import streamlit as st

from analysis.dynamics import REGIONS
from dashboard import cache, figures, state, ui, why
from model.runs import RunError

CARTO_SIZES = (5000, 20000)   # sample sizes offered for the cartography map (plus "all")
MIN_DROP = 0.02          # "got worse" = validation accuracy fell by more than 2 points
WORSE_COLUMNS = {   # analysis.errors.classes_getting_worse's columns, with human headers
    "epoch": st.column_config.NumberColumn("epoch", help="the later of the two epochs"),
    "class": st.column_config.NumberColumn("class"),
    "before": st.column_config.NumberColumn("accuracy before", format="percent"),
    "after": st.column_config.NumberColumn("accuracy after", format="percent"),
    "change": st.column_config.NumberColumn("change in class accuracy", format="percent",
                                            help="accuracy after − before (percentage points)"),
    "overall_change": st.column_config.NumberColumn("change in overall accuracy", format="percent",
                                                    help="overall validation accuracy after − before"),
}

sel = state.current()
st.title("🩺 Overfitting")
ui.intro(
    "Is the model learning the training set by heart instead of learning digits? The verdict comes "
    "from the loss curves; the views below show *where* it happens: which classes, how confident "
    "the mistakes are, and which training examples the model keeps forgetting.",
    """
- **Verdict**: overfitting means the validation loss keeps rising for a few epochs after its lowest
  point *while* the training loss keeps falling. The **best epoch** has the lowest validation loss;
  **early stopping** (patience 2) says when training could have stopped.
- An orange **✕ spike** on the loss curve marks a one-epoch spike: validation loss jumped by more than 10%
  and came back the next epoch (one bad epoch, not overfitting); hover it to see which class dropped most.
- **Generalization gap**: validation loss minus training loss, per epoch. A gap that grows is the first sign.
- **Class × epoch**: validation accuracy of each digit after each epoch. A ▼ marks a class that got
  *worse* while the overall accuracy rose.
- **Confidence on mistakes**: when the model is wrong, how sure is it? Growing confidence in wrong
  answers is a warning sign of overfitting.
- **Reliability diagram**: predictions grouped by confidence; a perfectly calibrated model sits on the
  diagonal (90% confident = right 90% of the time). Bars below the diagonal are overconfident.
  **ECE** is the average distance from the diagonal (0 is perfect).
- **Forgetting** (Toneva et al. 2019): a training example is *forgotten* when it was right at one epoch
  and wrong at the next. **Dataset cartography** (Swayamdipta et al. 2020): each training example placed
  by its mean true-class probability over epochs (confidence) and how much it moved (variability).
  *Easy* examples sit top-left, *ambiguous* ones to the right, *hard-to-learn* ones bottom-left.
  Both use the probabilities seen during training, in each example's own batch.
""")

ui.require_run(sel)
if st.session_state.pop("_over_go_diff", False):     # a spike's "What changed" button was pressed
    st.switch_page("app_pages/confusion.py")
if sel.problem:
    st.error(f"**The metrics of this run cannot be read:** {sel.problem}")
    st.stop()
if not sel.epochs:
    st.info("No finished epoch yet: the diagnosis appears after the first epoch.")
    st.stop()

run_dir = sel.run_dir
metrics = cache.load_metrics(run_dir)

VIEWS = ["Loss and gap", "Classes", "Calibration", "Training examples"]

# ----------------------------------------------------------------------------- verdict and curves
try:
    diag = cache.diagnosis(run_dir)
except ValueError as e:
    diag = None
    st.warning(f"No diagnosis for this run: {e}")
if diag is not None:
    show = {"no-overfitting": st.success, "overfitting": st.warning, "unstable": st.warning,
            "too-early": st.warning}.get(diag.status, st.info)
    show(diag.verdict)
    stop = diag.recommended_stop
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Best epoch (lowest val loss)", diag.best_epoch, help=f"validation loss {diag.best_val_loss:.4f}")
    m2.metric("Overfitting started after", diag.overfitting_onset if diag.overfitting_onset else "—")
    m3.metric("Early stopping would stop at", stop.stop_epoch if stop.stop_epoch else "—",
              help=f"patience {stop.patience}: stop after {stop.patience} epochs without a new lowest validation "
                   f"loss, keep epoch {stop.keep_epoch}")
    m4.metric("Epochs early stopping saves", stop.epochs_saved)


def open_diff(preset: dict) -> None:
    """The spike's button: the Confusion page's "What changed" view from epoch e-1 to e (sidebar epoch e)."""
    st.session_state[why.DIFF_PRESET] = preset
    st.session_state["_wanted_epoch"] = preset["epoch_b"]
    st.session_state["_over_go_diff"] = True


if diag is not None and diag.spikes and cache.prediction_epochs(run_dir):
    with ui.section_guard("The images behind the spike"):
        why.render_spike_links(sel.run.run_id, run_dir, diag.spikes, "over_spike", open_diff)

# a segmented control, not st.tabs: tabs build (and the browser draws) every hidden view on every rerun
view = st.segmented_control("View", VIEWS, default=VIEWS[0], required=True, key="over_view",
                            label_visibility="collapsed")
if diag is not None and view == "Loss and gap":
    marks = {f"best {diag.best_epoch}": (diag.best_epoch, figures.MARK_COLORS["best"])}
    if diag.overfitting_onset:
        marks[f"onset {diag.overfitting_onset}"] = (diag.overfitting_onset, figures.MARK_COLORS["onset"])
    if stop.stop_epoch:
        marks[f"early stop {stop.stop_epoch}"] = (stop.stop_epoch, figures.MARK_COLORS["stop"])
    left, right = st.columns(2)
    loss_fig = figures.curves_figure({sel.run.name: metrics}, "loss", ("train", "val"), marks)
    figures.add_spike_marks(loss_fig, diag.spikes)   # one-epoch spikes, with the class that dropped most
    left.plotly_chart(loss_fig, key="over_curves")
    fig = figures.gap_figure(diag.gap, marks)
    right.plotly_chart(fig, key="over_gap")

# ----------------------------------------------------------------------------- needs predictions
if view == "Loss and gap":
    if diag is None:
        st.info("The loss curves and the gap appear once the run can be diagnosed.")
    st.stop()
pred_epochs = cache.prediction_epochs(run_dir)
if not pred_epochs:
    st.info("**This run has metrics only**: no `predictions/epoch_NNN.npz` files, so the class × epoch "
            "accuracy, the confidence on mistakes, the reliability diagram, forgetting and dataset cartography "
            "cannot be shown. Runs trained with `python -m model.train` save predictions after every epoch.")
    st.stop()


def render_classes() -> None:
    """Which classes get worse: class × epoch accuracy and the drops."""
    st.subheader("Which classes get worse?")
    acc = cache.class_accuracy_by_epoch(run_dir, "val")
    worse = cache.classes_getting_worse(run_dir, "val", MIN_DROP)
    st.plotly_chart(figures.class_accuracy_figure(acc, worse), key="over_class_heatmap")
    if len(worse):
        st.caption(f"Classes whose validation accuracy fell by more than {MIN_DROP * 100:.0f} points from one "
                   "epoch to the next while the overall accuracy rose (smaller dips are noise):")
        st.dataframe(worse, hide_index=True, width="stretch", column_config=WORSE_COLUMNS)
    else:
        st.caption(f"No class lost more than {MIN_DROP * 100:.0f} points of validation accuracy from one epoch to "
                   "the next while the overall accuracy rose (smaller dips are noise).")


def render_calibration() -> None:
    """How sure the model is when it is wrong, and the reliability diagram of one epoch."""
    left, right = st.columns(2)
    with left, ui.section_guard("The confidence on mistakes"):
        mc = cache.mistake_confidence_by_epoch(run_dir, "val")
        st.plotly_chart(figures.mistake_confidence_figure(mc), key="over_mistake_conf")
    with right, ui.section_guard("The reliability diagram"):
        if st.session_state.get("over_rel_follow") != sel.epoch:     # the sidebar epoch changed: follow it
            st.session_state["over_rel_follow"] = sel.epoch
            st.session_state["over_rel_epoch"] = sel.epoch if sel.epoch in pred_epochs else pred_epochs[-1]
        if st.session_state.get("over_rel_epoch") not in pred_epochs:
            st.session_state["over_rel_epoch"] = pred_epochs[-1]
        if len(pred_epochs) > 1:
            st.select_slider("Epoch of the reliability diagram", pred_epochs, key="over_rel_epoch")
        rel_epoch = int(st.session_state["over_rel_epoch"])
        table, ece = cache.reliability(run_dir, rel_epoch, "val")
        st.plotly_chart(figures.reliability_figure(table, ece, f"Reliability, validation set, epoch {rel_epoch}"),
                        key="over_reliability")
        st.metric("Expected calibration error (ECE)", f"{ece:.2%}", help="0% = perfectly calibrated")


def render_training_examples() -> None:
    """Forgetting and dataset cartography of the training examples."""
    st.subheader("Forgetting and dataset cartography (training examples)")
    try:
        forgetting = cache.forgetting_by_class(run_dir)
    except RunError as e:
        if "no training records" not in str(e):
            raise
        st.info("This run's predictions have no training records (`train_true_prob`, `train_correct`): "
                "runs imported from a checkpoint have none, so forgetting and cartography cannot be shown.")
        return
    if len(pred_epochs) < 2:
        st.info("Forgetting needs at least two epochs; cartography shows more with more epochs.")
    left, right = st.columns([2, 3])
    left.plotly_chart(figures.forgetting_figure(forgetting), key="over_forgetting")
    with right:
        st.markdown("**Most forgotten training examples**")
        forgotten = cache.most_forgotten(run_dir)
        if len(forgotten):
            imgs = cache.official_images("train", forgotten["index"].to_numpy())
            ui.digit_grid(imgs, [f"#{i} · {y} · {n}×{'✓' if ok else '✗'}" for i, y, n, ok in
                                 forgotten[["index", "label", "events", "last_correct"]].itertuples(index=False)],
                          columns=6, size=96)   # at least the column width: every image fills its column
            st.caption("#index in the official training file · label · forgetting events (n×) · ✓/✗ right at the "
                       "last epoch")
        else:
            st.caption("No training example was forgotten (right, then wrong) between two epochs.")

    carto = cache.cartography(run_dir)
    sizes = [n for n in CARTO_SIZES if n < len(carto)] + [len(carto)]
    if len(sizes) > 1:      # fewer points draw faster; the region list below always covers every example
        if st.session_state.get("over_carto_n") not in sizes:
            st.session_state["over_carto_n"] = sizes[0]
        n_points = st.segmented_control("Points on the map", sizes, key="over_carto_n",
                                        format_func=lambda n: f"all {n:,}" if n == len(carto) else f"{n:,}",
                                        help="A random sample (the same every time) of the training examples. "
                                             "More points take longer to draw.") or sizes[0]
    else:
        n_points = len(carto)
    fig, sample = cache.cartography_figure(run_dir, n_points)
    if len(sample) < len(carto):
        st.caption(f"Showing a random sample of {len(sample):,} of {len(carto):,} training examples.")
    event = st.plotly_chart(fig, key="over_carto", on_select="rerun", selection_mode=("box", "lasso"))
    points = event.selection.points if event and event.selection else []
    rows_picked = [p.get("point_index", p.get("point_number")) for p in points if p.get("curve_number", 0) == 0]
    picked = [int(sample["index"].iloc[i]) for i in rows_picked if i is not None]
    counts = carto["region"].value_counts()
    # option labels never depend on the run (a label that changes loses the choice): the counts go in a caption
    region = st.selectbox("…or show the examples of a region", ["—", *REGIONS], key="over_carto_region",
                          help="Keyboard-friendly alternative to selecting points on the map.")
    st.caption(" · ".join(f"{r}: {counts.get(r, 0):,} examples" for r in REGIONS))
    if picked:
        rows = carto.set_index("index").loc[picked[:48]].reset_index()
        st.markdown(f"**{len(picked)} selected training examples**" + (" (first 48)" if len(picked) > 48 else ""))
    elif region != "—":
        rows = carto[carto["region"] == region]
        order = {"ambiguous": ("variability", False), "hard-to-learn": ("confidence", True),
                 "easy": ("confidence", False)}
        column, ascending = order[region]
        rows = rows.sort_values(column, ascending=ascending).head(48)
        st.markdown(f"**{region}** examples (first {len(rows)}, the most typical first)")
    else:
        rows = None
    if rows is not None:
        ui.digit_grid(cache.official_images("train", rows["index"].to_numpy()),
                      [f"#{i} · {y} · conf\u00a0{c:.2f}"
                       for i, y, c in rows[["index", "label", "confidence"]].itertuples(index=False)],
                      columns=8, size=112)


if view == "Classes":
    with ui.section_guard("The class × epoch accuracy"):
        render_classes()
elif view == "Calibration":
    render_calibration()
else:
    with ui.section_guard("Forgetting and cartography"):
        render_training_examples()
