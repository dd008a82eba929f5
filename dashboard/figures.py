"""Figures and tables shared by the pages and the HTML report (plain Plotly and pandas Styler, no Streamlit).

Every number drawn here was computed in `analysis/` and handed over by `dashboard/cache.py`; these
functions only pick colours, axes and labels. A page passes the result to st.plotly_chart /
st.dataframe, the report (dashboard/report.py) to its HTML.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from analysis.errors import row_normalize

SPLIT_COLORS = {"train": "#868e96", "val": "#4C6EF5", "test": "#F08C00"}
SPLIT_DASH = {"train": "dot", "val": "solid", "test": "dash"}
RUN_COLORS = ("#4C6EF5", "#E8590C", "#2B8A3E", "#AE3EC9", "#C92A2A", "#1098AD", "#5C940D", "#862E9C")
METRIC_TITLES = {"loss": "Loss (cross-entropy)", "acc": "Accuracy"}
MARK_COLORS = {"best": "#2B8A3E", "selected": "#495057", "onset": "#C92A2A", "stop": "#E8590C"}



# ----------------------------------------------------------------------------- formatting and tables

def duration(seconds: float) -> str:
    """4123.0 -> '1h 08m', 95 -> '1m 35s'."""
    if not np.isfinite(seconds):
        return "—"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 60}m {s % 60:02d}s" if s >= 60 else f"{s}s"




def config_diff(configs: dict[str, "RunConfig"]) -> pd.DataFrame:
    """Only the config fields that differ between runs: one row per field ("train.lr"), one column per run.

    Fields come from `RunConfig.summary()` (variant, preset and the model / train / data sections), so
    where and when a run happened (run id, start time, command, versions) never shows as a difference.
    """
    flat = {name: cfg.summary() for name, cfg in configs.items()}
    keys = sorted({k for f in flat.values() for k in f})
    rows = {}
    for k in keys:
        values = [flat[name].get(k, "—") for name in flat]
        if len({repr(v) for v in values}) > 1:
            rows[k] = [str(v) for v in values]
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(flat)).rename_axis("field")


# ----------------------------------------------------------------------------- figures

def add_epoch_marks(fig: go.Figure, marks: dict[str, tuple[int, str]], last: int | None = None) -> None:
    """Vertical dashed lines, each labelled just above the plot area: {"best epoch": (3, colour), ...}.

    The labels sit in the top margin (stacked when there are several), so they never cover bars or
    points; a label at the `last` epoch is anchored to the left of its line so it stays inside the figure.
    """
    for i, (label, (x, color)) in enumerate(marks.items()):
        right_edge = last is not None and x >= last - 0.5
        fig.add_vline(x=x, line_dash="dash", line_color=color, line_width=1.5, opacity=0.8)
        fig.add_annotation(x=x, y=1.0, yref="paper", yanchor="bottom", yshift=2 + 15 * i, text=label,
                           showarrow=False, xanchor="right" if right_edge else "left", xshift=-4 if right_edge else 4,
                           font=dict(color=color, size=11), bgcolor="rgba(255,255,255,0.8)")
    if marks:
        top = fig.layout.margin.t if fig.layout.margin.t is not None else 40
        fig.update_layout(margin=dict(t=top + 15 * len(marks)))


SPIKE_COLOR = "#E8590C"


def add_spike_marks(fig: go.Figure, spikes: list, run_name: str | None = None) -> None:
    """Mark one-epoch spikes of validation loss (analysis.overfitting.Spike) with an orange ✕ and "spike"."""
    if not spikes:
        return
    fig.add_scatter(
        x=[s.epoch for s in spikes], y=[s.at for s in spikes], mode="markers+text", text=["spike"] * len(spikes),
        textposition="top center", textfont=dict(color=SPIKE_COLOR, size=11),
        name=f"{run_name} · spike" if run_name else "one-epoch spike",
        marker=dict(symbol="x", size=12, color=SPIKE_COLOR),
        hovertext=[(f"{run_name}: " if run_name else "") + f"one-epoch spike of validation loss at epoch {s.epoch}"
                   f"<br>{s.before:.3g} → {s.at:.3g} → {s.after:.3g}: it came back the next epoch, not overfitting"
                   + (f"<br>class {s.worst_class} dropped most: {s.class_before:.1%} → {s.class_at:.1%}"
                      if s.worst_class is not None else "") for s in spikes],
        hovertemplate="%{hovertext}<extra></extra>")


def epoch_axis(fig: go.Figure, last: int, first: int = 1) -> None:
    """An epoch x-axis from `first` to `last` with integer ticks (one per epoch up to 20 epochs).

    The range has a small pad (a third of an epoch) on both sides so end markers and bars are not cut;
    no tick outside [first, last] is shown.
    """
    ticks = dict(tickmode="linear", tick0=first, dtick=1) if last - first < 20 else dict(tickformat="d")
    fig.update_xaxes(title="epoch", range=[first - 0.35, last + 0.35], **ticks)


def percent_axis(values: np.ndarray | pd.Series, max_ticks: int = 6) -> dict:
    """Axis settings with round percent ticks (0.5%, 1%, 2%, 5% … apart) covering `values` (fractions)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    lo, hi = (min(0.0, v.min()), max(0.0, v.max())) if len(v) else (0.0, 0.01)
    span = max(hi - lo, 1e-3)
    step = next((s for s in (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5) if span / s <= max_ticks), 1.0)
    pad = step * 0.3
    return dict(tickmode="linear", tick0=0, dtick=step, tickformat=".1%" if step < 0.01 else ".0%",
                range=[np.floor(lo / step) * step - pad, np.ceil(hi / step) * step + pad])


