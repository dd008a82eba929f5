"""Training curves: loss and accuracy per epoch for train / val / test, and the training loss per step."""
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from analysis.curves import ema
from dashboard import cache, figures, state, ui
from model.runs import RunError

sel = state.current()
st.title("📈 Training curves")
ui.intro(
    "How loss and accuracy moved, epoch by epoch, on the training, validation and test sets, "
    "and how the training loss moved step by step inside each epoch.",
    """
- **Loss** (left) is the cross-entropy: lower is better. **Accuracy** (right) is the share of right answers.
- **train** is averaged over the epoch while the weights were still changing; **val** and **test** are
  measured after the epoch. Choose the epoch with the validation set; the test set is for the final
  report only (choosing by test accuracy makes it optimistic).
- The green dashed line is the **best epoch** (lowest validation loss); the grey one is the epoch picked
  in the sidebar. Runs picked under *Compare with* in the sidebar are overlaid: colour = run, dash = split.
- An orange **✕ spike** marks a one-epoch spike: validation loss jumped by more than 10% and came back the
  next epoch (one bad epoch, not overfitting).
- **Per step**: the training loss every few steps is noisy; the faint line is the raw series and the strong
  one an exponential moving average. *Smoothing* 0 shows the raw series, 0.9 averages over roughly the last
  ten points (like TensorBoard's slider).
- **Log scale** helps when the loss falls by orders of magnitude and the late epochs look flat.
""")

ui.require_run(sel)


def label_of(run, shown) -> str:
    """The run's name, or its id when two shown runs share a name."""
    names = [r.name for r in shown]
    return run.name if names.count(run.name) == 1 else run.run_id


shown = [sel.run, *sel.compare]
metrics: dict[str, pd.DataFrame] = {}
steps: dict[str, pd.DataFrame] = {}
val_is_test: list[str] = []                   # runs validated on the test set (seed protocol): val and test coincide
for run in shown:
    try:
        metrics[label_of(run, shown)] = cache.load_metrics(run.path)
        steps[label_of(run, shown)] = cache.load_steps(run.path)
        if run.config.data.val_is_test:
            val_is_test.append(label_of(run, shown))
    except RunError as e:
        st.error(f"Cannot read `{e.path}` of run `{run.run_id}`: {e}")

if not any(len(m) for m in metrics.values()):
    st.info("No finished epoch yet: the curves appear after the first epoch.")
    st.stop()

c1, c2, c3 = st.columns([2, 2, 1])
splits = c1.multiselect("Splits", ["train", "val", "test"], default=["train", "val", "test"], key="curves_splits")
smoothing = c2.slider("Smoothing (per-step loss)", 0.0, 0.99, 0.6, 0.01, key="curves_smooth",
                      help="Exponential moving average weight: 0 = raw, 0.99 = very smooth.")
log_y = c3.toggle("Log scale", key="curves_log", help="Logarithmic loss axis.")

marks = {}
if sel.best_epoch is not None:
    marks[f"best epoch {sel.best_epoch}"] = (sel.best_epoch, figures.MARK_COLORS["best"])
if sel.epoch is not None and sel.epoch != sel.best_epoch:
    marks[f"selected {sel.epoch}"] = (sel.epoch, figures.MARK_COLORS["selected"])

left, right = st.columns(2)
loss_fig = figures.curves_figure(metrics, "loss", tuple(splits), marks, log_y, val_is_test=tuple(val_is_test))
if "val" in splits:
    for run in shown:
        name = label_of(run, shown)
        if name in metrics and len(metrics[name]):
            try:
                found = cache.diagnosis(run.path).spikes       # the cached, spike-aware diagnosis of that run
            except (ValueError, RunError):                     # too little to diagnose, or unreadable: no marks
                found = []
            figures.add_spike_marks(loss_fig, found, name if len(metrics) > 1 else None)
left.plotly_chart(loss_fig, key="curves_loss")
right.plotly_chart(figures.curves_figure(metrics, "acc", tuple(splits), marks, val_is_test=tuple(val_is_test)),
                   key="curves_acc")
if val_is_test and "val" in splits and "test" in splits:
    who = "This run" if len(metrics) == 1 else "Run" + ("s " if len(val_is_test) > 1 else " ") + ", ".join(
        f"*{n}*" for n in val_is_test)
    st.caption(f"{who} validated on the **test set** (the seed notebook's protocol): the val and test curves are "
               "the same numbers, so *test (= val)* is drawn dashed on top of val. Choosing the epoch by these "
               "curves makes the test accuracy optimistic; the *classic* protocol keeps a separate validation set.")

st.subheader("Training loss per step")
fig = go.Figure()
for i, (name, df) in enumerate(steps.items()):
    if df.empty:
        continue
    color = figures.RUN_COLORS[i % len(figures.RUN_COLORS)]
    fig.add_trace(go.Scatter(x=df["step"], y=df["loss"], mode="lines", name=f"{name} · raw", opacity=0.25,
                             line=dict(color=color, width=1), legendgroup=name, customdata=df["epoch"],
                             hovertemplate="step %{x} (epoch %{customdata})<br>loss %{y:.4f}<extra>raw</extra>"))
    smooth = ema(df["loss"], smoothing)
    fig.add_trace(go.Scatter(x=df["step"], y=smooth, mode="lines", name=f"{name} · smoothed",
                             line=dict(color=color, width=2.5), legendgroup=name,
                             hovertemplate="step %{x}<br>smoothed loss %{y:.4f}<extra></extra>"))
if fig.data:
    fig.update_layout(height=360, margin=dict(l=10, r=10, t=10, b=10), hovermode="x unified",
                      legend=dict(orientation="h", y=-0.25))
    fig.update_xaxes(title="training step")
    fig.update_yaxes(title="loss", type="log" if log_y else "linear")
    st.plotly_chart(fig, key="curves_steps")
else:
    st.info("These runs have no per-step losses (`steps.csv`); imported runs have none.")

all_metrics = pd.concat([df.assign(run=name) for name, df in metrics.items()], ignore_index=True)
all_steps = pd.concat([df.assign(run=name) for name, df in steps.items() if not df.empty] or [pd.DataFrame()],
                      ignore_index=True)
with st.expander("The numbers"):
    st.dataframe(all_metrics, hide_index=True, width="stretch")
d1, d2 = st.columns(2)
d1.download_button("Download metrics per epoch (CSV)", all_metrics.to_csv(index=False), "metrics.csv", "text/csv",
                   key="curves_dl_metrics", on_click="ignore")
d2.download_button("Download loss per step (CSV)", all_steps.to_csv(index=False), "steps.csv", "text/csv",
                   key="curves_dl_steps", on_click="ignore", disabled=all_steps.empty)
