"""The layer-by-layer walk-through of one input, in the spirit of CNN Explainer (Wang et al. 2020).

    input 1x28x28 -> conv1 32x26x26 -> ReLU -> pool 32x13x13 -> conv2 64x11x11 -> ReLU -> pool 64x5x5
          -> fc1 4608 (-> ReLU) -> logits 10 -> softmax 10

Shared by the "Kernels & activations" and "Draw a digit" pages. Every stage is drawn with its shape
written on it and every channel numbered. Clicking a unit of a conv1 channel (in the stage mosaic,
when `render_walkthrough(clickable=True)` and `render_conv1_click(mosaic_key=...)`, or in the one
channel drawn by `render_conv1_click`) picks the kernel and the position at once and shows the 3x3
window of the input, the kernel and their multiply-and-sum with the numbers. The numbers come from
analysis.internals.conv1_at (through dashboard.cache); this module only draws them.

Words: a kernel is the weights of one output channel (conv1 kernel 3: 3x3); a channel is one output
map (conv1 channel 3: what kernel 3 computes at every position, 26x26); a unit is one value of a map.
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from analysis.internals import active_units, strongest_position
from dashboard import cache, maps
from model.net import VARIANTS


def _num(x: float, digits: int = 4) -> str:
    """A number with `digits` decimals, never "-0.000" (a tiny negative rounds to a plain 0)."""
    text = f"{float(x):.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def _shape(a: np.ndarray) -> str:
    return "×".join(str(s) for s in a.shape)


def _cols_for(channels: int) -> int:
    """Grid columns for a mosaic of channels: 8 for 32 or 64 channels."""
    return 8 if channels >= 16 else max(1, channels)


def mosaic_key(walk_key: str) -> str:
    """The widget key of the conv1 stage mosaic drawn by `render_walkthrough(key=walk_key)`."""
    return f"{walk_key}_stage_conv1"


def fc1_sentence(n_in: int, n_fc: int) -> str:
    """Why fc1 has as many units as it has (wider than its input in the seed network)."""
    seed, small = VARIANTS["seed"].fc1_units, VARIANTS["small-fc"].fc1_units
    seed_in = VARIANTS["seed"].conv2_channels * 5 * 5
    why = (f"The seed network's fc1 has {seed} = {seed_in}×{seed / seed_in:.2f} units because the study project "
           f"it comes from chose that size; the small-fc variant uses {small}.")
    if n_fc > n_in:
        return (f"fc1 ({n_fc} units) is wider than its input ({n_in} pooled values). {why} A hidden layer may be "
                f"wider than its input: fc1 maps the {n_in} pooled features into a larger space, and fc2 reads "
                "the 10 class scores from there.")
    return f"fc1 ({n_fc} units) is narrower than its input ({n_in} pooled values). {why}"


def _clickable_mosaic(acts: np.ndarray, title: str) -> go.Figure:
    """The conv1 channels as a numbered mosaic, with a transparent point on every unit to click."""
    c, h, w = acts.shape
    cols, header = _cols_for(c), maps.header_rows(h)
    fig = maps.mosaic_figure(acts, cols, title, signed=True, height=300 if c <= 32 else 420)
    fig.data[0].hoverinfo = "skip"
    fig.data[0].hovertemplate = None
    _, where = maps.mosaic(np.asarray(acts, dtype=np.float32), cols, header=header)
    gy, gx = np.nonzero(where[..., 0] >= 0)
    cells = where[gy, gx]                                                    # (n, 3): channel, row, col
    values = acts[cells[:, 0], cells[:, 1], cells[:, 2]]
    fig.add_trace(go.Scattergl(
        x=gx, y=gy, mode="markers", marker=dict(size=4, color="rgba(0,0,0,0)"), showlegend=False,
        customdata=np.column_stack([cells, values]),
        hovertemplate="channel %{customdata[0]} · row %{customdata[1]}, column %{customdata[2]}"
                      "<br>value %{customdata[3]:.4f}<br>click to compute it by hand<extra></extra>"))
    fig.update_layout(clickmode="event+select", dragmode=False)
    return fig


def render_walkthrough(run_dir: str, epoch: int, image: np.ndarray, key: str,
                       clickable: bool = False) -> dict[str, np.ndarray]:
    """Draw every stage of the forward pass of one image (28,28) at (run, epoch); returns the activations.

    Args:
        clickable: make the conv1 mosaic clickable (its key is `mosaic_key(key)`; pass it to
            `render_conv1_click`, which reads the click). Default: False.
    """
    acts = cache.activations(run_dir, epoch, image)
    n_fc, n_in = acts["relu3"].size, acts["pool2"].size
    stages = [
        ("input", f"① input · {_shape(acts['input'])}", "image"),
        ("conv1", f"② conv1: 32 kernels 3×3 → 32 channels · {_shape(acts['conv1'])}", "signed"),
        ("relu1", f"③ ReLU (negatives → 0) · {_shape(acts['relu1'])}", "magnitude"),
        ("pool1", f"④ max-pool 2×2 · {_shape(acts['pool1'])}", "magnitude"),
        ("conv2", f"⑤ conv2: 64 kernels 32×3×3 → 64 channels · {_shape(acts['conv2'])}", "signed"),
        ("relu2", f"⑥ ReLU · {_shape(acts['relu2'])}", "magnitude"),
        ("pool2", f"⑦ max-pool 2×2 · {_shape(acts['pool2'])} (flattened: {n_in})", "magnitude"),
        ("relu3", f"⑧ {n_in} → fc1 → ReLU · {n_fc} units ({active_units(acts['relu3'])} active)", "vector"),
    ]
    for left, right in zip(stages[0::2], stages[1::2]):
        cols = st.columns(2)
        for col, (name, title, kind) in zip(cols, (left, right)):
            a = acts[name]
            chart = dict(width="stretch", key=f"{key}_stage_{name}")
            if name == "conv1" and clickable:
                fig = _clickable_mosaic(a, title + " · click a unit")
                chart.update(on_select="rerun", selection_mode="points")
            elif kind == "vector":
                fig = maps.vector_figure(a, title, cols=96 if n_fc % 96 == 0 else 64)
            elif a.shape[0] == 1:
                fig = maps.image_figure(a[0], title, height=300)
            else:
                fig = maps.mosaic_figure(a, _cols_for(a.shape[0]), title, signed=kind == "signed",
                                         height=300 if a.shape[0] <= 32 else 420)
            col.plotly_chart(fig, **chart)
    st.caption(fc1_sentence(n_in, n_fc))
    pred = int(np.argmax(acts["softmax"]))
    c1, c2 = st.columns(2)
    c1.plotly_chart(maps.probability_bars(acts["logits"], f"⑨ logits (fc2) · {acts['logits'].size}", pred,
                                          label="logit"), width="stretch", key=f"{key}_stage_logits")
    c2.plotly_chart(maps.probability_bars(acts["softmax"], f"⑩ softmax · {acts['softmax'].size} "
                                          f"(prediction {pred})", pred), width="stretch", key=f"{key}_stage_softmax")
    return acts


def _clicked_point(key: str) -> dict | None:
    """The point last clicked on the chart `key` (from the chart's selection state), or None."""
    event = st.session_state.get(key)
    try:
        points = event["selection"]["points"]
    except (KeyError, TypeError):
        return None
    if not points or "x" not in points[0] or "y" not in points[0]:
        return None
    return points[0]


def clicked_unit(point: dict | None, shape: tuple[int, int, int], mosaic: bool) -> tuple[int | None, int, int] | None:
    """(channel or None, row, col) of a clicked point: a mosaic cell names all three, a single map only row, col.

    Args:
        point: a Plotly selection point with "x" (column) and "y" (row) in the figure's coordinates.
        shape: (channels, height, width) of the conv1 activations.
        mosaic: whether the point is on `_clickable_mosaic` (else on one channel's map).
    """
    if point is None:
        return None
    c, h, w = shape
    if mosaic:
        cell = maps.mosaic_cell(point["x"], point["y"], c, h, w, _cols_for(c), maps.header_rows(h))
        return cell
    row, col = int(round(float(point["y"]))), int(round(float(point["x"])))
    return None, min(max(row, 0), h - 1), min(max(col, 0), w - 1)


def _click_figure(fmap: np.ndarray, row: int, col: int, title: str) -> go.Figure:
    """One conv1 channel with a clickable (transparent) point on every unit and the chosen one framed."""
    h, w = fmap.shape
    rr, cc = np.mgrid[0:h, 0:w]
    fig = maps.attribution_figure(fmap, signed=True, title=title, height=330)
    fig.data[0].hoverinfo = "skip"
    fig.data[0].hovertemplate = None
    fig.add_trace(go.Scatter(
        x=cc.ravel(), y=rr.ravel(), mode="markers", marker=dict(size=11, color="rgba(0,0,0,0)"),
        customdata=fmap.ravel(), showlegend=False,
        hovertemplate="row %{y}, column %{x}<br>value %{customdata:.4f}<br>click to compute it by hand"
                      "<extra></extra>"))
    fig.add_shape(type="rect", x0=col - 0.5, x1=col + 0.5, y0=row - 0.5, y1=row + 0.5,
                  line=dict(color="#FFD43B", width=3))
    fig.update_layout(clickmode="event+select", dragmode=False)
    return fig


def render_conv1_click(run_dir: str, epoch: int, image: np.ndarray, acts: dict[str, np.ndarray], key: str,
                       mosaic_key: str | None = None, name: str | None = None) -> dict:
    """One conv1 unit computed by hand: its 3x3 input window, the kernel, and the multiply-and-sum.

    The unit comes from a click on the conv1 mosaic of the walk-through (`mosaic_key`: kernel, row and
    column at once), a click on the one channel drawn here (row and column), or the three number inputs
    (keyboard; also how tests drive it). `name` names the example in the sentence ("val #115").
    Returns analysis.internals.conv1_at's result.
    """
    shape = acts["conv1"].shape
    n_ch, out_h, out_w = shape
    chart_key, channel_key, row_key, col_key = f"{key}_click", f"{key}_channel", f"{key}_row", f"{key}_col"
    # a new click (on either chart) wins over the inputs; the same click is not re-applied on later reruns
    for source, is_mosaic in ((mosaic_key, True), (chart_key, False)):
        if source is None:
            continue
        point = _clicked_point(source)
        unit = clicked_unit(point, shape, is_mosaic)
        applied_key = f"_{source}_applied"
        if unit is not None and st.session_state.get(applied_key) != unit:
            st.session_state[applied_key] = unit
            if unit[0] is not None:
                st.session_state[channel_key] = unit[0]
            st.session_state[row_key], st.session_state[col_key] = unit[1], unit[2]
    c0, c1, c2 = st.columns(3)
    if not 0 <= st.session_state.get(channel_key, 0) < n_ch:
        st.session_state[channel_key] = 0
    channel = int(c0.number_input("conv1 kernel (= channel)", 0, n_ch - 1, key=channel_key,
                                  help="Kernel k computes channel k."))
    # start on the unit where this channel responds most (a window on the ink, not an all-zero corner);
    # a new image moves it there again, a click or typed row/column moves it anywhere
    image_id, image_key = hash(np.asarray(image).tobytes()), f"_{key}_image"
    if st.session_state.get(image_key, image_id) != image_id:
        st.session_state.pop(row_key, None)
        st.session_state.pop(col_key, None)
    st.session_state[image_key] = image_id
    if row_key not in st.session_state or col_key not in st.session_state:
        best_r, best_c = strongest_position(acts["conv1"][channel])
        st.session_state.setdefault(row_key, best_r)
        st.session_state.setdefault(col_key, best_c)
    row = int(c1.number_input("row", 0, out_h - 1, key=row_key))
    col = int(c2.number_input("column", 0, out_w - 1, key=col_key))

    result = cache.conv1_unit(run_dir, epoch, image, channel, row, col)
    left, right = st.columns(2)
    left.plotly_chart(maps.image_figure(result["seen"], f"input · the 3×3 window at row {row}, column {col}",
                                        height=330, window=(row, col, 3)), width="stretch", key=f"{key}_click_input")
    with right:
        st.plotly_chart(_click_figure(acts["conv1"][channel], row, col,
                                      f"conv1 channel {channel} · 26×26 · click a unit"),
                        width="stretch", key=chart_key, on_select="rerun", selection_mode="points")
    a, b, c = st.columns(3)
    a.plotly_chart(maps.numbers_figure(result["window"], "input window (3×3)", image=True),
                   width="stretch", key=f"{key}_win")
    b.plotly_chart(maps.numbers_figure(result["kernel"], f"conv1 kernel {channel} (3×3)"),
                   width="stretch", key=f"{key}_kernel")
    c.plotly_chart(maps.numbers_figure(result["products"], "window × kernel"),
                   width="stretch", key=f"{key}_products")
    terms = " + ".join(f"({_num(w, 2)}×{_num(k, 2)})" for w, k in zip(result["window"].ravel(),
                                                                        result["kernel"].ravel()))
    of = f" of {name}" if name else ""
    st.markdown(f"**Multiply and sum:** {terms} = **{_num(result['sum'])}**; "
                f"plus the bias {_num(result['bias'])} gives **{_num(result['output'])}**, "
                f"conv1 channel {channel} at row {row}, column {col}{of}.")
    st.caption(f"The forward pass computed {_num(acts['conv1'][channel, row, col])} at the same place; "
               f"after the ReLU it is {_num(acts['relu1'][channel, row, col])}.")
    return result