def curves_figure(metrics: dict[str, pd.DataFrame], kind: str = "loss",
                  splits: tuple[str, ...] = ("train", "val", "test"), marks: dict[str, tuple[int, str]] | None = None, log_y: bool = False, height: int = 380,
                  val_is_test: tuple[str, ...] = ()) -> go.Figure:
    """Per-epoch loss or accuracy of one or more runs.

    Args:
        metrics: {run name: metrics.csv table}; with one run, colour tells the split apart; with
            several, colour tells the run and the dash the split.
        kind: "loss" or "acc".
        marks: vertical epoch markers, {label: (epoch, colour)}.
        val_is_test: names of runs whose validation set IS the test set (seed protocol): their test
            line is drawn dashed on top of the identical val line and named "test (= val)".
    """
    fig = go.Figure()
    several = len(metrics) > 1
    for i, (name, df) in enumerate(metrics.items()):
        for split in splits:
            col = f"{split}_{kind}"
            if col not in df or df[col].isna().all():
                continue
            color = RUN_COLORS[i % len(RUN_COLORS)] if several else SPLIT_COLORS[split]
            same = split == "test" and name in val_is_test and "val" in splits
            label = "test (= val)" if same else split
            fig.add_trace(go.Scatter(
                x=df["epoch"], y=df[col], mode="lines+markers", name=f"{name} · {label}" if several else label,
                line=dict(color=color, dash="dash" if same else SPLIT_DASH[split] if several else "solid", width=2),
                marker=dict(size=9 if same else 6, symbol="diamond-open" if same else "circle"), legendgroup=name,
                hovertemplate=f"{name} {split}<br>epoch %{{x}}<br>{kind} %{{y:.4f}}<extra></extra>"))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=40, b=10), title=METRIC_TITLES.get(kind, kind),
                      hovermode="x unified", legend=dict(orientation="h", y=-0.2))
    epochs = [int(e) for d in metrics.values() if len(d) for e in (d["epoch"].min(), d["epoch"].max())]
    last = max(epochs, default=1)
    add_epoch_marks(fig, marks or {}, last)
    epoch_axis(fig, last, min(epochs, default=1))
    fig.update_yaxes(title=kind, type="log" if log_y else "linear",
                     tickformat=".0%" if kind == "acc" and not log_y else None)
    return fig


