"""Plotly figures for pictures of the network: digits, attribution maps, feature-map mosaics, probabilities.

One colour convention everywhere (the "How to read this" texts refer to it):
  * signed maps (evidence for and against): diverging red-white-blue centred at 0, red = for;
  * magnitude maps (non-negative): sequential white -> red, so white always means "nothing";
  * images (digits, feature maps seen as pictures): grayscale, black = 0.
The digit can be drawn over a map as a thin outline (a contour of its ink), so the map stays readable.
Figures only arrange and colour what analysis/ computed; no analysis happens here.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

SIGNED = "RdBu_r"     # blue (-) -> white (0) -> red (+)
MAGNITUDE = "Reds"    # white (0) -> red (large)
IMAGE = "gray"        # black (0) -> white (1)
OUTLINE_LEVEL = 0.35  # the digit outline is the contour of the ink at this level (ink in [0,1])
TICKS = ".3~g"        # colour-bar numbers: plain or 1e-5 notation, never SI prefixes ("1p", "0.8µ")


def square(fig: go.Figure, height: int, title: str | None) -> go.Figure:
    """Square pixels, row 0 at the top, no ticks (`row_col_ticks` adds them to a single map), tight margins."""
    fig.update_xaxes(showticklabels=False, ticks="", showgrid=False, zeroline=False, constrain="domain")
    fig.update_yaxes(showticklabels=False, ticks="", showgrid=False, zeroline=False, autorange="reversed",
                     scaleanchor="x", constrain="domain")
    fig.update_layout(height=height, margin=dict(l=4, r=4, t=34 if title else 4, b=4),
                      title=dict(text=title, font=dict(size=13)) if title else None)
    return fig


def tick_values(size: int, step: int | None = None) -> list[int]:
    """0-based tick positions for a map side of `size` cells: every cell up to 5, else every 5 (0, 5, 10, …)."""
    step = step or (1 if size <= 5 else 5)
    return list(range(0, size, step))


def row_col_ticks(fig: go.Figure, height: int, width: int, titles: bool = True) -> go.Figure:
    """Label a single map's rows and columns (0-based, every 5 cells or every cell of a small map)."""
    fig.update_xaxes(showticklabels=True, tickmode="array", tickvals=tick_values(width), ticks="outside",
                     ticklen=3, tickfont=dict(size=10), title=dict(text="column", font=dict(size=11)) if titles else None)
    fig.update_yaxes(showticklabels=True, tickmode="array", tickvals=tick_values(height), ticks="outside",
                     ticklen=3, tickfont=dict(size=10), title=dict(text="row", font=dict(size=11)) if titles else None)
    fig.update_layout(margin=dict(l=46 if titles else 30, b=40 if titles else 24))
    return fig


def _luminance(rgb: str) -> float:
    """WCAG relative luminance of a colour "rgb(r, g, b)"."""
    channels = [float(v) / 255.0 for v in rgb[rgb.index("(") + 1:rgb.index(")")].split(",")[:3]]
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def text_colors(values: np.ndarray, zmin: float, zmax: float, colorscale: str) -> np.ndarray:
    """A readable text colour for every cell of a heatmap: black on light cells, white on dark ones.

    Picks whichever of black and white contrasts more with the cell's colour (WCAG contrast ratio;
    the worse of the two choices is never below 4.5:1, the WCAG AA level for normal text).
    """
    from plotly.colors import sample_colorscale
    v = np.asarray(values, dtype=np.float64)
    span = zmax - zmin if zmax > zmin else 1.0
    where = np.clip(np.nan_to_num((v - zmin) / span, nan=0.0), 0.0, 1.0)
    cells = sample_colorscale(colorscale, where.ravel().tolist())
    colors = ["#000000" if (_luminance(c) + 0.05) / 0.05 >= 1.05 / (_luminance(c) + 0.05) else "#FFFFFF"
              for c in cells]
    return np.array(colors, dtype=object).reshape(v.shape)


