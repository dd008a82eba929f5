"""Kernels & activations: what the conv kernels look like and respond to, what excites a channel, and one
example's way through the network."""
import numpy as np
import plotly.graph_objects as go
import streamlit as st

from analysis.internals import mean_drift
from dashboard import cache, maps, state, ui, walkthrough

CLASS_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",     # Plotly's D3 palette:
                "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]     # ten distinct classes

sel = state.current()
st.title("🧠 Kernels & activations")
ui.intro(
    "Open the network up: the kernels of each convolution layer, what they respond to and how they formed during "
    "training, what excites a channel of any conv layer, one example's way through every layer, and how the last "
    "hidden layer arranges the test set. Layers are found in the model itself, whatever network the run holds.",
    """
- **Words**: a **kernel** is the weights of one output channel of a conv layer (conv1 kernel 3: 3×3
  weights). A **channel** is one output map of a layer (conv1 channel 3: what kernel 3 computes at every
  position, 26×26). A **unit** is one value of a map or of a hidden layer. An **example** is an image of the
  validation or test split, named like "val #115". Layers are named as the model's own code names them,
  with their kind: "conv1 (Conv2d 32×3×3)", or "0 (Conv2d 6×5×5)" for an `nn.Sequential`'s layer 0.
- **Colours**: kernels and pre-ReLU channels are *signed*: **red** positive, **blue** negative, white 0
  (a kernel that is red in the middle and blue around it responds to a bright dot on a dark surround).
  Channels after a ReLU or pooling are non-negative: white → red. Input images are grey. Numbers written
  in cells are black on light cells and white on dark ones.
- **Kernels** (pick the layer; the first conv layer to start): a layer that reads one channel (the image)
  shows each kernel as it is, numbered above it; hover for its weights. For 3×3 kernels the table says what
  each responds to, read from its weights: the edge, line or blob (centre-surround) template it correlates
  best with (r = 1: the same pattern), or "flat/weak". Press ▶ or drag the slider under the figure to watch
  the kernels form epoch by epoch. A layer that reads many channels (conv2: 32) is summarized as each kernel's
  mean |weight| over its input channels. **Kernel drift** is how far each kernel moved (L2 distance of its
  weights) since the previous or the first epoch: large early, small once training settles.
- **What excites a channel** (any conv layer; the last one to start): the 9 test examples that excite the
  channel most and an image grown by gradient ascent to excite it (activation maximization: a caricature,
  not a real digit).
- **Walk-through**: one example through every stage with its shape (channels × height × width); the
  example is the one every page shows. Click a unit of any channel of the first conv layer to see it computed
  by hand below: the input window (with the padding zeros, if the layer pads) × the kernel, summed, plus the bias.
- **Embedding**: every point is a test example placed by what the final Linear layer reads (fc1's units after
  the ReLU in our network), projected to 2-D (PCA: linear and faithful to large distances; t-SNE: keeps
  neighbours together, distances between clusters mean little). Select points (click, box or lasso) to see the
  digits.
""")

ckpts = ui.require_checkpoints(sel, "kernels and activations need the weights of an epoch")
run_dir = sel.run_dir
epoch = sel.epoch if sel.epoch in ckpts else ckpts[-1]
if epoch != sel.epoch:
    st.info(f"Epoch {sel.epoch} has no checkpoint; showing epoch {epoch}.")

found = cache.layers(run_dir, epoch)                         # the model's own layers (analysis.layers.discover)
labels = cache.layer_labels(run_dir, epoch)                 # "conv1 (Conv2d 32×3×3)", ...
geometry = cache.conv_geometry(run_dir, epoch)
test_labels = cache.split_labels("seed")["test"]              # the official test labels
VIEWS = ["Kernels", "What excites a channel", "Walk-through", "Embedding"]
# a segmented control, not st.tabs: tabs build every hidden view on every rerun; this builds only the chosen one
view = st.segmented_control("View", VIEWS, default=VIEWS[0], required=True, key="filt_view",
                            label_visibility="collapsed")