def cartography_figure(sample: pd.DataFrame, x_max: float, easy_confidence: float, ambiguous_variability: float,
                       height: int = 520) -> go.Figure:
    """Dataset cartography (Swayamdipta et al. 2020): one WebGL point per training example, regions shaded.

    Args:
        sample: rows of analysis.dynamics.cartography (index, label, confidence, variability, correctness).
        x_max: right end of the variability axis.
        easy_confidence, ambiguous_variability: the region thresholds of analysis.dynamics.
    Returns:
        The figure; its only trace (curve 0) is the points, in the row order of `sample`.
    """
    fig = go.Figure()
    shade = {"easy": "rgba(64,192,87,0.08)", "hard-to-learn": "rgba(250,82,82,0.08)",
             "ambiguous": "rgba(76,110,245,0.08)"}
    a, e = ambiguous_variability, easy_confidence
    for name, (x0, x1, y0, y1) in {"easy": (0, a, e, 1.02), "hard-to-learn": (0, a, -0.02, e),
                                   "ambiguous": (a, x_max, -0.02, 1.02)}.items():
        fig.add_shape(type="rect", x0=x0, x1=x1, y0=y0, y1=y1, fillcolor=shade[name], line_width=0, layer="below")
    # region names outside the cloud of points: easy and ambiguous above the plot, hard-to-learn in the
    # lower right corner of its region (low confidence with high variability is nearly empty)
    label = dict(showarrow=False, font=dict(color="#495057", size=12), bgcolor="rgba(255,255,255,0.85)",
                 borderpad=2)
    fig.add_annotation(x=0, y=1.0, yref="paper", yanchor="bottom", xanchor="left", text="easy: high confidence ▼",
                       **label)
    fig.add_annotation(x=a, y=1.0, yref="paper", yanchor="bottom", xanchor="left", xshift=4,
                       text="ambiguous: high variability ▼", **label)
    fig.add_annotation(x=a, y=0.0, yanchor="bottom", xanchor="right", xshift=-4, text="hard-to-learn: low confidence", **label)
    fig.add_trace(go.Scattergl(
        x=sample["variability"], y=sample["confidence"], mode="markers",
        marker=dict(color=sample["correctness"], colorscale="RdYlGn", cmin=0, cmax=1, size=5, opacity=0.7,
                    colorbar=dict(title="correct<br>share", tickformat=".0%")),
        customdata=np.stack([sample["index"], sample["label"], sample["correctness"]], axis=1),
        hovertemplate="#%{customdata[0]} (label %{customdata[1]})<br>confidence %{y:.2f}, variability %{x:.2f}<br>"
                      "right in %{customdata[2]:.0%} of epochs<extra></extra>"))
    fig.update_layout(title=dict(text="Dataset cartography: drag a box or lasso to see those training images",
                                 y=0.99, yanchor="top"),
                      height=height, margin=dict(l=10, r=10, t=60, b=10), dragmode="lasso")
    fig.update_xaxes(title="variability (std of the true-class probability over epochs)", range=[0, x_max])
    fig.update_yaxes(title="confidence (mean true-class probability)", range=[-0.02, 1.02])
    return fig


def confusion_figure(cm: np.ndarray, normalize: bool = False, title: str = "", clickable: bool = True,
                     height: int = 520) -> go.Figure:
    """A confusion matrix with the diagonal taken out of the colour scale, so errors stand out.

    Rows are true classes, columns predicted classes. Off-diagonal cells are coloured by count (or
    by share of the true class when normalize); the diagonal (correct predictions) is written in
    grey on white. With clickable, an invisible marker sits on every cell, so clicking a cell
    selects it (customdata = [true, predicted]).
    """
    cm = np.asarray(cm, dtype=np.int64)
    n = len(cm)
    support = cm.sum(axis=1, keepdims=True)
    shown, off = _shown(cm, normalize)
    fmt = (lambda v: f"{v:.0%}" if v >= 0.005 else "") if normalize else (lambda v: f"{int(v)}" if v else "")
    text = [[fmt(off[t, p]) if t != p else "" for p in range(n)] for t in range(n)]
    zmax = np.nanmax(off) or 1                  # a perfect matrix still needs a colour scale
    fig = go.Figure(go.Heatmap(
        z=off, x=list(range(n)), y=list(range(n)), text=text, texttemplate="%{text}", colorscale="OrRd",
        zmin=0, zmax=zmax, hoverinfo="skip", xgap=1, ygap=1,
        colorbar=dict(title="share of row" if normalize else "errors", tickformat=".0%" if normalize else None)))
    diag = [fmt(shown[i, i]) or "0" for i in range(n)]
    fig.add_trace(go.Scatter(x=list(range(n)), y=list(range(n)), mode="text", text=diag, hoverinfo="skip",
                             textfont=dict(color="#868e96", size=11), showlegend=False,
                             unselected=dict(textfont=dict(color="#868e96"))))  # not faded by a click
    if clickable:
        t, p = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        t, p = t.ravel(), p.ravel()
        share = np.divide(cm[t, p], support[t, 0], out=np.zeros(len(t)), where=support[t, 0] > 0)
        fig.add_trace(go.Scatter(
            x=p, y=t, mode="markers", customdata=np.stack([t, p, cm[t, p], share], axis=1),
            marker=dict(symbol="square", size=34, color="rgba(0,0,0,0)"), showlegend=False,
            hovertemplate="true %{customdata[0]} → predicted %{customdata[1]}<br>%{customdata[2]} examples "
                          "(%{customdata[3]:.1%} of the true class)<br><i>click to see them</i><extra></extra>"))
    fig.update_layout(title=dict(text=title, y=0.99, yanchor="top"), height=height,
                      margin=dict(l=10, r=10, t=90 if title else 50, b=10),
                      plot_bgcolor="white", clickmode="event+select", dragmode=False)
    fig.update_xaxes(title="predicted class", dtick=1, side="top", showgrid=False, zeroline=False,
                     range=[-0.5, n - 0.5], constrain="domain")
    fig.update_yaxes(title="true class", dtick=1, range=[n - 0.5, -0.5], showgrid=False, zeroline=False,
                     scaleanchor="x", constrain="domain")
    return fig


