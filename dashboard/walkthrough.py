"""The layer-by-layer walk-through of one input, in the spirit of CNN Explainer (Wang et al. 2020).

    input 1x28x28 -> conv1 32x26x26 -> ReLU -> pool 32x13x13 -> conv2 64x11x11 -> ReLU -> pool 64x5x5
          -> fc1 4608 (-> ReLU) -> logits 10 -> softmax 10

Shared by the "Filters & activations" and "Draw a digit" pages. Every stage is drawn with its shape
written on it; clicking a conv1 output pixel (or typing its row and column) shows the 3x3 window of
the input, the kernel and their multiply-and-sum with the numbers (analysis.internals.conv1_window).
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from analysis.internals import conv1_window
from dashboard import cache, maps


def _num(x: float, digits: int = 4) -> str:
    """A number with `digits` decimals, never "-0.000" (a tiny negative rounds to a plain 0)."""
    text = f"{float(x):.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def _shape(a: np.ndarray) -> str:
    return "×".join(str(s) for s in a.shape)


def _cols_for(channels: int) -> int:
    """Grid columns for a mosaic of feature maps: 8 for 32 or 64 maps."""
    return 8 if channels >= 16 else max(1, channels)


def render_walkthrough(run_dir: str, epoch: int, image: np.ndarray, key: str) -> dict[str, np.ndarray]:
    """Draw every stage of the forward pass of one image (28,28) at (run, epoch); returns the activations."""
    acts = cache.activations(run_dir, epoch, image)
    n_fc = acts["relu3"].size
    stages = [
        ("input", f"① input · {_shape(acts['input'])}", "image"),
        ("conv1", f"② conv1: 32 kernels 3×3 · {_shape(acts['conv1'])}", "signed"),
        ("relu1", f"③ ReLU (negatives → 0) · {_shape(acts['relu1'])}", "magnitude"),
        ("pool1", f"④ max-pool 2×2 · {_shape(acts['pool1'])}", "magnitude"),
        ("conv2", f"⑤ conv2: 64 kernels 32×3×3 · {_shape(acts['conv2'])}", "signed"),
        ("relu2", f"⑥ ReLU · {_shape(acts['relu2'])}", "magnitude"),
        ("pool2", f"⑦ max-pool 2×2 · {_shape(acts['pool2'])} (flattened: {acts['pool2'].size})", "magnitude"),
        ("relu3", f"⑧ fc1 → ReLU · {n_fc} units ({int((acts['relu3'] > 0).sum())} active)", "vector"),
    ]
    for left, right in zip(stages[0::2], stages[1::2]):
        cols = st.columns(2)
        for col, (name, title, kind) in zip(cols, (left, right)):
            a = acts[name]
            if kind == "vector":
                fig = maps.vector_figure(a, title, cols=96 if n_fc % 96 == 0 else 64)
            elif a.shape[0] == 1:
                fig = maps.image_figure(a[0], title, height=300)
            else:
                fig = maps.mosaic_figure(a, _cols_for(a.shape[0]), title, signed=kind == "signed",
                                         height=300 if a.shape[0] <= 32 else 420)
            col.plotly_chart(fig, width="stretch", key=f"{key}_stage_{name}")
    pred = int(np.argmax(acts["softmax"]))
    c1, c2 = st.columns(2)
    c1.plotly_chart(maps.probability_bars(acts["logits"], f"⑨ logits (fc2) · {acts['logits'].size}", pred,
                                          label="logit"), width="stretch", key=f"{key}_stage_logits")
    c2.plotly_chart(maps.probability_bars(acts["softmax"], f"⑩ softmax · {acts['softmax'].size} "
                                          f"(prediction {pred})", pred), width="stretch", key=f"{key}_stage_softmax")
    return acts


def _clicked_pixel(key: str) -> tuple[int, int] | None:
    """(row, col) of the conv1 pixel last clicked on the chart `key`, from the chart's selection state."""
    event = st.session_state.get(key)
    try:
        points = event["selection"]["points"]
    except (KeyError, TypeError):
        return None
    if not points:
        return None
    p = points[0]
    if "x" not in p or "y" not in p:
        return None
    return int(round(float(p["y"]))), int(round(float(p["x"])))