def conv_picker(where, key: str, default: int, help: str) -> str:
    """A selectbox of the model's conv layers (forward order), starting at convs[default]."""
    if st.session_state.get(key) not in found.convs:
        st.session_state.pop(key, None)
    return where.selectbox("Layer", list(found.convs), index=default % len(found.convs), key=key,
                           format_func=lambda n: labels.get(n, n), help=help)


def short(layer: str) -> str:
    return walkthrough.display_name(found.get(layer).short)


if view in VIEWS[:2] and not found.convs:
    st.info("This network has no convolution layer (Conv2d): there are no kernels or channels to show. The "
            "walk-through and the embedding still work.")
    st.stop()

# ----------------------------------------------------------------------------- kernels

if view == "Kernels":
    layer = conv_picker(st, "filt_kernel_layer", 0, "Any conv layer of the model; the first one to start.")
    g = geometry[layer]
    left, right = st.columns([3, 2])
    if g["in"] == 1:
        animate = len(ckpts) > 1 and left.toggle(
            "▶ Watch them form, epoch by epoch", key="filt_animate",
            help="Adds a play button and an epoch slider to the mosaic (every epoch's kernels are sent to the "
                 "browser).")
        left.plotly_chart(cache.kernel_mosaic_figure(run_dir, epoch, layer, short(layer), animate), width="stretch",
                          key="filt_kernels")
    else:
        summary = cache.kernel_summary(run_dir, epoch, layer)                 # (out,kh,kw)
        kh, kw = g["kernel"]
        left.plotly_chart(maps.mosaic_figure(summary, min(8, len(summary)),
                                             f"{short(layer)}: {g['out']} kernels, mean |weight| over their {g['in']} "
                                             f"input channels ({kh}×{kw}) · epoch {epoch}",
                                             height=520 if len(summary) > 32 else 400, unit="kernel",
                                             what="mean |weight|"),
                          width="stretch", key="filt_kernels")
    with right:
        kind = st.radio("Kernel drift", ["from_previous", "from_first"], horizontal=True, key="filt_drift_kind",
                        format_func=lambda k: {"from_previous": "since the previous epoch",
                                               "from_first": "since the first epoch"}[k])
        if len(ckpts) < 2:
            st.info("Drift needs at least two checkpoints; this run has one.")
        else:
            drift = cache.kernel_drift(run_dir, layer).dropna(subset=[kind])
            # every kernel's line in one trace, separated by gaps (one trace draws much faster than 32)
            x, y, who = maps.lines_with_gaps(drift, "kernel", "epoch", kind)
            fig = go.Figure(go.Scatter(x=x, y=y, customdata=who, mode="lines", name="each kernel", connectgaps=False,
                                       line=dict(width=1, color="rgba(76,110,245,0.35)"), showlegend=False,
                                       hovertemplate="kernel %{customdata}<br>epoch %{x}<br>"
                                                     "distance %{y:.4f}<extra></extra>"))
            mean = mean_drift(drift, kind)
            fig.add_trace(go.Scatter(x=mean.index, y=mean.values, mode="lines+markers",
                                     name=f"mean of the {g['out']} kernels", line=dict(width=3, color="#E8590C")))
            fig.add_vline(x=epoch, line=dict(color="#868E96", dash="dot"))
            fig.update_layout(height=380, margin=dict(l=4, r=4, t=10, b=4),
                              xaxis=dict(title="epoch", tickmode="array", tickvals=sorted(drift["epoch"].unique()),
                                         range=[min(drift["epoch"]) - 0.3, max(drift["epoch"]) + 0.3]),
                              yaxis_title="L2 distance of the kernel's weights",
                              legend=dict(orientation="h", x=1, xanchor="right", y=-0.18, yanchor="top"))
            fig.update_layout(margin=dict(b=70))
            st.plotly_chart(fig, width="stretch", key="filt_drift")
    if g["in"] == 1 and g["kernel"] == (3, 3):
        words = cache.kernel_descriptions(run_dir, epoch, layer)
        st.markdown(f"**What each {short(layer)} kernel responds to** (epoch {epoch}, read from its weights: the "
                    "template it correlates best with, r = 1 for the same pattern; below r = 0.6 it is *mixed*)")
        # a plain table: 32 short rows need no scrolling grid (st.dataframe costs the browser ~0.25 s per switch)
        with st.container(height=420):
            st.table(words.assign(r=[f"{r:.2f}" for r in words["r"]],
                                  weights=[f"{lo:.3f} … {hi:.3f}" for lo, hi in zip(words["low"], words["high"])])
                     [["kernel", "responds_to", "r", "weights"]]
                     .rename(columns={"responds_to": "responds to", "r": "match r",
                                      "weights": "weight range (min … max)"}).set_index("kernel"))
    else:
        why = (f"its kernels read {g['in']} input channels" if g["in"] > 1
               else f"its kernels are {g['kernel'][0]}×{g['kernel'][1]}")
        st.caption(f"Naming what each kernel responds to (edge, line, blob) covers 3×3 kernels on one input "
                   f"channel; {short(layer)} is skipped because {why}.")

