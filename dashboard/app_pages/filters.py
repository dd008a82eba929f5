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
    "Open the network up: the 32 kernels of the first layer, what each responds to and how they formed during "
    "training, what the 64 channels of the second layer respond to, one example's way through every layer, and "
    "how the last hidden layer arranges the test set.",
    """
- **Words**: a **kernel** is the weights of one output channel of a conv layer (conv1 kernel 3: 3×3
  weights). A **channel** is one output map of a layer (conv1 channel 3: what kernel 3 computes at every
  position, 26×26). A **unit** is one value of a map or of fc1. An **example** is an image of the
  validation or test split, named like "val #115".
- **Colours**: kernels and pre-ReLU channels are *signed*: **red** positive, **blue** negative, white 0
  (a kernel that is red in the middle and blue around it responds to a bright dot on a dark surround).
  Channels after a ReLU or pooling are non-negative: white → red. Input images are grey. Numbers written
  in cells are black on light cells and white on dark ones.
- **conv1 kernels**: each 3×3 square is one kernel, numbered above it; hover for its nine weights. The
  table says what each responds to, read from its weights: the edge, line or blob (centre-surround)
  template it correlates best with (r = 1: the same pattern), or "flat/weak". Press ▶ or drag the
  slider under the figure to watch the kernels form epoch by epoch. **Kernel drift** is how far each
  kernel moved (L2 distance of its nine weights) since the previous or the first epoch: large early,
  small once training settles.
- **conv2 kernels**: each of the 64 kernels has 32×3×3 weights, summarized here as the mean |weight|
  over its 32 input channels. Pick a kernel to see the 9 test examples that excite its channel most and
  an image grown by gradient ascent to excite it (activation maximization: a caricature, not a real digit).
- **Walk-through**: one example through every stage with its shape (channels × height × width); the
  example is the one every page shows. Click a unit of any conv1 channel (②) to see it computed by hand
  below: the 3×3 window of the input × the kernel, summed, plus the bias.
- **Embedding**: every point is a test example placed by its fc1 units (after the ReLU), projected to 2-D
  (PCA: linear and faithful to large distances; t-SNE: keeps neighbours together, distances between clusters
  mean little). Select points (click, box or lasso) to see the digits.
""")

ckpts = ui.require_checkpoints(sel, "kernels and activations need the weights of an epoch")
run_dir = sel.run_dir
epoch = sel.epoch if sel.epoch in ckpts else ckpts[-1]
if epoch != sel.epoch:
    st.info(f"Epoch {sel.epoch} has no checkpoint; showing epoch {epoch}.")


test_labels = cache.split_labels("seed")["test"]              # the official test labels
VIEWS = ["conv1 kernels", "conv2 kernels", "Walk-through", "Embedding"]
# a segmented control, not st.tabs: tabs build every hidden view on every rerun; this builds only the chosen one
view = st.segmented_control("View", VIEWS, default=VIEWS[0], required=True, key="filt_view",
                            label_visibility="collapsed")

# ----------------------------------------------------------------------------- conv1

if view == "conv1 kernels":
    left, right = st.columns([3, 2])
    animate = len(ckpts) > 1 and left.toggle(
        "▶ Watch them form, epoch by epoch", key="filt_animate",
        help="Adds a play button and an epoch slider to the mosaic (every epoch's kernels are sent to the browser).")
    left.plotly_chart(cache.kernel_mosaic_figure(run_dir, epoch, animate), width="stretch", key="filt_kernels")
    with right:
        kind = st.radio("Kernel drift", ["from_previous", "from_first"], horizontal=True, key="filt_drift_kind",
                        format_func=lambda k: {"from_previous": "since the previous epoch",
                                               "from_first": "since the first epoch"}[k])
        if len(ckpts) < 2:
            st.info("Drift needs at least two checkpoints; this run has one.")
        else:
            drift = cache.kernel_drift(run_dir, "conv1").dropna(subset=[kind])
            # every kernel's line in one trace, separated by gaps (one trace draws much faster than 32)
            x, y, who = maps.lines_with_gaps(drift, "kernel", "epoch", kind)
            fig = go.Figure(go.Scatter(x=x, y=y, customdata=who, mode="lines", name="each kernel", connectgaps=False,
                                       line=dict(width=1, color="rgba(76,110,245,0.35)"), showlegend=False,
                                       hovertemplate="kernel %{customdata}<br>epoch %{x}<br>"
                                                     "distance %{y:.4f}<extra></extra>"))
            mean = mean_drift(drift, kind)
            fig.add_trace(go.Scatter(x=mean.index, y=mean.values, mode="lines+markers", name="mean of the 32 kernels",
                                     line=dict(width=3, color="#E8590C")))
            fig.add_vline(x=epoch, line=dict(color="#868E96", dash="dot"))
            fig.update_layout(height=380, margin=dict(l=4, r=4, t=10, b=4),
                              xaxis=dict(title="epoch", tickmode="array", tickvals=sorted(drift["epoch"].unique()),
                                         range=[min(drift["epoch"]) - 0.3, max(drift["epoch"]) + 0.3]),
                              yaxis_title="L2 distance of the kernel's weights",
                              legend=dict(orientation="h", x=1, xanchor="right", y=-0.18, yanchor="top"))
            fig.update_layout(margin=dict(b=70))
            st.plotly_chart(fig, width="stretch", key="filt_drift")
    words = cache.kernel_descriptions(run_dir, epoch)
    st.markdown(f"**What each conv1 kernel responds to** (epoch {epoch}, read from its weights: the template it "
                "correlates best with, r = 1 for the same pattern; below r = 0.6 it is *mixed*)")
    # a plain table: 32 short rows need no scrolling grid (st.dataframe costs the browser ~0.25 s per switch)
    with st.container(height=420):
        st.table(words.assign(r=[f"{r:.2f}" for r in words["r"]],
                              weights=[f"{lo:.3f} … {hi:.3f}" for lo, hi in zip(words["low"], words["high"])])
                 [["kernel", "responds_to", "r", "weights"]]
                 .rename(columns={"responds_to": "responds to", "r": "match r",
                                  "weights": "weight range (min … max)"}).set_index("kernel"))