def confusion_animation(cms: dict[int, np.ndarray], normalize: bool = False, height: int = 520) -> go.Figure:
    """The confusion matrix epoch by epoch, with play/pause and an epoch slider (Plotly frames)."""
    epochs = sorted(cms)

    def panel(e: int) -> list:
        return list(confusion_figure(cms[e], normalize, clickable=False).data)

    base = confusion_figure(cms[epochs[0]], normalize, clickable=False, height=height)
    peak = max(np.nanmax(_shown(cm, normalize)[1]) for cm in cms.values()) or 1   # one colour scale for all epochs
    frames = [go.Frame(data=panel(e), name=str(e)) for e in epochs]
    for trace in [base.data[0], *(fr.data[0] for fr in frames)]:
        trace.update(zmax=peak)
    base.frames = frames
    step = dict(mode="immediate", frame=dict(duration=500, redraw=True), transition=dict(duration=0))
    base.update_layout(
        updatemenus=[dict(type="buttons", direction="left", showactive=False, x=0, y=-0.05, xanchor="left",
                          yanchor="top",
                          buttons=[dict(label="▶ play", method="animate", args=[None, {**step, "fromcurrent": True}]),
                                   dict(label="⏸ pause", method="animate", args=[[None], step])])],
        sliders=[dict(active=0, x=0.15, len=0.85, y=-0.02, currentvalue=dict(prefix="epoch "),
                      steps=[dict(label=str(e), method="animate", args=[[str(e)], step]) for e in epochs])],
        margin=dict(l=10, r=10, t=10, b=80))
    return base


def _shown(cm: np.ndarray, normalize: bool) -> tuple[np.ndarray, np.ndarray]:
    """The cell values to show (counts, or shares of the row) and the same with the diagonal as NaN."""
    shown = row_normalize(cm) if normalize else np.asarray(cm, dtype=float)
    off = shown.copy()
    np.fill_diagonal(off, np.nan)
    return shown, off


def style_class_report(report: pd.DataFrame, worst: int = 3):
    """A per-class precision/recall/F1 table (pandas Styler, the class as its first column) with the `worst`
    classes by F1 in red."""
    worst_classes = set(report["f1"].nsmallest(worst).index)
    table = report.rename_axis("class").reset_index()

    def row_style(row: pd.Series) -> list[str]:
        bad = row["class"] in worst_classes
        return ["background-color: #ffe3e3; color: #c92a2a; font-weight: 600" if bad else "" for _ in row]

    return (table.style.apply(row_style, axis=1).hide(axis="index")
            .format({"precision": "{:.1%}", "recall": "{:.1%}", "f1": "{:.1%}", "support": "{:d}"}))




# ----------------------------------------------------------------------------- overfitting and data pages

def gap_figure(gap: pd.DataFrame, marks: dict[str, tuple[int, str]] | None = None, height: int = 380) -> go.Figure:
    """The generalization gap per epoch: bars of val loss − train loss, and train acc − val acc on a right axis.

    Args:
        gap: analysis.overfitting.loss_gap (columns epoch, loss_gap, and acc_gap when accuracies were recorded).
        marks: vertical epoch markers, {label: (epoch, colour)}.
    """
    fig = go.Figure(go.Bar(x=gap["epoch"], y=gap["loss_gap"], name="val loss − train loss",
                           marker_color=np.where(gap["loss_gap"] > 0, "#fa5252", "#51cf66"),
                           hovertemplate="epoch %{x}<br>loss gap %{y:.4f}<extra></extra>"))
    if "acc_gap" in gap:
        fig.add_trace(go.Scatter(x=gap["epoch"], y=gap["acc_gap"], name="train acc − val acc", yaxis="y2",
                                 mode="lines+markers", line=dict(color="#495057"),
                                 hovertemplate="epoch %{x}<br>accuracy gap %{y:.2%}<extra></extra>"))
    fig.update_layout(title="Generalization gap", height=height, margin=dict(l=10, r=10, t=40, b=10),
                      legend=dict(orientation="h", y=-0.2), yaxis=dict(title="loss gap"))
    if "acc_gap" in gap:
        fig.update_layout(yaxis2=dict(title="accuracy gap", overlaying="y", side="right", showgrid=False,
                                      zeroline=False, **percent_axis(gap["acc_gap"])))
    last = int(gap["epoch"].max())
    epoch_axis(fig, last, int(gap["epoch"].min()))
    add_epoch_marks(fig, marks or {}, last)
    return fig


