"""Confusion & errors: which digits the model mixes up, the examples behind each cell, and suspicious labels."""
import numpy as np
import streamlit as st

from analysis.errors import top_classes
from dashboard import cache, figures, state, ui, why
from model.runs import RunError

PAGE_SIZE = 24
NO_CELL = "—"

sel = state.current()
st.title("🧩 Confusion & errors")
ui.intro(
    "Which digits does the model mix up, and on which images? Click a cell of the confusion matrix to "
    "see exactly those examples, then open any of them on the Attributions page to see why.",
    """
- **Confusion matrix**: rows are the true digits, columns the predicted ones. The diagonal (right
  answers, in grey) is left out of the colour scale so that the errors stand out: the darker a cell,
  the more often that true digit was taken for that predicted one. *Row-normalized* shows each cell as
  a share of its true digit's examples.
- **Click a cell** (or pick it in the list under the matrix) to see its examples with the model's
  probabilities; *Explain* opens the example on the Attributions page.
- **Watch it form** replays the matrix epoch by epoch.
- **Per class**: precision = of the images predicted as this digit, the share that were; recall = of
  the images of this digit, the share found; F1 combines both. The three weakest classes are in red.
- **Most confident mistakes**: wrong answers given with the highest probability.
- **Suspicious labels**: examples where the model, over the last three epochs, always predicted the same
  *other* digit with at least 90% probability. Some are real model errors, some are badly written
  digits, and a few may be labelling mistakes in MNIST itself.
- **Label issues** ranks every example of a split by how likely its label is wrong (cleanlab, confident
  learning), with a CSV of the whole list; **What changed** compares this epoch with another epoch or run,
  example by example. Each says how to read it.
""")

ui.require_run(sel)
if st.session_state.get(why.DIFF_PRESET):      # the Overfitting page's link to a spike: open "What changed"
    st.session_state["conf_why"] = "What changed"
    st.session_state["conf_split"] = "val"
    why.apply_diff_preset("conf_diff")

run_dir = sel.run_dir
pred_epochs = cache.prediction_epochs(run_dir)
if not pred_epochs:
    st.info("**This run has no saved predictions** (`predictions/epoch_NNN.npz`), so there is no confusion "
            "matrix, error gallery or per-class table. Runs trained with `python -m model.train` save "
            "predictions after every epoch; the *Training curves* and *Overfitting* pages work from metrics alone.")
    st.stop()
if sel.epoch in pred_epochs:
    epoch = sel.epoch
else:   # no predictions for the sidebar's epoch (or no readable metrics): the closest earlier epoch that has them
    epoch = max([e for e in pred_epochs if sel.epoch is not None and e <= sel.epoch] or [pred_epochs[-1]])
    st.caption(f"Epoch {sel.epoch} has no saved predictions; showing epoch {epoch}." if sel.epoch is not None
               else f"Showing epoch {epoch}, the last with saved predictions.")

c1, c2 = st.columns(2)
val_is_test = cache.load_config(str(run_dir)).data.val_is_test
if val_is_test:      # seed protocol: validation and test are the same images, one view is enough
    split = "val"
    c1.markdown("**Set:** test = validation")
    c1.caption("This run validated on the test set (the seed notebook's protocol), so validation and test "
               "are the same images.")
else:
    split = c1.radio("Set", ["val", "test"], key="conf_split", horizontal=True,
                     format_func={"val": "validation", "test": "test"}.get)
normalize = c2.radio("Show", ["counts", "row-normalized"], key="conf_norm", horizontal=True) == "row-normalized"

try:
    probs, labels, _ = cache.split_predictions(run_dir, epoch, split)
except RunError as e:
    st.error(f"**The predictions of epoch {epoch} cannot be read:** `{e.path}`\n\n{e}\n\n"
             "Pick another epoch in the sidebar; the Training curves page still works.")
    st.stop()
pred = probs.argmax(1)
cm = cache.confusion(run_dir, epoch, split)


def explain_link(position: int) -> None:
    """A link to the Attributions page for one example of this split."""
    st.page_link("app_pages/attributions.py", label="Explain", icon="🔥",
                 query_params={"run": sel.run.run_id, "epoch": str(epoch), "index": str(position), "split": split})


def gallery(positions: np.ndarray, captions: list[str], columns: int = 8, links: bool = True) -> None:
    """Digit images of this split (by position in the predictions) with captions and Explain links."""
    if len(positions) == 0:
        st.caption("Nothing to show.")
        return
    try:
        imgs = cache.split_images(run_dir, split, positions)                     # (k,28,28)
    except RunError as e:
        st.error(f"**The images cannot be looked up:** `{e.path}` could not be read.\n\n{e}")
        return
    for start in range(0, len(positions), columns):
        row = slice(start, start + columns)
        for col, pos, img, cap in zip(st.columns(columns), positions[row], imgs[row], captions[row]):
            with col:
                st.image(ui.digit(img, 112), caption=cap)   # ≥ the column: all images equally wide
                if links:
                    explain_link(int(pos))


def top3(p: np.ndarray) -> str:
    """The three highest probabilities as compact tokens, "6:73% 0:15% 5:8%" (wraps only between tokens)."""
    classes, top = top_classes(p, 3)
    return " ".join(f"{c}:{q:.0%}" for c, q in zip(classes, top))


# ----------------------------------------------------------------------------- the matrix and its cells
cells = [f"{t},{p}" for t in range(10) for p in range(10)]