# ----------------------------------------------------------------------------- conv2

elif view == "conv2 kernels":
    summary = cache.conv2_kernel_summary(run_dir, epoch)                    # (64,3,3)
    a, b = st.columns([3, 2])
    a.plotly_chart(maps.mosaic_figure(summary, 8, f"conv2: 64 kernels, mean |weight| over their 32 input channels · "
                                      f"epoch {epoch}", height=520, unit="kernel", what="mean |weight|"),
                   width="stretch", key="filt_conv2")
    with b:
        channel = int(st.number_input("conv2 kernel (= channel)", 0, len(summary) - 1, 0, key="filt_channel",
                                      help="Kernel k computes channel k."))
        n_images = st.selectbox("Search the first … test examples", [1000, 2000, 10000], index=1, key="filt_topn")
        am_steps = st.selectbox("Activation-maximization steps", [50, 100, 200], index=1, key="filt_am_steps")
        b.plotly_chart(maps.numbers_figure(summary[channel], f"kernel {channel}: mean |weight| (3×3)", signed=False),
                       width="stretch", key="filt_channel_kernel")
    idx, scores = cache.top_activating(run_dir, epoch, "conv2", channel, 9, n_images)
    st.markdown(f"**The 9 test examples that excite conv2 channel {channel} most** (score: the largest unit of "
                "the channel after the ReLU)")
    ui.digit_grid(cache.official_images("test", idx), [f"test #{i} · {s:.2f}" for i, s in zip(idx, scores)],
                  columns=9, size=76)
    am = cache.activation_maximization(run_dir, epoch, "conv2", channel, am_steps)
    c1, c2 = st.columns([1, 2])
    c1.plotly_chart(maps.image_figure(am, f"grown to excite conv2 channel {channel}"), width="stretch",
                    key="filt_actmax")
    c2.markdown("**Activation maximization** starts from a grey image and changes its pixels, step by step, "
                "to raise the channel's **centre unit** (with a little blur and a penalty on bright pixels "
                "to keep it smooth). That unit sees an 8×8 patch of the input, so the pattern it is tuned to "
                "(a stroke at an angle, an end, a curve) appears in the middle on a dark surround. Shown with "
                "its contrast stretched (darkest → black, brightest → white). Results are cached in the run folder.")
    if float(am.max() - am.min()) < 0.05:
        c2.caption("The image barely changed from grey: this channel hardly responds to any input at this epoch.")

# ----------------------------------------------------------------------------- walk-through

elif view == "Walk-through":
    w1, w2 = st.columns([1, 3])
    example = state.example_picker(sel, "filt", where=w1, epoch=epoch)
    w1.image(ui.digit(example.image, 112), caption=f"{example.name} · label {example.label}")
    w2.markdown(f"**{example.long_name}, epoch {epoch}.** Each figure is one stage of the forward pass, in order; "
                "its title gives the shape (channels×height×width) and each channel is numbered above it. Hover "
                "any cell for its value; **click a unit of a conv1 channel (②)** to compute it by hand below.")
    acts = walkthrough.render_walkthrough(run_dir, epoch, example.image, key="filt_walk", clickable=True)
    st.subheader(f"One conv1 unit of {example.name}, computed by hand")
    walkthrough.render_conv1_click(run_dir, epoch, example.image, acts, key="filt_conv",
                                   mosaic_key=walkthrough.mosaic_key("filt_walk"), name=example.name)

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
