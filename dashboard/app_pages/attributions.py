"""Attributions: which pixels pushed the CNN towards a class, by several methods, and how far to trust each map."""
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from analysis.attributions import BASELINES, METHOD_INFO, METHODS, MethodUnavailable
from analysis.examples import ORDERS, OUTCOMES, filter_examples
from dashboard import cache, maps, state, ui, why

DEFAULT_METHODS = ["saliency", "integrated_gradients", "gradcam"]
PREDICTED = -1            # the "explain the predicted class" choice of attr_target
EXAMPLE_CLASS = -1        # the "the example's true class" choice of attr_mean_class
MAPS_PER_ROW = 3

sel = state.current()
st.title("🔥 Attributions")
ui.intro(
    "Pick one digit and ask: which pixels pushed the network towards its answer, or towards any other "
    "class (\"why not 7?\")? Several attribution methods answer side by side, each with the figures "
    "that say how far to trust its map.",
    """
- **Colours** (the same on every map of this app): *signed* methods show evidence **for** the class in
  **red** and **against** it in **blue**, white = no effect, centred at 0. *Magnitude* methods (Saliency,
  SmoothGrad, Grad-CAM) only say *how much* a pixel matters: white → red. Each map has its own scale.
- The thin grey line is the outline of the digit (toggle it off to see the map alone).
- **Explain class**: by default the predicted class. Pick another class to see what speaks for and against
  it; *All ten classes* shows every class at once on one shared scale.
- **Trust figures** under each map (they follow once every map is drawn; the button under them opens the
  per-layer sanity curve and the deletion curves at full size):
  *convergence delta* (Integrated Gradients, DeepLift): the map should add up to the change of the class
  score from the baseline to the input; the delta is the shortfall, near 0 is good.
  *Sanity check* (Adebayo et al. 2018): the network's layers are replaced by random ones from the top; a
  map that hardly changes does not explain the model (**fails**).
  *Deletion*: the most important pixels are blacked out first; a faithful map makes the class probability
  fall faster (lower area under the curve, AUC) than blacking out pixels in random order.
- Guided Backprop and Guided Grad-CAM look sharp but are known to fail the sanity check: read them as
  pictures of the input's edges, not of the model's reasoning.
- **Methods this model cannot run** are marked *(unavailable)* and say why instead of drawing a map:
  DeepLift, Guided Backprop, Deconvolution and Guided Grad-CAM hook the non-linearity *modules*, and would
  silently miss a non-linearity the model's code calls as a function.
- **Class means** average one method's map over many test images of a class; **Compare epochs** shows the
  same example at two epochs; **Fragility** nudges every pixel a little (FGSM) until the answer flips.
- **Training images behind this** (TracIn): the training images that pushed this answer towards or away from
  a class, and the images the model could not fit. **Smallest change**: the least the pixels must change for
  the model to answer another class. Each view says how to read it and what it cannot tell.
""")

ui.require_run(sel)
run_dir = sel.run_dir
ckpts = cache.checkpoint_epochs(run_dir)
pred_epochs = cache.prediction_epochs(run_dir)
if not ckpts or not pred_epochs:
    missing = " and ".join(w for w, have in (("checkpoints", ckpts), ("saved predictions", pred_epochs)) if not have)
    st.info(f"This run has no {missing} yet, so there is nothing to explain. Attributions need the weights "
            "of an epoch (`checkpoints/`) and its predictions (`predictions/`).")
    st.stop()
epoch = sel.epoch if sel.epoch in ckpts else ckpts[-1]
if epoch != sel.epoch:
    st.info(f"Epoch {sel.epoch} has no checkpoint; showing epoch {epoch}.")
pred_epoch = epoch if epoch in pred_epochs else pred_epochs[-1]


def name(method: str) -> str:
    return METHOD_INFO[method].name


found = cache.layers(run_dir, epoch)                               # the model's own layers
layer_labels = cache.layer_labels(run_dir, epoch)
UNAVAILABLE = {m: why for m, why in cache.available_methods(run_dir, epoch).items() if why}


def listed_name(method: str) -> str:
    """A method's name in the pickers, marked when this model cannot run it."""
    return name(method) + (" (unavailable)" if method in UNAVAILABLE else "")


