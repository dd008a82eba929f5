"""Overfitting: the verdict, the generalization gap, which classes get worse, calibration and training dynamics."""
import numpy as np
import plotly.graph_objects as go
import streamlit as st

from analysis.calibration import reliability
from analysis.dynamics import REGIONS
from analysis.overfitting import spikes
from analysis.errors import classes_getting_worse
from dashboard import cache, report, state, ui
from model.runs import RunError

CARTO_SIZES = (5000, 20000)   # sample sizes offered for the cartography map (plus "all")
MIN_DROP = 0.02          # "got worse" = validation accuracy fell by more than 2 points

sel = state.current()
st.title("🩺 Overfitting")
ui.intro(
    "Is the model learning the training set by heart instead of learning digits? The verdict comes "
    "from the loss curves; the sections below show *where* it happens: which classes, how confident "
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
if sel.problem:
    st.error(f"**The metrics of this run cannot be read:** {sel.problem}")
    st.stop()
if not sel.epochs:
    st.info("No finished epoch yet: the diagnosis appears after the first epoch.")
    st.stop()

run_dir = sel.run_dir
metrics = cache.load_metrics(run_dir)

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

    marks = {f"best {diag.best_epoch}": (diag.best_epoch, report.MARK_COLORS["best"])}
    if diag.overfitting_onset:
        marks[f"onset {diag.overfitting_onset}"] = (diag.overfitting_onset, report.MARK_COLORS["onset"])
    if stop.stop_epoch:
        marks[f"early stop {stop.stop_epoch}"] = (stop.stop_epoch, report.MARK_COLORS["stop"])
    left, right = st.columns(2)
    loss_fig = report.curves_figure({sel.run.name: metrics}, "loss", ("train", "val"), marks)
    found = diag.spikes                        # one-epoch spikes of validation loss (analysis.overfitting)
    if found and cache.prediction_epochs(run_dir):
        try:                                   # name the class whose accuracy dropped most at each spike
            found = spikes(metrics, cache.class_accuracy_by_epoch(run_dir, "val"))
        except (RunError, ValueError):
            pass
    if found:
        loss_fig.add_scatter(
            x=[s.epoch for s in found], y=[s.at for s in found], mode="markers+text", text=["spike"] * len(found),
            textposition="top center", textfont=dict(color="#E8590C", size=11), name="one-epoch spike",
            marker=dict(symbol="x", size=12, color="#E8590C"),
            hovertext=[f"one-epoch spike of validation loss at epoch {s.epoch}<br>{s.before:.3g} → {s.at:.3g} → "
                       f"{s.after:.3g}: it came back the next epoch, not overfitting"
                       + (f"<br>class {s.worst_class} dropped most: {s.class_before:.1%} → {s.class_at:.1%}"
                          if s.worst_class is not None else "") for s in found],
            hovertemplate="%{hovertext}<extra></extra>")
    left.plotly_chart(loss_fig, key="over_curves")
    gap = diag.gap
    fig = go.Figure(go.Bar(x=gap["epoch"], y=gap["loss_gap"], name="val loss − train loss",
                           marker_color=np.where(gap["loss_gap"] > 0, "#fa5252", "#51cf66"),
                           hovertemplate="epoch %{x}<br>loss gap %{y:.4f}<extra></extra>"))
    if "acc_gap" in gap:
        fig.add_trace(go.Scatter(x=gap["epoch"], y=gap["acc_gap"], name="train acc − val acc", yaxis="y2",
                                 mode="lines+markers", line=dict(color="#495057"),
                                 hovertemplate="epoch %{x}<br>accuracy gap %{y:.2%}<extra></extra>"))
    fig.update_layout(title="Generalization gap", height=380, margin=dict(l=10, r=10, t=40, b=10),
                      legend=dict(orientation="h", y=-0.2), yaxis=dict(title="loss gap"))
    if "acc_gap" in gap:
        fig.update_layout(yaxis2=dict(title="accuracy gap", overlaying="y", side="right", showgrid=False,
                                      zeroline=False, **report.percent_axis(gap["acc_gap"])))
    last_epoch = int(metrics["epoch"].max())
    report.epoch_axis(fig, last_epoch, int(metrics["epoch"].min()))
    report.add_epoch_marks(fig, marks, last_epoch)
    right.plotly_chart(fig, key="over_gap")

# ----------------------------------------------------------------------------- needs predictions
pred_epochs = cache.prediction_epochs(run_dir)
if not pred_epochs:
    st.info("**This run has metrics only**: no `predictions/epoch_NNN.npz` files, so the class × epoch "
            "accuracy, the confidence on mistakes, the reliability diagram, forgetting and dataset cartography "
            "cannot be shown. Runs trained with `python -m model.train` save predictions after every epoch.")
    st.stop()

st.subheader("Which classes get worse?")
with ui.section_guard("The class × epoch accuracy"):
    acc = cache.class_accuracy_by_epoch(run_dir, "val")
    worse = classes_getting_worse(acc, min_drop=MIN_DROP)
    classes = [c for c in acc.columns if c != "all"]
    z = acc[classes].T.to_numpy(dtype=float)                      # (10 classes, E epochs)
    fig = go.Figure(go.Heatmap(z=z, x=acc.index.tolist(), y=classes, colorscale="Blues", zmin=max(0.0, np.nanmin(z)),
                               zmax=1, text=[[f"{v:.0%}" for v in row] for row in z], texttemplate="%{text}",
                               colorbar=dict(title="val acc", tickformat=".0%"),
                               hovertemplate="class %{y}, epoch %{x}<br>accuracy %{z:.1%}<extra></extra>"))
    if len(worse):
        fig.add_trace(go.Scatter(x=worse["epoch"] + 0.38, y=worse["class"], mode="markers", name="got worse",
                                 marker=dict(symbol="triangle-down", size=11, color="#e03131",
                                             line=dict(color="white", width=1)),
                                 customdata=np.stack([worse["before"], worse["after"]], axis=1),
                                 hovertemplate="class %{y} got worse at epoch %{x}: %{customdata[0]:.1%} → "
                                               "%{customdata[1]:.1%}<extra></extra>"))
    fig.update_layout(height=420, margin=dict(l=10, r=10, t=10, b=10), legend=dict(orientation="h", y=-0.15))
    fig.update_xaxes(title="epoch", tickmode="linear", tick0=int(acc.index.min()), dtick=1,
                     range=[acc.index.min() - 0.5, acc.index.max() + 0.5])
    fig.update_yaxes(title="class", dtick=1, autorange="reversed")
    st.plotly_chart(fig, key="over_class_heatmap")
    if len(worse):
        st.caption(f"Classes whose validation accuracy fell by more than {MIN_DROP * 100:.0f} points from one "
                   "epoch to the next while the overall accuracy rose (smaller dips are noise):")
        st.dataframe(worse.style.format({"before": "{:.1%}", "after": "{:.1%}", "change": "{:+.1%}",
                                         "overall_change": "{:+.1%}"}), hide_index=True, width="stretch")
    else:
        st.caption(f"No class lost more than {MIN_DROP * 100:.0f} points of validation accuracy from one epoch to "
                   "the next while the overall accuracy rose (smaller dips are noise).")

left, right = st.columns(2)
with left, ui.section_guard("The confidence on mistakes"):
    mc = cache.mistake_confidence_by_epoch(run_dir, "val")
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=mc["epoch"], y=mc["wrong_confidence"], name="on mistakes", mode="lines+markers",
                             line=dict(color="#e03131"), customdata=mc["n_wrong"],
                             hovertemplate="epoch %{x}<br>mean confidence %{y:.1%} "
                                           "on %{customdata} mistakes<extra></extra>"))
    fig.add_trace(go.Scatter(x=mc["epoch"], y=mc["right_confidence"], name="on right answers", mode="lines+markers",
                             line=dict(color="#2b8a3e"), customdata=mc["n_right"],
                             hovertemplate="epoch %{x}<br>mean confidence %{y:.1%} "
                                           "on %{customdata} right<extra></extra>"))
    fig.update_layout(title="Mean confidence (top probability), validation set", height=380,
                      margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.2))
    report.epoch_axis(fig, int(mc["epoch"].max()), int(mc["epoch"].min()))
    fig.update_yaxes(tickformat=".0%", range=[0, 1.02])
    st.plotly_chart(fig, key="over_mistake_conf")