# ----------------------------------------------------------------------------- what excites a channel

elif view == "What excites a channel":
    a, b = st.columns([3, 2])
    with b:
        layer = conv_picker(st, "filt_unit_layer", -1, "Any conv layer of the model; the last one to start.")
        g = geometry[layer]
        if not 0 <= st.session_state.get("filt_channel", 0) < g["out"]:
            st.session_state["filt_channel"] = 0
        channel = int(st.number_input(f"{short(layer)} kernel (= channel)", 0, g["out"] - 1, key="filt_channel",
                                      help="Kernel k computes channel k."))
        n_images = st.selectbox("Search the first … test examples", [1000, 2000, 10000], index=1, key="filt_topn")
        am_steps = st.selectbox("Activation-maximization steps", [50, 100, 200], index=1, key="filt_am_steps")
    kh, kw = g["kernel"]
    if g["in"] == 1:
        kernels = cache.conv_kernels(run_dir, epoch, layer)                  # (out,kh,kw)
        a.plotly_chart(maps.mosaic_figure(kernels, min(8, len(kernels)), f"{short(layer)}: {g['out']} kernels "
                                          f"{kh}×{kw} · epoch {epoch}", signed=True, height=400, unit="kernel",
                                          what="weight"), width="stretch", key="filt_unit_kernels")
        b.plotly_chart(maps.numbers_figure(kernels[channel], f"kernel {channel} ({kh}×{kw})"), width="stretch",
                       key="filt_channel_kernel")
    else:
        summary = cache.kernel_summary(run_dir, epoch, layer)                 # (out,kh,kw)
        a.plotly_chart(maps.mosaic_figure(summary, min(8, len(summary)),
                                          f"{short(layer)}: {g['out']} kernels, mean |weight| over their {g['in']} "
                                          f"input channels · epoch {epoch}", height=520 if len(summary) > 32 else 400,
                                          unit="kernel", what="mean |weight|"),
                       width="stretch", key="filt_unit_kernels")
        b.plotly_chart(maps.numbers_figure(summary[channel], f"kernel {channel}: mean |weight| ({kh}×{kw})",
                                           signed=False), width="stretch", key="filt_channel_kernel")
    idx, scores = cache.top_activating(run_dir, epoch, layer, channel, 9, n_images)
    after = found.activation_of.get(layer)
    score = (f"the largest unit of the channel after {found.get(after).short} ({found.get(after).kind})" if after
             else "the largest unit of the channel")
    st.markdown(f"**The 9 test examples that excite {short(layer)} channel {channel} most** (score: {score})")
    ui.digit_grid(cache.official_images("test", idx), [f"test #{i} · {s:.2f}" for i, s in zip(idx, scores)],
                  columns=9, size=76)
    am = cache.activation_maximization(run_dir, epoch, layer, channel, am_steps)
    c1, c2 = st.columns([1, 2])
    c1.plotly_chart(maps.image_figure(am, f"grown to excite {short(layer)} channel {channel}"), width="stretch",
                    key="filt_actmax")
    c2.markdown("**Activation maximization** starts from a grey image and changes its pixels, step by step, "
                "to raise the channel's **centre unit** (with a little blur and a penalty on bright pixels "
                "to keep it smooth). That unit sees only a patch of the input (its receptive field, larger for "
                "deeper layers), so the pattern it is tuned to (a stroke at an angle, an end, a curve) appears in "
                "the middle on a dark surround. Shown with its contrast stretched (darkest → black, brightest → "
                "white). Results are cached in the run folder.")
    if float(am.max() - am.min()) < 0.05:
        c2.caption("The image barely changed from grey: this channel hardly responds to any input at this epoch.")

