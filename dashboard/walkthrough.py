"""The layer-by-layer walk-through of one input, in the spirit of CNN Explainer (Wang et al. 2020).

Every stage that analysis.internals.activations records, in the order the forward pass runs it; for our
own network:

    input 1x28x28 -> conv1 32x26x26 -> ReLU -> pool 32x13x13 -> conv2 64x11x11 -> ReLU -> pool 64x5x5
          -> fc1 4608 (-> ReLU) -> logits 10 -> softmax 10

and for any other network the layers `cache.layers` (analysis.layers.discover) found, titled with their
names, kinds and shapes. Shared by the "Kernels & activations" and "Draw a digit" pages. Every stage is
drawn with its shape written on it and every channel numbered: maps (channels×height×width) as mosaics,
vectors as rows of cells, the logits and the softmax as bars at the end. Clicking a unit of a channel of
the first conv layer (in the stage mosaic, when `render_walkthrough(clickable=True)` and
`render_conv1_click(mosaic_key=...)`, or in the one channel drawn by `render_conv1_click`) picks the kernel
and the position at once and shows the input window under the kernel (any kernel size; padding zeros
included), the kernel and their multiply-and-sum with the numbers. The numbers come from
analysis.internals.conv_unit (through dashboard.cache); this module only draws them.

Words: a kernel is the weights of one output channel (conv1 kernel 3: 3x3); a channel is one output map
(conv1 channel 3: what kernel 3 computes at every position, 26x26); a unit is one value of a map.
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from analysis.internals import active_units, strongest_position
from dashboard import cache, maps
from model.net import VARIANTS

CIRCLED = "①②③④⑤⑥⑦⑧⑨⑩⑪⑫⑬⑭⑮⑯⑰⑱⑲⑳"
MAPLIKE_KINDS = ("Conv2d", "Linear", "MaxPool2d", "AvgPool2d", "ReLU", "LeakyReLU", "ELU", "GELU", "SiLU", "Sigmoid",
                 "Tanh", "Softplus", "PReLU")   # stages whose meaning the walk-through's words already cover
MAX_TERMS = 81          # the multiply-and-sum is written out term by term up to a 9x9 window


def _num(x: float, digits: int = 4) -> str:
    """A number with `digits` decimals, never "-0.000" (a tiny negative rounds to a plain 0)."""
    text = f"{float(x):.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def _shape(a: np.ndarray) -> str:
    return "×".join(str(s) for s in a.shape)


def _cols_for(channels: int) -> int:
    """Grid columns for a mosaic of channels: 8 for 32 or 64 channels."""
    return 8 if channels >= 16 else max(1, channels)


def mosaic_key(walk_key: str, layer: str = "conv1") -> str:
    """The widget key of the stage mosaic of `layer` (the first conv layer) drawn by `render_walkthrough(key=walk_key)`."""
    return f"{walk_key}_stage_{layer}"


def number(i: int) -> str:
    """Stage numbers ①, ②, … (then "(21)", "(22)", …)."""
    return CIRCLED[i - 1] if 1 <= i <= len(CIRCLED) else f"({i})"


def display_name(short: str) -> str:
    """A layer's name in a sentence: "conv1", or "layer 0" for an nn.Sequential's numbered layers."""
    return f"layer {short}" if short.split("#")[0].isdigit() else short


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


def stage_title(i: int, name: str, a: np.ndarray, layer, label: str, geometry: dict | None,
                flattened: int | None = None) -> str:
    """The numbered title of one stage: the layer's name and kind, what it does, the shape of its output.

    Args:
        layer: the analysis.layers.Layer of the stage (None for the input).
        label: `cache.layer_labels`' name of it, e.g. "conv1 (Conv2d 32×3×3)".
        geometry: `cache.conv_geometry`'s entry when the layer is a Conv2d.
        flattened: the size this map is flattened to before the next (1-D) stage, if so.
    """
    shape = _shape(a)
    if layer is None:
        return f"{number(i)} {name} · {shape}"
    again = f" (call {name.split('#')[1]})" if "#" in name else ""
    short = layer.short + again
    if geometry is not None:
        kernel = "×".join(str(v) for v in (geometry["in"], *geometry["kernel"]))
        text = f"{short} (Conv2d): {geometry['out']} kernels {kernel} → {geometry['out']} channels"
    elif layer.kind == "Linear":
        text = f"{short} (Linear): {layer.in_shape[-1] if layer.in_shape else '?'} → {a.size} units"
    elif layer.kind == "ReLU":
        text = f"{short} (ReLU: negatives → 0)"
    else:
        text = label.replace(layer.short, short, 1) if label else f"{short} ({layer.kind})"
    extra = ""
    if a.ndim == 1 and layer.kind in MAPLIKE_KINDS and layer.kind not in ("Linear",) and float(a.min()) >= 0:
        extra = f" ({active_units(a)} active)"
    if flattened:
        extra += f" (flattened: {flattened})"
    return f"{number(i)} {text} · {shape}{extra}"


def _stage_figure(a: np.ndarray, title: str, clickable: bool) -> go.Figure:
    """One stage drawn by its shape: the input as an image, maps as a numbered mosaic, vectors as rows of cells."""
    signed = float(np.nanmin(a)) < 0 if a.size else False
    if clickable:
        return _clickable_mosaic(a, title + " · click a unit")
    if a.ndim == 3 and a.shape[1] * a.shape[2] > 1:
        if a.shape[0] == 1:
            return maps.image_figure(a[0], title, height=300)
        return maps.mosaic_figure(a, _cols_for(a.shape[0]), title, signed=signed,
                                  height=300 if a.shape[0] <= 32 else 420)
    v = a.ravel()
    return maps.vector_figure(v, title, cols=96 if v.size % 96 == 0 else 64, signed=signed)


def render_walkthrough(run_dir: str, epoch: int, image: np.ndarray, key: str,
                       clickable: bool = False) -> dict[str, np.ndarray]:
    """Draw every stage of the forward pass of one image (28,28) at (run, epoch); returns the activations.

    Stages come in the order the forward pass runs them (analysis.internals.activations), numbered, titled
    with the layer's name, kind and output shape; the final Linear layer's output is the logits, drawn as
    bars with the softmax after it.

    Args:
        clickable: make the first conv layer's mosaic clickable (its key is `mosaic_key(key, layer)`; pass it
            to `render_conv1_click`, which reads the click). Default: False.
    """
    acts = cache.activations(run_dir, epoch, image)
    found = cache.layers(run_dir, epoch)
    labels = cache.layer_labels(run_dir, epoch)
    geometry = cache.conv_geometry(run_dir, epoch)
    by_name = {layer.name: layer for layer in found.order}
    first_conv = found.convs[0] if found.convs else None
    names = [n for n in acts if n not in ("logits", "softmax")]
    if names and names[-1] == found.final and acts[names[-1]].shape == acts["logits"].shape:
        names = names[:-1]                     # the final layer's output is the logits, drawn as bars below
    if not found.chain:
        st.info("This network has **branches** (a residual addition or a concatenation), so the stages are listed "
                "in the order they run: a stage's input is not always the stage drawn before it, and the additions "
                "themselves are not layers and are not drawn.")
    stages = []
    for i, name in enumerate(names, start=1):
        a = acts[name]
        base = name.split("#")[0]
        nxt = acts[names[i]] if i < len(names) else acts["logits"]
        flat = a.size if a.ndim == 3 and nxt.ndim == 1 and a.shape[1] * a.shape[2] > 1 else None
        title = stage_title(i, name, a, by_name.get(base), labels.get(base, ""),
                            geometry.get(base) if "#" not in name else None, flat)
        stages.append((name, title, clickable and name == first_conv and a.ndim == 3))
    for pair in (stages[j:j + 2] for j in range(0, len(stages), 2)):
        cols = st.columns(2)
        for col, (name, title, click) in zip(cols, pair):
            chart = dict(width="stretch", key=f"{key}_stage_{name}")
            if click:
                chart.update(on_select="rerun", selection_mode="points")
            col.plotly_chart(_stage_figure(acts[name], title, click), **chart)
    others = sorted({by_name[n.split("#")[0]].kind for n in names[1:] if n.split("#")[0] in by_name}
                    - set(MAPLIKE_KINDS))
    if others:
        st.caption(f"The {', '.join(others)} stages are drawn as their output maps; the by-hand view below covers "
                   "convolutions.")
    if cache.load_config(run_dir).source is None and "relu3" in acts and "pool2" in acts:
        st.caption(fc1_sentence(acts["pool2"].size, acts["relu3"].size))
    pred = int(np.argmax(acts["softmax"]))
    n = len(names) + 1
    final = f" ({display_name(by_name[found.final].short)})" if found.final in by_name else ""
    c1, c2 = st.columns(2)
    c1.plotly_chart(maps.probability_bars(acts["logits"], f"{number(n)} logits{final} · {acts['logits'].size}", pred,
                                          label="logit"), width="stretch", key=f"{key}_stage_logits")
    c2.plotly_chart(maps.probability_bars(acts["softmax"], f"{number(n + 1)} softmax · {acts['softmax'].size} "
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
                       mosaic_key: str | None = None, name: str | None = None) -> dict | None:
    """One unit of the first conv layer computed by hand: its input window, the kernel, the multiply-and-sum.

    Any kernel size, stride and zero padding: the window is the one analysis.layers.conv_at reads, padding
    zeros included. The unit comes from a click on the layer's mosaic in the walk-through (`mosaic_key`:
    kernel, row and column at once), a click on the one channel drawn here (row and column), or the three
    number inputs (keyboard; also how tests drive it). `name` names the example in the sentence ("val #115").
    Returns analysis.internals.conv_unit's result (None when the network has no conv layer).
    """
    found = cache.layers(run_dir, epoch)
    if not found.convs:
        st.info("This network has no convolution layer: there is no kernel to compute by hand.")
        return None
    layer = found.convs[0]
    short = display_name(found.get(layer).short)
    geometry = cache.conv_geometry(run_dir, epoch)[layer]
    kh, kw = geometry["kernel"]
    fmap = acts[layer]
    shape = fmap.shape
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
    channel = int(c0.number_input(f"{short} kernel (= channel)", 0, n_ch - 1, key=channel_key,
                                  help="Kernel k computes channel k."))
    # start on the unit where this channel responds most (a window on the ink, not an all-zero corner);
    # a new image moves it there again, a click or typed row/column moves it anywhere
    image_id, image_key = hash(np.asarray(image).tobytes()), f"_{key}_image"
    if st.session_state.get(image_key, image_id) != image_id:
        st.session_state.pop(row_key, None)
        st.session_state.pop(col_key, None)
    st.session_state[image_key] = image_id
    for k in (row_key, col_key):                    # another model may have a smaller map
        if k in st.session_state and not 0 <= st.session_state[k] < (out_h if k == row_key else out_w):
            st.session_state.pop(k)
    if row_key not in st.session_state or col_key not in st.session_state:
        best_r, best_c = strongest_position(fmap[channel])
        st.session_state.setdefault(row_key, best_r)
        st.session_state.setdefault(col_key, best_c)
    row = int(c1.number_input("row", 0, out_h - 1, key=row_key))
    col = int(c2.number_input("column", 0, out_w - 1, key=col_key))

    result = cache.conv_unit(run_dir, epoch, image, layer, channel, row, col)
    window, kernel, products = (np.asarray(result[k]) for k in ("window", "kernel", "products"))
    if window.ndim == 2:                              # a squeezed one-input-channel window
        window, kernel, products = window[None], kernel[None], products[None]
    seen = np.asarray(result["seen"])
    seen = seen if seen.ndim == 3 else seen[None]
    (sh, sw), (ph, pw), (dh, dw) = geometry["stride"], geometry["padding"], geometry["dilation"]
    size = f"{kh}×{kw}"
    top, left = row * sh - ph, col * sw - pw
    left_col, right_col = st.columns(2)
    left_col.plotly_chart(maps.image_figure(seen[0], f"input · the {size} window at row {row}, column {col}",
                                            height=330, window=(top, left, dh * (kh - 1) + 1, dw * (kw - 1) + 1)),
                          width="stretch", key=f"{key}_click_input")
    with right_col:
        st.plotly_chart(_click_figure(fmap[channel], row, col,
                                      f"{short} channel {channel} · {out_h}×{out_w} · click a unit"),
                        width="stretch", key=chart_key, on_select="rerun", selection_mode="points")
    height = 220 if max(kh, kw) <= 3 else min(460, 60 + 40 * max(kh, kw))
    if window.shape[0] == 1:
        shown = (window[0], kernel[0], products[0])
        where = ""
    else:                                             # several input channels: the first one's slice
        shown = (window[0], kernel[0], products[0])
        where = f" · input channel 0 of {window.shape[0]}"
    a, b, c = st.columns(3)
    a.plotly_chart(maps.numbers_figure(shown[0], f"input window ({size}){where}", image=True, height=height),
                   width="stretch", key=f"{key}_win")
    b.plotly_chart(maps.numbers_figure(shown[1], f"{short} kernel {channel} ({size}){where}", height=height),
                   width="stretch", key=f"{key}_kernel")
    c.plotly_chart(maps.numbers_figure(shown[2], f"window × kernel{where}", height=height),
                   width="stretch", key=f"{key}_products")
    if window.size <= MAX_TERMS:
        terms = " + ".join(f"({_num(w, 2)}×{_num(k, 2)})" for w, k in zip(window.ravel(), kernel.ravel()))
    else:
        terms = f"the sum of the {window.size} products"
    of = f" of {name}" if name else ""
    st.markdown(f"**Multiply and sum:** {terms} = **{_num(result['sum'])}**; "
                f"plus the bias {_num(result['bias'])} gives **{_num(result['output'])}**, "
                f"{short} channel {channel} at row {row}, column {col}{of}.")
    notes = []
    if ph or pw:
        notes.append(f"The layer pads its input with {ph} row(s) and {pw} column(s) of zeros on each side, so a "
                     "window at the border covers zeros outside the image (they are in the numbers above).")
    if (sh, sw) != (1, 1):
        notes.append(f"It moves by a stride of {sh}×{sw}: output row {row} starts at input row {top}.")
    if window.shape[0] > 1:
        notes.append(f"The kernel reads {window.shape[0]} input channels; the figures show the first one, the sum "
                     "covers all of them.")
    forward = f"The forward pass computed {_num(fmap[channel, row, col])} at the same place"
    act = found.activation_of.get(layer)
    if act in acts and acts[act].shape == fmap.shape:
        order = list(acts)
        between = order[order.index(layer) + 1:order.index(act) + 1]       # e.g. a batch norm, then the ReLU
        if all(acts[n].shape == fmap.shape for n in between):
            steps = " and ".join(f"{display_name(found.get(n).short)} ({found.get(n).kind})" for n in between)
            forward += f"; after {steps} it is {_num(acts[act][channel, row, col])}"
    st.caption(" ".join([forward + "."] + notes))
    return result