def unavailable_note(method: str, where=st) -> bool:
    """Say why `method` cannot run on this model (instead of a map); True when it cannot."""
    if method not in UNAVAILABLE:
        return False
    where.info(unavailable_text(method, UNAVAILABLE[method]))
    return True


def unavailable_text(method: str, reason: str) -> str:
    """The info line of a method the model cannot run: "**DeepLift is unavailable for this model:** <why>"."""
    lead = f"{name(method)} is unavailable for this model:"
    return f"🚫 **{lead}** {reason.removeprefix(lead).strip()}"


# ----------------------------------------------------------------------------- the example

c1, c2 = st.columns([1, 3])
ex = state.example_picker(sel, "attr", where=c1, epoch=pred_epoch)     # the example every page shares
split = ex.split
probs, labels, _ = cache.split_predictions(run_dir, pred_epoch, split)

# built only while open (on_change="rerun" makes `.open` known): its grid of digits and its list of up to
# 500 matches cost time on every rerun; its filters start again from "any" when it is reopened
finder = c2.expander("Find an example: by class, outcome or confidence", key="attr_find", on_change="rerun")
if finder.open:
    with finder:
        f1, f2, f3, f4 = st.columns(4)
        want_true = f1.selectbox("True class", ["any", *range(10)], key="attr_f_true")
        want_pred = f2.selectbox("Predicted class", ["any", *range(10)], key="attr_f_pred")
        outcome = f3.selectbox("Outcome", list(OUTCOMES), key="attr_f_outcome")
        order = f4.selectbox("Order", list(ORDERS), key="attr_f_order")
        candidates = filter_examples(probs, labels, None if want_true == "any" else want_true,
                                     None if want_pred == "any" else want_pred, outcome, order)
        predicted = probs.argmax(1)
        if not len(candidates):
            st.caption("No example matches these filters.")
        else:
            st.caption(f"{len(candidates)} matching examples (predictions of epoch {pred_epoch}).")
            first = candidates[:8]
            ui.digit_grid(list(cache.split_images(run_dir, split, first)),
                          [f"{split} #{i}: {labels[i]}→{predicted[i]} ({probs[i].max():.2f})" for i in first],
                          columns=8, size=56)
            # the labels name the example and its prediction at this epoch: the key carries everything they
            # depend on, so a stored choice is never read back under another epoch's or filter's labels
            choice_key = f"attr_f_choice_{split}_{pred_epoch}_{want_true}_{want_pred}_{outcome}_{order}"
            pick = st.selectbox("Matches", [int(i) for i in candidates[:500]], key=choice_key,
                                format_func=lambda i: f"{split} #{i}: true {labels[i]} → predicted {predicted[i]} "
                                                      f"({probs[i].max():.0%})")
            st.button("Show this example", key="attr_f_go", on_click=state.set_example, args=(split, pick))

image_u8 = ex.image                                                        # (28,28) uint8
image = cache.as_float_image(image_u8)
acts = cache.activations(run_dir, epoch, image)
model_probs = acts["softmax"]
pred = int(np.argmax(model_probs))
true = ex.label

h1, h2, h3 = st.columns([1, 1, 3])
h1.image(ui.digit(image_u8, 140), caption=ex.long_name)
h2.metric("True label", true)
h2.metric(f"Predicted (epoch {epoch})", pred)
h2.caption(f"confidence {model_probs[pred]:.1%}")
h3.plotly_chart(maps.probability_bars(model_probs, f"{ex.name}: class probabilities", pred, height=220),
                width="stretch", key="attr_probs")
if pred != true:
    h2.caption("❌ a mistake")

# ----------------------------------------------------------------------------- controls

k1, k2, k3, k4 = st.columns([3, 1.4, 1, 1])
methods = k1.multiselect("Methods", list(METHODS), default=[m for m in DEFAULT_METHODS if m not in UNAVAILABLE],
                         key="attr_methods", format_func=listed_name,
                         help="Methods marked (unavailable) cannot run on this model; picking one says why.")
# Labels never depend on the example: Streamlit keeps a select widget's value as its label, so a label that
# changed with the example ("predicted (7)") would no longer match when the example changes.
target_choice = k2.selectbox("Explain class", [PREDICTED, *range(10)], key="attr_target",
                             format_func=lambda c: "the predicted class" if c == PREDICTED else f"class {c}",
                             help="Why this class? Pick another class to ask \"why not 7?\".")