def _click_figure(fmap: np.ndarray, row: int, col: int, title: str) -> go.Figure:
    """One conv1 output map with a clickable (transparent) point on every pixel and the chosen one framed."""
    h, w = fmap.shape
    rr, cc = np.mgrid[0:h, 0:w]
    fig = maps.attribution_figure(fmap, signed=True, title=title, height=330)
    fig.data[0].hoverinfo = "skip"
    fig.data[0].hovertemplate = None
    fig.add_trace(go.Scatter(
        x=cc.ravel(), y=rr.ravel(), mode="markers", marker=dict(size=11, color="rgba(0,0,0,0)"),
        customdata=fmap.ravel(), showlegend=False,
        hovertemplate="row %{y}, col %{x}<br>output %{customdata:.4f}<br>click to explain<extra></extra>"))
    fig.add_shape(type="rect", x0=col - 0.5, x1=col + 0.5, y0=row - 0.5, y1=row + 0.5,
                  line=dict(color="#FFD43B", width=3))
    fig.update_layout(clickmode="event+select", dragmode=False)
    return fig


def render_conv1_click(run_dir: str, epoch: int, image: np.ndarray, acts: dict[str, np.ndarray], key: str) -> dict:
    """One conv1 output pixel explained: its 3x3 input window, the kernel, and the multiply-and-sum.

    The pixel comes from a click on the feature map (Plotly selection) or from the row/col inputs
    (keyboard; also how tests drive it). Returns analysis.internals.conv1_window's result.
    """
    kernels, biases, mean, std = cache.conv1_params(run_dir, epoch)
    n_ch, out_h, out_w = acts["conv1"].shape
    chart_key, row_key, col_key, applied_key = f"{key}_click", f"{key}_row", f"{key}_col", f"_{key}_click_applied"
    clicked = _clicked_pixel(chart_key)
    if clicked is not None and st.session_state.get(applied_key) != clicked:   # a new click wins over the inputs
        st.session_state[applied_key] = clicked
        st.session_state[row_key] = min(max(clicked[0], 0), out_h - 1)
        st.session_state[col_key] = min(max(clicked[1], 0), out_w - 1)
    c0, c1, c2 = st.columns(3)
    channel = int(c0.number_input("conv1 kernel (channel)", 0, n_ch - 1, 0, key=f"{key}_channel"))
    # start on the pixel where this channel responds most (a window on the ink, not an all-zero corner);
    # a new image moves it there again, a click or typed row/column moves it anywhere
    image_id, image_key = hash(np.asarray(image).tobytes()), f"_{key}_image"
    if st.session_state.get(image_key, image_id) != image_id:
        st.session_state.pop(row_key, None)
        st.session_state.pop(col_key, None)
    st.session_state[image_key] = image_id
    if row_key not in st.session_state or col_key not in st.session_state:
        best_r, best_c = np.unravel_index(int(np.argmax(acts["conv1"][channel])), (out_h, out_w))
        st.session_state.setdefault(row_key, int(best_r))
        st.session_state.setdefault(col_key, int(best_c))
    row = int(c1.number_input("Output row", 0, out_h - 1, key=row_key))
    col = int(c2.number_input("Output column", 0, out_w - 1, key=col_key))

    seen = (cache.as_float_image(image) - mean) / std        # what conv1 sees (normalized models only differ)
    result = conv1_window(seen, kernels[channel], float(biases[channel]), row, col)
    left, right = st.columns(2)
    left.plotly_chart(maps.image_figure(seen, f"input · the 3×3 window at ({row}, {col})", height=330,
                                        window=(row, col, 3)), width="stretch", key=f"{key}_click_input")
    with right:
        st.plotly_chart(_click_figure(acts["conv1"][channel], row, col,
                                      f"conv1 channel {channel} · 26×26 · click a pixel"),
                        width="stretch", key=chart_key, on_select="rerun", selection_mode="points")
    a, b, c = st.columns(3)
    a.plotly_chart(maps.numbers_figure(result["window"], "input window (3×3)", image=True),
                   width="stretch", key=f"{key}_win")
    b.plotly_chart(maps.numbers_figure(result["kernel"], f"kernel {channel} (3×3)"),
                   width="stretch", key=f"{key}_kernel")
    c.plotly_chart(maps.numbers_figure(result["products"], "window × kernel"),
                   width="stretch", key=f"{key}_products")
    terms = " + ".join(f"({_num(w, 2)}×{_num(k, 2)})" for w, k in zip(result["window"].ravel(),
                                                                        result["kernel"].ravel()))
    st.markdown(f"**Multiply and sum:** {terms} = **{_num(result['sum'])}**; "
                f"plus the bias {_num(result['bias'])} gives **{_num(result['output'])}**, "
                f"the conv1 output at row {row}, column {col} of channel {channel}.")
    st.caption(f"The forward pass computed {_num(acts['conv1'][channel, row, col])} at the same place; "
               f"after the ReLU it is {_num(acts['relu1'][channel, row, col])}.")
    return result