def cell_label(cell: str) -> str:
    if cell == NO_CELL:
        return "— pick a cell —"
    t, p = map(int, cell.split(","))
    # no counts in the label: Streamlit keeps the choice as its label, which must not change with the epoch
    return f"true {t} → predicted {p}{' (right)' if t == p else ''}"


def on_matrix_select() -> None:
    """A click on the matrix picks that cell in the `conf_cell` list (which drives the gallery)."""
    event = st.session_state.get("conf_matrix")
    points = event["selection"]["points"] if event else []
    if points:
        x, y = points[0].get("x"), points[0].get("y")
        if x is not None and y is not None:
            st.session_state["conf_cell"] = f"{int(round(y))},{int(round(x))}"
            st.session_state["conf_gallery_page"] = 1


left, right = st.columns([3, 2])
with left:
    set_name = "Test (= validation)" if val_is_test else "Validation" if split == "val" else "Test"
    fig = figures.confusion_figure(cm, normalize, title=f"{set_name} set, "
                                                       f"epoch {epoch}: {int(np.trace(cm))} of {int(cm.sum())} right")
    st.plotly_chart(fig, key="conf_matrix", on_select=on_matrix_select, selection_mode="points")
    if st.session_state.get("conf_cell") not in [NO_CELL, *cells]:
        st.session_state["conf_cell"] = NO_CELL
    cell = st.selectbox("Cell (true → predicted)", [NO_CELL, *cells], key="conf_cell", format_func=cell_label,
                        help="The same as clicking a cell of the matrix.")
with right:
    st.markdown("**Most confused pairs**")
    pairs = cache.top_confusions(run_dir, epoch, split, 10)
    # plain tables on this page: a scrolling data grid costs the browser ~0.3 s on every visit
    st.table(pairs.rename(columns={"true": "true digit", "predicted": "predicted as", "count": "examples",
                                   "share": "share of the true digit"})
             .style.hide(axis="index").format({"share of the true digit": "{:.1%}"}))

if cell != NO_CELL:
    t, p = map(int, cell.split(","))
    where = cache.cell_examples(run_dir, epoch, split, t, p)         # most confident first
    st.subheader(f"True {t}, predicted {p}: {len(where)} example{'s' if len(where) != 1 else ''}")
    if len(where):
        pages = max(1, -(-len(where) // PAGE_SIZE))
        if not 1 <= st.session_state.get("conf_gallery_page", 1) <= pages:   # another cell or epoch: fewer pages
            st.session_state["conf_gallery_page"] = 1
        page = st.number_input("Page", 1, pages, key="conf_gallery_page") if pages > 1 else 1
        shown = where[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
        gallery(shown, [f"#{pos} · {top3(probs[pos])}" for pos in shown])
        st.caption("#position in the set · the model's three highest probabilities, as digit:probability")
    else:
        st.caption("No example in this cell at this epoch.")

with st.expander("Watch it form: the matrix epoch by epoch"):
    # built only when asked: reading every epoch and building the frames costs time on every rerun
    if len(pred_epochs) < 2:
        st.caption("Only one epoch has predictions.")
    elif st.toggle("Show the animation", key="conf_animate",
                   help=f"Replays the matrix over the {len(pred_epochs)} epochs with predictions."):
        with ui.section_guard("The animation"):
            anim = cache.confusion_animation(run_dir, split, normalize)
            if anim is not None:
                st.plotly_chart(anim, key="conf_animation")

# ----------------------------------------------------------------------------- per class, mistakes, labels
st.subheader("Per class")
st.table(figures.style_class_report(cache.class_report(run_dir, epoch, split)))

st.subheader("Most confident mistakes")
mistakes = cache.confident_mistakes(run_dir, epoch, split, k=16)
gallery(mistakes, [f"#{pos} · {labels[pos]}→{pred[pos]} · {probs[pos, pred[pos]]:.0%}" for pos in mistakes])
st.caption("#position in the set · true digit→predicted digit · the model's probability for its answer")

st.subheader("Suspicious labels (candidate label errors)")
with ui.section_guard("Suspicious labels"):
    sus = cache.suspicious_labels(run_dir, split)
    if len(sus):
        st.caption(f"{len(sus)} example{'s' if len(sus) != 1 else ''} the model contradicted with ≥ 90% confidence "
                   "in each of the last three epochs.")
        shown = sus.head(24)
        gallery(shown["position"].to_numpy(),
                [f"#{r.position} · {r.label}→{r.predicted} · {r.confidence:.0%}" for r in shown.itertuples()])
        st.caption("#position in the set · label→the model's answer · its probability")
    else:
        st.caption("None: no example was contradicted with ≥ 90% confidence in each of the last three epochs.")

# ----------------------------------------------------------------------------- label issues, what changed
st.subheader("Why these mistakes: label issues and what changed")
WHY_VIEWS = ["Label issues", "What changed"]
# built only when picked: ranking every label or comparing two models costs time on every rerun
why_view = st.segmented_control("Why these mistakes", WHY_VIEWS, key="conf_why", label_visibility="collapsed")
if why_view is None:
    st.caption("Pick a view: **Label issues** (which labels are probably wrong, cleanlab) or **What changed** "
               "(this epoch against another epoch or run, example by example).")
elif why_view == "Label issues":
    with ui.section_guard("Label issues"):
        why.render_label_issues(run_dir, epoch, "conf_li")
else:
    with ui.section_guard("What changed"):
        why.render_diff(sel, epoch, split, "conf_diff")