target = pred if target_choice == PREDICTED else int(target_choice)
k2.caption(f"Explaining **class {target}**" + (" (the prediction)" if target == pred else f"; predicted {pred}"))
overlay = k3.toggle("Digit outline", value=True, key="attr_overlay")
trust_on = k4.toggle("Trust checks", value=True, key="attr_trust",
                     help="Sanity check and deletion curve under each map: a few seconds the first time, "
                          "after the maps.")

with st.expander("Method settings"):
    s1, s2, s3, s4 = st.columns(4)
    s1.markdown("**Integrated Gradients / DeepLift**")
    ig_steps = s1.slider("IG steps", 4, 200, 50, key="attr_ig_steps",
                         help="Points on the path from the baseline to the input (more = smaller delta).")
    baseline = s1.selectbox("Baseline", list(BASELINES), key="attr_ig_baseline",
                            help="The 'absence of a digit' the input is compared with.")
    s2.markdown("**SmoothGrad / GradientSHAP**")
    sg_noise = s2.slider("Noise (std)", 0.0, 0.5, 0.15, 0.01, key="attr_sg_noise")
    sg_samples = s2.slider("Samples", 2, 100, 25, key="attr_sg_samples")
    s3.markdown("**Occlusion**")
    occ_window = s3.slider("Window (px)", 1, 14, 4, key="attr_occ_window")
    occ_stride = s3.slider("Stride (px)", 1, 7, 2, key="attr_occ_stride")
    s4.markdown("**Grad-CAM / Guided Grad-CAM**")
    if st.session_state.get("attr_cam_layer") not in found.convs:       # another model's layer, or none yet
        st.session_state.pop("attr_cam_layer", None)
    if found.convs:
        cam_layer = s4.selectbox("Layer", list(found.convs), index=len(found.convs) - 1, key="attr_cam_layer",
                                 format_func=lambda n: layer_labels.get(n, n),
                                 help="The model's conv layers in forward order. The last one (the default) is "
                                      "coarse but more semantic; earlier ones are finer.")
    else:
        cam_layer = None
        s4.caption("This network has no conv layer: Grad-CAM has no feature map to weigh.")

SETTINGS = {
    "integrated_gradients": {"steps": ig_steps, "baseline": baseline},
    "deeplift": {"baseline": baseline},
    "smoothgrad": {"noise_std": sg_noise, "samples": sg_samples},
    "gradient_shap": {"noise_std": sg_noise, "samples": sg_samples},
    "occlusion": {"window": occ_window, "stride": occ_stride},
    "gradcam": {"layer": cam_layer},
    "guided_gradcam": {"layer": cam_layer},
}


def options(method: str) -> dict:
    return SETTINGS.get(method, {})


def sanity_warning(method: str) -> None:
    if METHOD_INFO[method].fails_sanity:
        st.warning(f"⚠️ **{name(method)} is known to fail the sanity check** (Adebayo et al. 2018): over many "
                   "images its map barely changes when the network's weights are replaced by random ones (the "
                   "check on this one image may still pass). It mostly shows the edges of the input, not what "
                   "this model learned: do not read it as the model's reasoning.")


SANITY_COLUMNS = {"spearman": "rank correlation of |map|", "spearman_signed": "rank correlation of the signed map",
                  "ssim": "SSIM of |map|"}   # drawn when analysis.trust's table has them


def trust_curves(table: pd.DataFrame, deletion: pd.DataFrame) -> go.Figure:
    """The sanity curve (similarity per randomized layer) and the deletion curves, side by side."""
    from plotly.subplots import make_subplots
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12,
                        subplot_titles=["Sanity: similarity to the original map",
                                        f"Deletion: probability of class {target}"])
    for col, label in SANITY_COLUMNS.items():
        if col in table:
            fig.add_trace(go.Scatter(x=table["randomized"], y=table[col], mode="lines+markers", name=label), 1, 1)
    for col, label, dash in (("deletion", "most important pixels first", "solid"),
                             ("random_deletion", "random order", "dash"), ("insertion", "insertion", "dot")):
        fig.add_trace(go.Scatter(x=deletion["fraction"], y=deletion[col], mode="lines", name=label,
                                 line=dict(dash=dash)), 1, 2)
    fig.update_xaxes(title_text="layers randomized (top first)", automargin=True, row=1, col=1)
    fig.update_yaxes(title_text="similarity", range=[-1.05, 1.05], automargin=True, row=1, col=1)
    fig.update_xaxes(title_text="share of pixels removed", tickformat=".0%", automargin=True, row=1, col=2)
    fig.update_yaxes(title_text="probability", range=[-0.02, 1.02], automargin=True, row=1, col=2)
    fig.update_annotations(font_size=14)
    fig.update_layout(height=440, margin=dict(l=70, r=30, t=60, b=130),
                      legend=dict(orientation="h", x=0, y=-0.3, yanchor="top"))
    return fig