with right, ui.section_guard("The reliability diagram"):
    if st.session_state.get("over_rel_follow") != sel.epoch:     # the sidebar epoch changed: follow it
        st.session_state["over_rel_follow"] = sel.epoch
        st.session_state["over_rel_epoch"] = sel.epoch if sel.epoch in pred_epochs else pred_epochs[-1]
    if st.session_state.get("over_rel_epoch") not in pred_epochs:
        st.session_state["over_rel_epoch"] = pred_epochs[-1]
    if len(pred_epochs) > 1:
        st.select_slider("Epoch of the reliability diagram", pred_epochs, key="over_rel_epoch")
    rel_epoch = int(st.session_state["over_rel_epoch"])
    probs, labels, _ = cache.split_predictions(run_dir, rel_epoch, "val")
    table, ece = reliability(probs, labels)
    filled = table[table["count"] > 0]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration",
                             line=dict(color="#adb5bd", dash="dash"), hoverinfo="skip"))
    fig.add_trace(go.Bar(x=(filled["bin_lower"] + filled["bin_upper"]) / 2, y=filled["accuracy"],
                         width=filled["bin_upper"] - filled["bin_lower"], name="accuracy in bin",
                         marker=dict(color="#4C6EF5", line=dict(color="white", width=1)), opacity=0.8,
                         customdata=np.stack([filled["confidence"], filled["count"]], axis=1),
                         hovertemplate="confidence %{customdata[0]:.1%} (%{customdata[1]} predictions)<br>"
                                       "accuracy %{y:.1%}<extra></extra>"))
    fig.update_layout(title=f"Reliability, validation set, epoch {rel_epoch}: ECE {ece:.2%}", height=380,
                      margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.2), bargap=0)
    fig.update_xaxes(title="confidence (top probability)", range=[0, 1], tickformat=".0%")
    fig.update_yaxes(title="accuracy", range=[0, 1.02], tickformat=".0%")
    st.plotly_chart(fig, key="over_reliability")
    st.metric("Expected calibration error (ECE)", f"{ece:.2%}", help="0% = perfectly calibrated")