def _range(values: np.ndarray, signed: bool, zmax: float | None) -> tuple[float, float]:
    top = float(np.nanmax(np.abs(values))) if zmax is None and np.size(values) else (zmax or 0.0)
    top = top if top > 0 else 1.0           # an all-zero map: white on a readable 0..1 scale
    return (-top, top) if signed else (0.0, top)


def constant_value(values: np.ndarray) -> float | None:
    """The single value of a map whose every finite cell is the same (None when it varies)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0 or v.max() - v.min() > 1e-12 * max(1.0, float(np.abs(v).max())):
        return None
    return float(v[0]) + 0.0                 # + 0.0 turns -0.0 into 0.0


def outline_trace(digit: np.ndarray) -> go.Contour:
    """A thin outline of the digit's strokes, to draw over a map."""
    ink = np.asarray(digit, dtype=np.float32)
    ink = ink / 255.0 if ink.max() > 1.0 else ink
    return go.Contour(z=ink, showscale=False, showlegend=False, hoverinfo="skip", contours=dict(
        start=OUTLINE_LEVEL, end=OUTLINE_LEVEL, size=1, coloring="none"),
        line=dict(color="rgba(40,40,40,0.85)", width=1.2))


def image_figure(image: np.ndarray, title: str | None = None, height: int = 260,
                 window: tuple[int, int, int] | None = None) -> go.Figure:
    """A digit or a single feature map as a grayscale heatmap, values on hover.

    Args:
        window: optional (row, col, size) or (row, col, height, width): a yellow rectangle drawn around those
            pixels (its top-left may lie outside the image, over a conv layer's padding).
    """
    img = np.asarray(image, dtype=np.float32)
    fig = go.Figure(go.Heatmap(z=img, colorscale=IMAGE, showscale=False,
                               hovertemplate="row %{y}, column %{x}<br>value %{z:.3f}<extra></extra>"))
    if window is not None:
        r, c, *size = window
        wh, ww = (size[0], size[0]) if len(size) == 1 else size
        fig.add_shape(type="rect", x0=c - 0.5, x1=c + ww - 0.5, y0=r - 0.5, y1=r + wh - 0.5,
                      line=dict(color="#FFD43B", width=3))
    return row_col_ticks(square(fig, height, title), *img.shape[-2:])


def attribution_figure(attr: np.ndarray, signed: bool, title: str | None = None, digit: np.ndarray | None = None,
                       height: int = 280, zmax: float | None = None, colorbar: bool = True) -> go.Figure:
    """An attribution map (28,28) in the shared colour convention, optionally with the digit's outline."""
    zmin, zmax_ = _range(attr, signed, zmax)
    fig = go.Figure(go.Heatmap(
        z=attr, colorscale=SIGNED if signed else MAGNITUDE, zmin=zmin, zmax=zmax_, showscale=colorbar,
        colorbar=dict(thickness=10, len=0.9, tickformat=TICKS),
        hovertemplate="row %{y}, column %{x}<br>attribution %{z:.4g}<extra></extra>"))
    if digit is not None:
        fig.add_trace(outline_trace(digit))
    return row_col_ticks(square(fig, height, title), *np.shape(attr)[-2:])


def maps_grid(maps: np.ndarray, titles: Sequence[str], signed: bool, cols: int = 5,
              digit: np.ndarray | None = None, height_per_row: int = 190) -> go.Figure:
    """Several (28,28) maps on one shared colour scale, in a grid of small panels."""
    n = len(maps)
    rows = -(-n // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=list(titles),
                        horizontal_spacing=0.02, vertical_spacing=0.08)
    zmin, zmax = _range(np.asarray(maps), signed, None)
    for i, m in enumerate(maps):
        r, c = i // cols + 1, i % cols + 1
        fig.add_trace(go.Heatmap(z=m, coloraxis="coloraxis", name=titles[i],
                                 hovertemplate=f"{titles[i]}<br>row %{{y}}, column %{{x}}<br>%{{z:.4g}}<extra></extra>"),
                      row=r, col=c)
        if digit is not None:
            fig.add_trace(outline_trace(digit), row=r, col=c)
    fig.update_layout(coloraxis=dict(colorscale=SIGNED if signed else MAGNITUDE, cmin=zmin, cmax=zmax,
                                     colorbar=dict(thickness=10, tickformat=TICKS)))
    fig.update_annotations(font_size=12)
    square(fig, rows * height_per_row + 40, None)
    fig.update_layout(margin=dict(t=30))   # room for the first row's panel titles
    h, w = np.shape(maps)[-2:]
    for i in range(rows * cols):   # every panel square and row 0 on top (scaleanchor per panel), rows/columns ticked
        suffix = "" if i == 0 else str(i + 1)
        ticks = dict(showticklabels=True, tickmode="array", ticks="outside", ticklen=2, tickfont=dict(size=9))
        fig.update_layout({f"yaxis{suffix}": dict(scaleanchor=f"x{suffix}", autorange="reversed",
                                                  tickvals=tick_values(h), **ticks),
                           f"xaxis{suffix}": dict(tickvals=tick_values(w), **ticks)})
    return fig