def class_accuracy_figure(acc: pd.DataFrame, worse: pd.DataFrame, height: int = 420) -> go.Figure:
    """Class × epoch heatmap of accuracy, with ▼ where a class got worse while the overall accuracy rose.

    Args:
        acc: analysis.errors.per_class_accuracy_by_epoch (index epoch, columns 0..9 and "all").
        worse: analysis.errors.classes_getting_worse of that table.
    """
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
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=10, b=10), legend=dict(orientation="h", y=-0.15))
    fig.update_xaxes(title="epoch", tickmode="linear", tick0=int(acc.index.min()), dtick=1,
                     range=[acc.index.min() - 0.5, acc.index.max() + 0.5])
    fig.update_yaxes(title="class", dtick=1, autorange="reversed")
    return fig


def mistake_confidence_figure(mc: pd.DataFrame, set_name: str = "validation set", height: int = 380) -> go.Figure:
    """Mean confidence on mistakes and on right answers per epoch (analysis.errors.mistake_confidence_by_epoch)."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=mc["epoch"], y=mc["wrong_confidence"], name="on mistakes", mode="lines+markers",
                             line=dict(color="#e03131"), customdata=mc["n_wrong"],
                             hovertemplate="epoch %{x}<br>mean confidence %{y:.1%} "
                                           "on %{customdata} mistakes<extra></extra>"))
    fig.add_trace(go.Scatter(x=mc["epoch"], y=mc["right_confidence"], name="on right answers", mode="lines+markers",
                             line=dict(color="#2b8a3e"), customdata=mc["n_right"],
                             hovertemplate="epoch %{x}<br>mean confidence %{y:.1%} "
                                           "on %{customdata} right<extra></extra>"))
    fig.update_layout(title=f"Mean confidence (top probability), {set_name}", height=height,
                      margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.2))
    epoch_axis(fig, int(mc["epoch"].max()), int(mc["epoch"].min()))
    fig.update_yaxes(tickformat=".0%", range=[0, 1.02])
    return fig


def reliability_figure(table: pd.DataFrame, ece: float, title: str, height: int = 380) -> go.Figure:
    """A reliability diagram: accuracy per confidence bin against the diagonal (analysis.calibration.reliability)."""
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
    fig.update_layout(title=f"{title}: ECE {ece:.2%}", height=height, margin=dict(l=10, r=10, t=40, b=10),
                      legend=dict(orientation="h", y=-0.2), bargap=0)
    fig.update_xaxes(title="confidence (top probability)", range=[0, 1], tickformat=".0%")
    fig.update_yaxes(title="accuracy", range=[0, 1.02], tickformat=".0%")
    return fig


def forgetting_figure(forgetting: pd.DataFrame, height: int = 360) -> go.Figure:
    """Forgetting events per class (analysis.dynamics.forgetting_table)."""
    fig = go.Figure(go.Bar(x=forgetting.index, y=forgetting["events"], marker_color="#f08c00",
                           customdata=np.stack([forgetting["forgotten_share"], forgetting["never_learned"]], axis=1),
                           hovertemplate="class %{x}: %{y} forgetting events<br>%{customdata[0]:.1%} of its examples "
                                         "forgotten at least once<br>%{customdata[1]} never learned<extra></extra>"))
    fig.update_layout(title="Forgetting events per class", height=height, margin=dict(l=10, r=10, t=40, b=10))
    fig.update_xaxes(title="class", dtick=1)
    fig.update_yaxes(title="events")
    return fig


def class_balance_figure(counts: pd.DataFrame, height: int = 320) -> go.Figure:
    """Grouped bars of examples per class and split (analysis.dataset.class_counts), share of the split on hover."""
    fig = go.Figure()
    for s in counts.columns:
        share = counts[s] / max(int(counts[s].sum()), 1)
        fig.add_trace(go.Bar(x=counts.index, y=counts[s], name=s, marker_color=SPLIT_COLORS.get(s), customdata=share,
                             hovertemplate=f"{s}: class %{{x}}<br>%{{y}} examples (%{{customdata:.1%}})<extra></extra>"))
    fig.update_layout(barmode="group", height=height, margin=dict(l=10, r=10, t=10, b=10),
                      legend=dict(orientation="h", y=-0.2))
    fig.update_xaxes(title="class", dtick=1)
    fig.update_yaxes(title="examples")
    return fig