# ----------------------------------------------------------------------------- training dynamics
st.subheader("Forgetting and dataset cartography (training examples)")
try:
    forgetting = cache.forgetting_by_class(run_dir)
except RunError as e:
    if "no training records" in str(e):
        st.info("This run's predictions have no training records (`train_true_prob`, `train_correct`): "
                "runs imported from a checkpoint have none, so forgetting and cartography cannot be shown.")
    else:
        st.error(f"**Forgetting and cartography cannot be shown:** `{e.path}` could not be read.\n\n{e}")
    st.stop()

if len(pred_epochs) < 2:
    st.info("Forgetting needs at least two epochs; cartography shows more with more epochs.")
left, right = st.columns([2, 3])
fig = go.Figure(go.Bar(x=forgetting.index, y=forgetting["events"], marker_color="#f08c00",
                       customdata=np.stack([forgetting["forgotten_share"], forgetting["never_learned"]], axis=1),
                       hovertemplate="class %{x}: %{y} forgetting events<br>%{customdata[0]:.1%} of its examples "
                                     "forgotten at least once<br>%{customdata[1]} never learned<extra></extra>"))
fig.update_layout(title="Forgetting events per class", height=360, margin=dict(l=10, r=10, t=40, b=10))
fig.update_xaxes(title="class", dtick=1)
fig.update_yaxes(title="events")
left.plotly_chart(fig, key="over_forgetting")
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
region = st.selectbox("…or show the examples of a region", ["—", *REGIONS], key="over_carto_region",
                      format_func=lambda r: r if r == "—" else f"{r} ({counts.get(r, 0):,} examples)",
                      help="Keyboard-friendly alternative to selecting points on the map.")
if picked:
    rows = carto.set_index("index").loc[picked[:48]].reset_index()
    st.markdown(f"**{len(picked)} selected training examples**" + (" (first 48)" if len(picked) > 48 else ""))
elif region != "—":
    rows = carto[carto["region"] == region]
    order = {"ambiguous": ("variability", False), "hard-to-learn": ("confidence", True), "easy": ("confidence", False)}
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
