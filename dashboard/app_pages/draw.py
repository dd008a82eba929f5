"""Draw a digit: the CNN reads a drawing or an uploaded picture, after MNIST-style preprocessing, step by step.

The canvas is streamlit-drawable-canvas 0.13, a components-v2 component: it is drawn in the page itself, not
in an iframe (Fabric.js stacks 280x280 <canvas> elements; mouse events land on the top one). Once something
is drawn or uploaded, the page shows the stable text "Prediction: <digit>"; before that, "Draw a digit".
"""
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from PIL import Image
from streamlit_drawable_canvas import st_canvas

from analysis.preprocess import PreprocessError, preprocess
from dashboard import cache, maps, state, ui, walkthrough, why

CANVAS = 280            # canvas side in pixels (10x MNIST)
IG_STEPS = 32           # Integrated Gradients steps for the live overlay
STEP_TITLES = {"grayscale": "grayscale", "inverted": "inverted (light background)",
               "cropped": "cropped to the ink", "scaled": "longer side 20 px",
               "centred": "centred by mass"}   # numbered on the page, in the order shown
THUMB = 140             # every preprocessing thumbnail is shown in a THUMB x THUMB box

sel = state.current()
st.title("✏️ Draw a digit")
ui.intro(
    "Draw a digit (or upload a photo of one) and watch the network read it: first the picture is made to look "
    "like an MNIST digit, then every layer does its part and the ten class probabilities come out.",
    """
- **Preprocessing** repeats what MNIST's authors did to every digit: grayscale; invert if the background
  is light (MNIST is white ink on black); crop to the ink; scale the longer side to 20 pixels; place it in
  a 28×28 field so that its centre of mass is in the middle. The last picture is exactly what the model sees.
  A digit that looks unlike MNIST after these steps (very thin strokes, touching the border) is read worse.
- **The predicted class** is the one with the highest probability; the bars show all ten.
- **Saliency** (white → red: how much each pixel matters) and **Integrated Gradients** (red for, blue against
  the predicted class) show which strokes the answer rests on.
- **Model epoch**: the same drawing read by the model as it was after an earlier epoch.
- **What would make this a 4?** The smallest change to your drawing that makes the model answer another class
  (red: ink added, blue: ink removed): one of many small changes, not what a person would draw.
- The **walk-through** shows your digit passing through every layer; click a pixel of the first conv layer
  (conv1 in our network) to see the
  multiply-and-sum behind it.
""")

ckpts = ui.require_checkpoints(sel, "there is no model to read a drawing with")
run_dir = sel.run_dir

# the page's own epoch: follows the sidebar, but can be moved back to see how an earlier model reads it
sidebar_epoch = sel.epoch if sel.epoch in ckpts else ckpts[-1]
if st.session_state.get("_draw_sidebar_epoch") != sidebar_epoch or st.session_state.get("draw_epoch") not in ckpts:
    st.session_state["_draw_sidebar_epoch"] = sidebar_epoch
    st.session_state["draw_epoch"] = sidebar_epoch
st.session_state.setdefault("draw_canvas_n", 0)


def clear_canvas() -> None:
    st.session_state["draw_canvas_n"] += 1     # a new key mounts a fresh, empty canvas