@st.dialog("Per-layer sanity curve and deletion curves", width="large")
def trust_details(method: str) -> None:
    """The trust figures of one map at full size (opened from the button under the map)."""
    table, _, sentence = cache.sanity_check(run_dir, epoch, image, method, target, options(method))
    deletion, summary = cache.deletion_check(run_dir, epoch, image, method, target, options(method))
    st.markdown(f"**{name(method)} → class {target}** · {ex.name} · epoch {epoch}")
    st.plotly_chart(trust_curves(table, deletion), width="stretch", key=f"attr_curves_{method}")
    st.caption(sentence)
    shown = [c for c in ("stage", "randomized", *SANITY_COLUMNS, "ssim_min") if c in table]
    headers = {"spearman": "ρ of |map|", "spearman_signed": "ρ of signed map", "ssim": "SSIM",
               "ssim_min": "lowest SSIM"}
    config = {"stage": st.column_config.NumberColumn("stage", width="small"),
              "randomized": st.column_config.TextColumn("layers randomized", width="medium"),
              **{c: st.column_config.NumberColumn(h, format="%.3f", width="small", help=SANITY_COLUMNS.get(c, h))
                 for c, h in headers.items()}}
    st.dataframe(table[shown], hide_index=True, width="stretch", column_config=config, key=f"attr_sanity_{method}")
    st.caption(f"Deletion AUC {summary['deletion_auc']:.3f}, random order {summary['random_deletion_auc']:.3f}, "
               f"insertion AUC {summary['insertion_auc']:.3f}.")


def render_trust(method: str, delta: float | None) -> None:
    """The trust figures under one map: convergence delta, sanity check, deletion AUC vs random."""
    lines = []
    if delta is not None:
        lines.append(f"**Convergence delta** {delta:+.4f} (0 = the map accounts for the whole score change)")
    table, passed, sentence = cache.sanity_check(run_dir, epoch, image, method, target, options(method))
    lines.append(f"**Sanity check**: {'✅ passes' if passed else '❌ fails'}")
    deletion, summary = cache.deletion_check(run_dir, epoch, image, method, target, options(method))
    better = "✅ faster than random" if summary["better_than_random"] else "❌ not faster than random"
    lines.append(f"**Deletion AUC** {summary['deletion_auc']:.3f} vs random order "
                 f"{summary['random_deletion_auc']:.3f}: {better}")
    st.markdown("  \n".join(lines))
    st.caption(sentence)
    if st.button("Per-layer sanity curve and deletion curves", key=f"attr_details_{method}", width="stretch"):
        trust_details(method)


def constant_note(attr: np.ndarray, where=st) -> None:
    """Under a map: say so when it is constant (a blank map would otherwise look like 'no data')."""
    constant = maps.constant_value(attr)
    if constant is not None:
        where.caption(f"⚠️ This map is constant (all {constant:.3g}): no pixel matters more than another "
                      "for this class by this method.")


def render_map(method: str, column, key: str):
    """Draw one map under its column; return (the empty slot for its trust figures, its convergence delta), or
    None when the method cannot run on this model (the reason is shown instead)."""
    with column:
        if unavailable_note(method):
            return None
        try:
            attr, delta = cache.attribution(run_dir, epoch, image, method, target, options(method))
        except MethodUnavailable as e:
            st.info(unavailable_text(method, str(e)))
            return None
        info = METHOD_INFO[method]
        st.plotly_chart(cache.attribution_map_figure(run_dir, epoch, image, method, target, options(method),
                                                     f"{info.name} → class {target}", overlay),
                        width="stretch", key=key)
        constant_note(attr)
        st.caption(f"{'signed' if info.signed else 'magnitude'} · {info.explanation}")
        sanity_warning(method)
        slot = st.empty()
        if trust_on:
            slot.caption("⏳ Trust figures follow once every map is drawn.")
    return slot, delta