# ----------------------------------------------------------------------------- walk-through

elif view == "Walk-through":
    w1, w2 = st.columns([1, 3])
    example = state.example_picker(sel, "filt", where=w1, epoch=epoch)
    w1.image(ui.digit(example.image, 112), caption=f"{example.name} · label {example.label}")
    first = short(found.convs[0]) if found.convs else None
    w2.markdown(f"**{example.long_name}, epoch {epoch}.** Each figure is one stage of the forward pass, in order; "
                "its title gives the layer, its kind and the shape (channels×height×width), and each channel is "
                "numbered above it. Hover any cell for its value"
                + (f"; **click a unit of a {first} channel** to compute it by hand below." if first else "."))
    acts = walkthrough.render_walkthrough(run_dir, epoch, example.image, key="filt_walk", clickable=True)
    if found.convs:
        st.subheader(f"One {first} unit of {example.name}, computed by hand")
    walkthrough.render_conv1_click(run_dir, epoch, example.image, acts, key="filt_conv",
                                   mosaic_key=walkthrough.mosaic_key("filt_walk", found.convs[0]) if found.convs
                                   else None, name=example.name)

# ----------------------------------------------------------------------------- embedding

elif view == "Embedding":
    e1, e2 = st.columns(2)
    emb_method = e1.radio("Projection", ["pca", "tsne"], horizontal=True, key="filt_emb_method",
                          format_func=lambda m: {"pca": "PCA", "tsne": "t-SNE"}[m])
    emb_n = e2.selectbox("Test examples", [500, 1000, 2000], index=1, key="filt_emb_n",
                         help="t-SNE on 2000 points takes a while the first time; then it is cached.")
    emb = cache.embedding_2d(run_dir, epoch, emb_method, emb_n)
    xy, index, labels = emb["xy"], emb["index"], emb["labels"]
    axis = {"pca": "PC", "tsne": "t-SNE"}[emb_method]
    fig = go.Figure()
    per_class = []
    for c in range(10):
        rows = np.flatnonzero(labels == c)
        per_class.append(index[rows])
        fig.add_trace(go.Scatter(x=xy[rows, 0], y=xy[rows, 1], mode="markers", name=str(c),
                                 marker=dict(size=5, opacity=0.8, color=CLASS_COLORS[c]), customdata=index[rows],
                                 hovertemplate=f"digit {c}<br>test #%{{customdata}}<extra></extra>"))
    fig.update_layout(height=560, margin=dict(l=4, r=4, t=10, b=4), legend_title_text="class",
                      dragmode="lasso", xaxis=dict(showticklabels=False, title=f"{axis} 1"),
                      yaxis=dict(showticklabels=False, title=f"{axis} 2"))
    event = st.plotly_chart(fig, width="stretch", key="filt_emb_sel", on_select="rerun",
                            selection_mode=("points", "box", "lasso"))
    points = (event or {}).get("selection", {}).get("points", []) if event else []
    chosen = []
    for p in points:
        curve, i = p.get("curve_number"), p.get("point_index", p.get("point_number"))
        if curve is not None and i is not None and curve < len(per_class) and i < len(per_class[curve]):
            chosen.append(int(per_class[curve][i]))
    if chosen:
        st.markdown(f"**{len(chosen)} selected** (showing up to 40)")
        shown = chosen[:40]
        ui.digit_grid(cache.official_images("test", shown),
                      [f"test #{i} · {test_labels[i]}" for i in shown], columns=10, size=64)
    else:
        st.caption("Select points (click, box or lasso) to see their digits here.")