def thumbnail(image: np.ndarray, side: int = THUMB) -> Image.Image:
    """A preprocessing step fitted into a side x side square (light grey margins: every thumbnail the same size)."""
    img = Image.fromarray(np.asarray(image, dtype=np.uint8))
    scale = side / max(img.size)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    img = img.resize(size, Image.NEAREST if scale > 1 else Image.LANCZOS)
    box = Image.new("L", (side, side), 233)                 # light grey (#E9E9E9): not part of the picture
    box.paste(img, ((side - img.width) // 2, (side - img.height) // 2))
    return box


def read_input() -> tuple[bytes | None, str]:
    """The picture to read, as file bytes (None: nothing yet), and where it came from ("draw" or "upload")."""
    source = st.radio("Input", ["draw", "upload"], horizontal=True, key="draw_source",
                      format_func=lambda s: {"draw": "✏️ Draw", "upload": "📁 Upload an image"}[s])
    if source == "upload":
        up = st.file_uploader("A PNG, JPEG or GIF of one digit (up to 10 MB and 4096 pixels a side; "
                              "dark on light or light on dark)",
                              type=["png", "jpg", "jpeg", "gif"], key="draw_upload")
        return (up.getvalue() if up is not None else None), source
    stroke = st.slider("Stroke width", 8, 40, 22, key="draw_stroke")
    result = st_canvas(stroke_width=stroke, stroke_color="#FFFFFF", background_color="#000000",
                       width=CANVAS, height=CANVAS, drawing_mode="freedraw", return_image_data=True,
                       key=f"draw_canvas_{st.session_state['draw_canvas_n']}")
    st.button("🧽 Clear", key="draw_clear", on_click=clear_canvas)
    objects = (result.json_data or {}).get("objects") or []
    return (result.image_bytes if objects else None), source


left, right = st.columns([1, 2])
with left:
    data, source = read_input()
    if len(ckpts) > 1:
        epoch = st.select_slider("Model epoch", ckpts, key="draw_epoch",
                                 help="Read the drawing with the model as it was after this epoch.")
    else:
        epoch = ckpts[0]

pre = None
with right:
    if data is None:
        st.info("✏️ **Draw a digit** on the black square (or upload a picture): the network's answer appears here.")
    else:
        try:
            pre = preprocess(data)
        except PreprocessError as e:
            if source == "draw":   # a canvas with strokes but no ink that stands out
                st.info("✏️ **Draw a digit**: the strokes are too faint to find a digit.")
            else:
                st.error(f"**This file cannot be read as a digit:** {e}")
    if pre is not None:
        acts = cache.activations(run_dir, epoch, pre.image)
        probs = acts["softmax"]
        pred = int(np.argmax(probs))
        p1, p2 = st.columns([1, 2])
        with p1:
            st.markdown(f"### Prediction: {pred}")
            st.metric("Confidence", f"{probs[pred]:.1%}", help=f"Model after epoch {epoch}.")
            st.image(ui.digit(pre.image, 140), caption="what the model sees (28×28)")
        p2.plotly_chart(maps.probability_bars(probs, f"class probabilities · epoch {epoch}", pred, height=300),
                        width="stretch", key="draw_probs")

if pre is not None:
    st.subheader("Preprocessing, step by step")
    cols = st.columns(len(pre.steps))
    for number, (col, (step, img)) in enumerate(zip(cols, pre.steps.items()), start=1):
        col.image(thumbnail(img), width=THUMB,
                  caption=f"{number} · {STEP_TITLES.get(step, step)} · {img.shape[1]}×{img.shape[0]}")
    if pre.notes:
        st.caption("; ".join(pre.notes))

    st.subheader(f"Which strokes the answer {pred} rests on")
    a, b = st.columns(2)
    sal, _ = cache.attribution(run_dir, epoch, pre.image, "saliency", pred)
    ig, delta = cache.attribution(run_dir, epoch, pre.image, "integrated_gradients", pred, {"steps": IG_STEPS})
    a.plotly_chart(maps.attribution_figure(sal, False, f"Saliency → {pred}", pre.image), width="stretch",
                   key="draw_saliency")
    b.plotly_chart(maps.attribution_figure(ig, True, f"Integrated Gradients → {pred}", pre.image), width="stretch",
                   key="draw_ig")
    b.caption(f"Convergence delta {delta:+.4f} (near 0: the map accounts for the whole score change).")

    st.subheader("What would make this another digit?")
    if st.toggle("Find the smallest change to another class", key="draw_cf_on",
                 help="A search of about a second: the least the pixels must change for the model to answer the "
                      "class you pick (default: the runner-up)."):
        why.render_smallest_change(run_dir, epoch, pre.image, probs, None, "draw_cf")

    if len(ckpts) > 1 and st.toggle("Read it with every epoch's model", key="draw_all_epochs",
                                    help="Loads every checkpoint once (a few seconds)."):
        rows = []
        for e in ckpts:
            pe = cache.activations(run_dir, e, pre.image)["softmax"]
            rows.append({"epoch": e, "prediction": int(np.argmax(pe)), "confidence": float(pe.max()),
                         f"p({pred})": float(pe[pred])})
        table = pd.DataFrame(rows)
        fig = go.Figure(go.Scatter(x=table["epoch"], y=table[f"p({pred})"], mode="lines+markers+text",
                                   text=table["prediction"].astype(str), textposition="top center",
                                   name=f"p({pred})"))
        fig.update_layout(height=280, margin=dict(l=4, r=4, t=30, b=4), xaxis_title="epoch",
                          yaxis_title=f"probability of {pred}", yaxis_range=[0, 1.1],
                          title=dict(text="labels: the prediction at each epoch", font=dict(size=13)))
        st.plotly_chart(fig, width="stretch", key="draw_epochs_chart")
        st.dataframe(table, hide_index=True)

    with st.expander("Layer-by-layer walk-through of this drawing", expanded=False):
        acts = walkthrough.render_walkthrough(run_dir, epoch, pre.image, key="draw_walk", clickable=True)
        convs = cache.layers(run_dir, epoch).convs
        if convs:
            first = walkthrough.display_name(cache.layers(run_dir, epoch).get(convs[0]).short)
            st.subheader(f"One {first} unit, computed by hand")
            st.caption(f"Click a unit of the {first} channels above to compute it here.")
        walkthrough.render_conv1_click(run_dir, epoch, pre.image, acts, key="draw_conv",
                                       mosaic_key=walkthrough.mosaic_key("draw_walk", convs[0]) if convs else None,
                                       name="your drawing")