# ----------------------------------------------------------------------------- the views

VIEWS = ["Maps", "All ten classes", "Class means", "Compare epochs", "Fragility", "Training images behind this",
         "Smallest change"]
# The views' method lists always hold every method (a list that followed the Methods box would lose a
# choice when its method is removed there); they start at the first chosen method.
first_method = list(METHODS).index(methods[0]) if methods else 0
# a segmented control, not st.tabs: tabs build every hidden view on every rerun; this builds only the chosen one
view = st.segmented_control("View", VIEWS, default=VIEWS[0], required=True, key="attr_view",
                            label_visibility="collapsed")

if view == "Maps":
    if not methods:
        st.info("Pick at least one method above.")
    # two passes: every map first (fast), then the trust figures under each (the slow sanity and deletion
    # checks), so the maps are on screen while the checks run
    slots = {}
    for start in range(0, len(methods), MAPS_PER_ROW):
        cols = st.columns(MAPS_PER_ROW)
        for col, method in zip(cols, methods[start:start + MAPS_PER_ROW]):
            drawn = render_map(method, col, f"attr_map_{method}")
            if drawn is not None:
                slots[method] = drawn
    if trust_on:
        for method, (slot, delta) in slots.items():
            with slot.container():
                render_trust(method, delta)

elif view == "All ten classes":
    all_method = st.selectbox("Method", list(METHODS), index=first_method, key="attr_all_method",
                              format_func=listed_name)
    if unavailable_note(all_method):
        st.stop()
    all_maps = cache.all_class_attributions(run_dir, epoch, image, all_method, options(all_method))
    titles = [f"{'▶ ' if c == pred else ''}{c} · p={model_probs[c]:.2f}" for c in range(10)]
    st.plotly_chart(maps.maps_grid(all_maps, titles, METHOD_INFO[all_method].signed, cols=5,
                                   digit=image if overlay else None), width="stretch", key="attr_all_grid")
    st.caption(f"{name(all_method)} towards each class, on one shared colour scale; ▶ marks the prediction.")
    sanity_warning(all_method)

elif view == "Class means":
    st.markdown("The average map of one method over the first *N* test images of a class, explained towards "
                "that class, next to the class's mean image. Results are cached in the run folder.")
    m1, m2, m3 = st.columns(3)
    mean_choice = m1.selectbox("Class", [EXAMPLE_CLASS, *range(10)], key="attr_mean_class",
                               format_func=lambda c: "the example's true class" if c == EXAMPLE_CLASS else f"class {c}")
    mean_class = true if mean_choice == EXAMPLE_CLASS else int(mean_choice)
    m1.caption(f"class {mean_class}" + (f" (the true class of {ex.name})" if mean_choice == EXAMPLE_CLASS else ""))
    mean_method = m2.selectbox("Method", list(METHODS), index=first_method, key="attr_mean_method",
                               format_func=listed_name)
    if unavailable_note(mean_method):
        st.stop()
    mean_n = m3.slider("Images (N)", 5, 500, 50, 5, key="attr_mean_n")
    if st.toggle("Compute the class mean", key="attr_mean_on",
                 help="Runs the method on N images the first time (seconds to a minute); then it is cached."):
        mean_map = cache.class_mean_attribution(run_dir, epoch, mean_class, mean_method, mean_n,
                                                options(mean_method))
        mean_image = cache.class_mean_images()[mean_class]
        a, b = st.columns(2)
        a.plotly_chart(maps.image_figure(mean_image / 255.0, f"mean image of class {mean_class} (training set)"),
                       width="stretch", key="attr_mean_image")
        b.plotly_chart(maps.attribution_figure(mean_map, METHOD_INFO[mean_method].signed,
                                               f"mean {name(mean_method)} map · N={mean_n}",
                                               mean_image if overlay else None),
                       width="stretch", key="attr_mean_map")
        sanity_warning(mean_method)