def probability_bars(probs: np.ndarray, title: str | None = None, highlight: int | None = None,
                     height: int = 240, label: str = "probability") -> go.Figure:
    """Ten bars, one per class; the highlighted class (e.g. the prediction) in the accent colour."""
    classes = list(range(len(probs)))
    colors = ["#4C6EF5" if c == highlight else "#ADB5BD" for c in classes]
    fig = go.Figure(go.Bar(x=classes, y=probs, marker_color=colors,
                           hovertemplate=f"class %{{x}}<br>{label} %{{y:.4f}}<extra></extra>"))
    fig.update_layout(height=height, margin=dict(l=4, r=4, t=34 if title else 4, b=4),
                      title=dict(text=title, font=dict(size=13)) if title else None,
                      xaxis=dict(title="class", tickmode="array", tickvals=classes, ticktext=[str(c) for c in classes],
                                 range=[-0.5, len(classes) - 0.5]),
                      yaxis=dict(title=label, tickformat=TICKS))
    return fig


def header_rows(h: int) -> int:
    """Empty rows above each tile of a mosaic, where its number is written: about a seventh of a tile, at least 1."""
    return max(1, round(h / 7))


def mosaic(maps: np.ndarray, cols: int, gap: int = 1, header: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Lay C maps (C,H,W) out in a grid with NaN gaps, for one heatmap trace.

    Tile i sits at rows header + (i // cols) * (header + H + gap) and columns (i % cols) * (W + gap);
    the `header` NaN rows above each tile leave room for its number (see `mosaic_labels`).

    Returns:
        (grid (rows*(header+H+gap)-gap, cols*(W+gap)-gap) with NaN in the gaps,
         customdata of the same shape + (3,): (channel, row, col) of every cell, -1 in the gaps).
    """
    c, h, w = maps.shape
    rows = -(-c // cols)
    grid = np.full((rows * (header + h + gap) - gap, cols * (w + gap) - gap), np.nan, dtype=np.float32)
    where = np.full(grid.shape + (3,), -1, dtype=np.int32)
    rr, cc = np.mgrid[0:h, 0:w]
    for i in range(c):
        top, left = header + (i // cols) * (header + h + gap), (i % cols) * (w + gap)
        grid[top:top + h, left:left + w] = maps[i]
        where[top:top + h, left:left + w] = np.stack([np.full((h, w), i), rr, cc], axis=-1)
    return grid, where


def mosaic_labels(fig: go.Figure, count: int, h: int, w: int, cols: int, header: int, gap: int = 1,
                  prefix: str = "") -> go.Figure:
    """Write each tile's number (0-based) in the header rows above it (a `mosaic` made with this header).

    One text trace named "tile numbers", not one annotation per tile: the browser lays out 64 annotations
    one by one, a text trace in one pass (a page with four mosaics drew about 0.4 s faster).
    """
    size = 11 if header * 2 >= 3 else 10
    tiles = np.arange(count)
    top = header + (tiles // cols) * (header + h + gap)
    left = (tiles % cols) * (w + gap)
    fig.add_scatter(x=left + (w - 1) / 2, y=top - 0.5 - header / 2, text=[f"{prefix}{i}" for i in tiles],
                    mode="text", textfont=dict(size=size, color="#212529"), textposition="middle center",
                    hoverinfo="skip", showlegend=False, name="tile numbers")
    return fig


def mosaic_figure(maps: np.ndarray, cols: int, title: str, signed: bool = False, image: bool = False,
                  height: int = 320, unit: str = "channel", what: str = "value") -> go.Figure:
    """C feature maps or kernels (C,H,W) as one grid heatmap, each tile numbered above it.

    Hover names the tile (`unit` and its number), the row and column inside it, and its `what` ("value",
    "weight", ...).
    """
    m = np.asarray(maps, dtype=np.float32)
    c, h, w = m.shape
    header = header_rows(h)
    grid, where = mosaic(m, cols, header=header)
    zmin, zmax = (float(np.nanmin(grid)), float(np.nanmax(grid))) if image else _range(grid, signed, None)
    fig = go.Figure(go.Heatmap(
        z=grid, customdata=where, zmin=zmin, zmax=zmax if zmax > zmin else zmin + 1.0,
        colorscale=IMAGE if image else (SIGNED if signed else MAGNITUDE), colorbar=dict(thickness=10, tickformat=TICKS),
        hoverongaps=False,
        hovertemplate=f"{unit} %{{customdata[0]}}<br>row %{{customdata[1]}}, column %{{customdata[2]}}"
                      f"<br>{what} %{{z:.4f}}<extra></extra>"))
    if image:
        fig.update_layout(plot_bgcolor="#E9ECEF")
    mosaic_labels(fig, c, h, w, cols, header)
    return square(fig, height, title)


def mosaic_cell(x: float, y: float, count: int, h: int, w: int, cols: int, header: int,
                gap: int = 1) -> tuple[int, int, int] | None:
    """The (tile, row, col) under grid position (x = column, y = row) of a `mosaic`; None in a gap or header."""
    gx, gy = int(round(float(x))), int(round(float(y)))
    tile_col, col = divmod(gx, w + gap)
    tile_row, inside = divmod(gy, header + h + gap)
    row = inside - header
    tile = tile_row * cols + tile_col
    if gx < 0 or gy < 0 or tile_col >= cols or col >= w or not 0 <= row < h or tile >= count:
        return None
    return tile, row, col


def vector_figure(values: np.ndarray, title: str, cols: int = 96, height: int = 260, signed: bool = False) -> go.Figure:
    """A long vector (e.g. fc1's 4608 units) folded into rows of `cols` cells; hover gives the unit index."""
    v = np.asarray(values, dtype=np.float32).ravel()
    cols = min(cols, len(v))
    rows = -(-len(v) // cols)
    grid = np.full(rows * cols, np.nan, dtype=np.float32)
    grid[:len(v)] = v
    index = np.arange(rows * cols).reshape(rows, cols)
    zmin, zmax = _range(v, signed, None)
    fig = go.Figure(go.Heatmap(z=grid.reshape(rows, cols), customdata=index, zmin=zmin, zmax=zmax,
                               colorscale=SIGNED if signed else MAGNITUDE,
                               colorbar=dict(thickness=10, tickformat=TICKS), hoverongaps=False,
                               hovertemplate="unit %{customdata}<br>value %{z:.4f}<extra></extra>"))
    return square(fig, height, title)


def numbers_figure(values: np.ndarray, title: str, signed: bool = True, image: bool = False,
                   height: int = 220) -> go.Figure:
    """A small matrix (e.g. 3x3) with its numbers written in the cells, rows and columns numbered.

    The numbers are a second trace (text only), each in black or white, whichever reads better on
    its cell (`text_colors`).
    """
    v = np.asarray(values, dtype=np.float64)
    zmin, zmax = (0.0, max(1.0, float(v.max()))) if image else _range(v, signed, None)
    scale = IMAGE if image else (SIGNED if signed else MAGNITUDE)
    text = [[f"{x + 0.0:.3f}".replace("-0.000", "0.000") for x in row] for row in v]
    fig = go.Figure(go.Heatmap(z=v, zmin=zmin, zmax=zmax, showscale=False, colorscale=scale,
                               hovertemplate="row %{y}, column %{x}<br>%{z:.5f}<extra></extra>"))
    rr, cc = np.mgrid[0:v.shape[0], 0:v.shape[1]]
    fig.add_trace(go.Scatter(x=cc.ravel(), y=rr.ravel(), mode="text", text=[t for row in text for t in row],
                             textfont=dict(size=13, color=list(text_colors(v, zmin, zmax, scale).ravel())),
                             hoverinfo="skip", showlegend=False))
    fig = row_col_ticks(square(fig, height, title), *v.shape, titles=False)
    fig.update_xaxes(autorange=False, range=[-0.5, v.shape[1] - 0.5])     # the text trace adds no padding
    fig.update_yaxes(autorange=False, range=[v.shape[0] - 0.5, -0.5])     # row 0 on top
    return fig


def lines_with_gaps(table, group: str, x: str, y: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, group) of every group's line one after the other, a NaN between groups: one Plotly trace for all."""
    xs, ys, gs = [], [], []
    for g, rows in table.groupby(group):
        xs += [*rows[x].to_numpy(dtype=float), np.nan]
        ys += [*rows[y].to_numpy(dtype=float), np.nan]
        gs += [g] * (len(rows) + 1)
    return np.asarray(xs), np.asarray(ys), np.asarray(gs)


def kernel_mosaic(kernels: dict[int, np.ndarray], start: int, animate: bool = False, cols: int = 8,
                  name: str = "conv1") -> go.Figure:
    """A one-input-channel conv layer's kernels (conv1's) as one numbered mosaic, on one colour scale over every
    given epoch.

    Args:
        kernels: {epoch: (count, h, w) kernels}.
        start: the epoch shown.
        animate: add a Plotly animation (a frame per epoch, a slider and a play button). Default: False.
        name: the layer's name in the title. Default: "conv1".
    """
    epochs = sorted(kernels)
    count, h, w = kernels[start].shape
    cols = min(cols, count)
    header = header_rows(h)
    grids = {e: mosaic(kernels[e], cols, header=header) for e in (epochs if animate else [start])}
    top = max(float(np.nanmax(np.abs(kernels[e]))) for e in epochs) or 1.0

    def heat(e: int) -> go.Heatmap:
        grid, where = grids[e]
        return go.Heatmap(z=grid, customdata=where, zmin=-top, zmax=top, colorscale=SIGNED,
                          hoverongaps=False, colorbar=dict(thickness=10, tickformat=TICKS),
                          hovertemplate="kernel %{customdata[0]}<br>weight at row %{customdata[1]}, "
                                        "column %{customdata[2]}<br>%{z:.4f}<extra></extra>")
    fig = go.Figure(data=[heat(start)])
    mosaic_labels(fig, count, h, w, cols, header)
    title = f"{name}: {count} kernels {h}×{w}, numbered · epoch {start}"
    if animate:
        fig.frames = [go.Frame(data=[heat(e)], name=str(e)) for e in epochs]
        steps = [dict(method="animate", label=str(e), args=[[str(e)], dict(mode="immediate", frame=dict(
            duration=0, redraw=True), transition=dict(duration=0))]) for e in epochs]
        fig.update_layout(
            # the slider starts right of the play button (both sit under the plot, on the same line)
            sliders=[dict(active=epochs.index(start), steps=steps, currentvalue=dict(prefix="epoch "),
                          x=0.16, len=0.84, y=0, yanchor="top", pad=dict(t=30, l=0))],
            updatemenus=[dict(type="buttons", direction="left", x=0, y=0, xanchor="left", yanchor="top",
                              pad=dict(t=58, l=0), showactive=False,
                              buttons=[dict(label="▶ play", method="animate", args=[None, dict(
                                  frame=dict(duration=700, redraw=True), fromcurrent=False,
                                  transition=dict(duration=0))])])])
        title = f"{name}: {count} kernels {h}×{w}, numbered (epoch {start} shown; ▶ or the slider for others)"
    square(fig, 470 if animate else 400, title)
    fig.update_layout(margin=dict(l=4, r=4, t=34, b=90 if animate else 4))
    return fig