elif view == "Compare epochs":
    e1, e2, e3 = st.columns(3)
    epoch_a = e1.selectbox("Epoch A", ckpts, index=0, key="attr_cmp_a")
    epoch_b = e2.selectbox("Epoch B", ckpts, index=ckpts.index(epoch), key="attr_cmp_b")
    cmp_method = e3.selectbox("Method", list(METHODS), index=first_method, key="attr_cmp_method",
                              format_func=listed_name)
    if unavailable_note(cmp_method):
        st.stop()
    cols = st.columns(2)
    for col, e, tag in zip(cols, (epoch_a, epoch_b), "ab"):
        p = cache.activations(run_dir, e, image)["softmax"]
        attr, _ = cache.attribution(run_dir, e, image, cmp_method, target, options(cmp_method))
        col.plotly_chart(maps.attribution_figure(attr, METHOD_INFO[cmp_method].signed,
                                                 f"epoch {e}: {name(cmp_method)} → class {target}",
                                                 image if overlay else None),
                         width="stretch", key=f"attr_cmp_map_{tag}")
        constant_note(attr, col)
        col.markdown(f"Epoch {e} predicts **{int(np.argmax(p))}** ({p.max():.1%}); "
                     f"p(class {target}) = {p[target]:.1%}")
    st.caption("Each map has its own colour scale: compare where the evidence lies, not its size.")
    sanity_warning(cmp_method)

elif view == "Fragility":
    st.markdown("The Fast Gradient Sign Method (FGSM) moves every pixel by ε in the direction that most "
                f"lowers the network's confidence in its answer ({pred}).")
    g1, g2 = st.columns([2, 1])
    eps = g1.slider("ε (change per pixel, on a 0–1 scale)", 0.0, 0.5, 0.1, 0.01, key="attr_eps")
    frag_method = g2.selectbox("Map", list(METHODS), index=first_method, key="attr_frag_method",
                               format_func=listed_name)
    adv = cache.fgsm_image(run_dir, epoch, image, pred, eps)
    adv_probs = cache.activations(run_dir, epoch, adv)["softmax"]
    adv_pred = int(np.argmax(adv_probs))
    flip = cache.min_flip_epsilon(run_dir, epoch, image, pred)
    r1, r2, r3 = st.columns(3)
    r1.metric("Prediction after FGSM", adv_pred)
    r1.caption(f"confidence {adv_probs[adv_pred]:.1%}")
    r2.metric("Was", pred)
    r2.caption(f"confidence {model_probs[pred]:.1%}")
    r3.metric("Smallest flipping ε", "> 0.5" if flip is None else f"{flip:.3f}",
              help="The smallest FGSM step that changes the prediction (bisection up to 0.5).")
    if adv_pred != pred:
        st.markdown(f"At ε = {eps:.2f} the prediction **flips from {pred} to {adv_pred}**.")
    a, b, c = st.columns(3)
    a.plotly_chart(maps.image_figure(adv, f"perturbed image (ε={eps:.2f})"), width="stretch", key="attr_adv_img")
    b.plotly_chart(maps.probability_bars(adv_probs, "probabilities after FGSM", adv_pred), width="stretch",
                   key="attr_adv_probs")
    c.plotly_chart(maps.attribution_figure(adv - image, True, "the change (perturbed − original)"),
                   width="stretch", key="attr_adv_diff")
    if unavailable_note(frag_method):
        st.stop()
    signed = METHOD_INFO[frag_method].signed
    before, _ = cache.attribution(run_dir, epoch, image, frag_method, pred, options(frag_method))
    after, _ = cache.attribution(run_dir, epoch, adv, frag_method, pred, options(frag_method))
    d1, d2 = st.columns(2)
    d1.plotly_chart(maps.attribution_figure(before, signed, f"{name(frag_method)} → {pred}, original",
                                            image if overlay else None), width="stretch", key="attr_frag_before")
    d2.plotly_chart(maps.attribution_figure(after, signed, f"{name(frag_method)} → {pred}, perturbed",
                                            image if overlay else None), width="stretch", key="attr_frag_after")
    constant_note(before, d1)
    constant_note(after, d2)
    sanity_warning(frag_method)

elif view == "Training images behind this":
    why.render_influence(run_dir, epoch, image, pred, "attr_inf")

elif view == "Smallest change":
    why.render_smallest_change(run_dir, epoch, image, model_probs, true, "attr_cf")
