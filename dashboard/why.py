"""Why this mistake (issue 10): the views that draw training-data influence, the smallest change, label issues and
what changed between two models. Shared by the Attributions, Confusion, Overfitting and Draw pages.

Every number comes from dashboard/cache.py (which calls analysis.influence, analysis.counterfactual,
analysis.label_issues and analysis.diff); these functions only draw. Widget keys start with the caller's prefix.
Functions named render_* draw; bad input becomes a message, never a traceback.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import streamlit as st

from analysis.diff import CHANGED, GROUPS
from analysis.label_issues import KINDS
from dashboard import cache, maps, ui
from model.runs import RunError

# The one-time TracIn pass: about 3 minutes for 60,000 images x 10 checkpoints on 2 cores (bench/why_speed.py).
SECONDS_PER_IMAGE_CHECKPOINT = 180 / 600_000
PREDICTED = -1          # "the predicted class" choice of a class selector
AUTO = -1               # "true label if wrong, else the runner-up" choice of the smallest-change target
DIFF_PRESET = "_why_diff_preset"   # a plain session key: the Overfitting page's "What changed" link (not a widget)
GROUP_NAMES = {"became_right": "became right", "became_wrong": "became wrong", "changed_wrong": "changed wrong answer",
               "stayed_right": "stayed right", "stayed_wrong": "stayed wrong"}

TEACH_INFLUENCE = """
- **Proponents** are training images whose training steps pushed this image's answer *towards* the explained
  class; **opponents** pushed it *away*. The score is TracIn (Pruthi et al. 2020): for every saved checkpoint,
  (learning rate) × (how alike the two images look to the last layer) × (how alike their errors are), summed.
- Read proponents with the **same label** as "the model learned this answer from images like these"; a proponent
  with **another label** that looks like this image is a likely source of a mistake (or a mislabelled image).
- **What it cannot tell:** it looks at the **last layer only** (what the earlier layers learned is taken as
  given); the activations are squeezed by a **random projection** (128 numbers; the top-10 agree with the exact
  scores on about 9 of 10); checkpoints are per epoch, not per step. Influence is a hint about which data
  mattered, not a proof that removing an image would change the answer.
"""
TEACH_SELF = """
**Self-influence**: how much each training image pushed on *itself*. Images the model could not fit keep a large
error all through training: often **mislabelled or odd** images (a 4 written like a 9, a label typo). High
self-influence is a candidate list to look at, not a verdict: rare but correct styles score high too.
"""
TEACH_COUNTERFACTUAL = """
- **Smallest change**: the smallest change to the pixels (L2 size, the **radius**) that makes the model answer
  the target class, found by a projected-gradient search. The **difference** image shows where ink was added
  (red) or removed (blue).
- A small radius means the image sits close to the decision boundary; a large one means the model is sure.
- **What it cannot tell:** it is **one** of many small changes (a local search from this image), not the only
  one and not what a human would draw: it often looks like faint noise. "Not found" means not found within the
  largest radius searched, never "impossible".
"""
TEACH_LABELS = """
- **Label issues** (confident learning, Northcutt et al. 2021, with cleanlab): examples whose given label the
  model's *out-of-sample* probabilities contradict, ranked by cleanlab's label quality (lowest first).
- **Suggested** is the model's most probable class, **confidence** its probability; **flagged** means cleanlab's
  `find_label_issues` counts it among the likely errors.
- **What it cannot tell:** the list is only as good as the probabilities behind it (the page says which kind it
  used); hard but correct digits show up too. Look at the images before believing a label is wrong.
"""
TEACH_DIFF = """
- **What changed** compares two models (two epochs of one run, or two runs) example by example on the same
  images: which became right, which became wrong, which changed one wrong answer for another.
- **Churn** is the share of examples whose answer changed: two models with equal accuracy can still disagree on
  many images.
- **Flips**: for the examples whose answer changed, the true class, the old answer and the new one.
"""


# ----------------------------------------------------------------------------- galleries

def train_gallery(table: pd.DataFrame, captions: list[str], columns: int = 8, size: int = 84) -> None:
    """Training images (rows of the official training file in `table["official_row"]`) with captions."""
    if not len(table):
        st.caption("Nothing to show.")
        return
    ui.digit_grid(cache.official_images("train", table["official_row"].to_numpy()), captions, columns, size)


def split_gallery(run_dir: str, split: str, positions: np.ndarray, captions: list[str], columns: int = 8,
                  size: int = 84) -> None:
    """Images of the run's val/test split at these positions, with captions."""
    if not len(positions):
        st.caption("Nothing to show.")
        return
    ui.digit_grid(list(cache.split_images(run_dir, split, positions)), captions, columns, size)


# ----------------------------------------------------------------------------- training images behind this

def pass_estimate(run_dir: str) -> str:
    """How long the one-time pass takes, in words ("about 3 minutes", "less than a minute")."""
    n, checkpoints = cache.influence_training_size(run_dir)
    minutes = n * checkpoints * SECONDS_PER_IMAGE_CHECKPOINT / 60
    return "less than a minute" if minutes < 1 else f"about {round(minutes)} minute{'s' if round(minutes) != 1 else ''}"


def render_influence_pass(run_dir: str, key: str) -> bool:
    """The one-time TracIn pass: True when it is on disk; else a button that computes it with a progress bar."""
    if cache.influence_pass_ready(run_dir):
        return True
    n, checkpoints = cache.influence_training_size(run_dir)
    st.info(f"Scoring training images needs a one-time pass over the run's {n:,} training images at each of its "
            f"{checkpoints} checkpoint{'s' if checkpoints != 1 else ''}. It is stored in the run's cache folder, "
            "so it is done once per run.")
    if not st.button(f"Compute the training-set pass ({pass_estimate(run_dir)}, once per run)", key=f"{key}_pass",
                     type="primary"):
        return False
    bar = st.progress(0.0, text="Training-set pass: starting…")

    def progress(done: int, total: int) -> None:
        bar.progress(min(1.0, done / max(total, 1)), text=f"Training-set pass: {done:,} of {total:,} image × checkpoint")

    try:
        cache.compute_influence_pass(run_dir, progress)
    except (ValueError, RuntimeError) as e:       # e.g. a model without a final Linear layer
        bar.empty()
        st.warning(f"The training-set pass cannot be computed for this model: {e}")
        return False
    bar.empty()
    st.rerun()          # draw the view again from the top: the pass is on disk now, the button goes away


def influence_captions(table: pd.DataFrame) -> list[str]:
    return [f"train #{r.official_row} · label {r.label} · {r.score:+.3g}" for r in table.itertuples()]


def render_influence(run_dir: str, epoch: int, image: np.ndarray, pred: int, key: str, k: int = 8) -> None:
    """"Training images behind this": proponents and opponents of one image's answer, and self-influence."""
    with st.expander("How to read this"):
        st.markdown(TEACH_INFLUENCE)
    choice = st.selectbox("Explain class", [PREDICTED, *range(10)], key=f"{key}_target",
                          format_func=lambda c: "the predicted class" if c == PREDICTED else f"class {c}",
                          help="Which training images pushed towards (or against) this class?")
    target = pred if choice == PREDICTED else int(choice)
    if not render_influence_pass(run_dir, key):
        return
    try:
        res = cache.influence(run_dir, epoch, image, target, k)
    except ValueError as e:
        st.warning(f"Training images cannot be scored for this model: {e}")
        return
    st.markdown(f"**Proponents of class {res['target']}**: training images that pushed this answer towards "
                f"{res['target']} (checkpoints 1–{epoch})")
    train_gallery(res["proponents"], influence_captions(res["proponents"]), columns=k)
    st.markdown(f"**Opponents**: training images that pushed it away from {res['target']}")
    train_gallery(res["opponents"], influence_captions(res["opponents"]), columns=k)
    st.caption("train #row in the official training file · its label · TracIn score (+ towards, − against)")
    render_self_influence(run_dir, epoch, key)


def render_self_influence(run_dir: str, epoch: int, key: str, k: int = 16) -> None:
    """The training images of highest self-influence (the pass must be ready)."""
    st.markdown("**Highest self-influence: the images the model could not fit: often mislabelled or odd**")
    st.caption(TEACH_SELF.strip())
    top = cache.top_self_influence(run_dir, epoch, k)
    train_gallery(top, [f"train #{r.official_row} · label {r.label} · {r.score:.3g}" for r in top.itertuples()],
                  columns=8)


# ----------------------------------------------------------------------------- smallest change

def default_target(probs: np.ndarray, true: int | None) -> int:
    """The true label when the answer is wrong, else the runner-up class."""
    order = np.argsort(-np.asarray(probs), kind="stable")
    if true is not None and int(order[0]) != int(true):
        return int(true)
    return int(order[1])


def render_smallest_change(run_dir: str, epoch: int, image: np.ndarray, probs: np.ndarray, true: int | None,
                           key: str) -> dict | None:
    """The smallest change that makes the model answer a chosen class: new image, difference, radius, probabilities.

    Args:
        probs: the model's probabilities on `image` (10,); true: the true label, None for a drawing.
    Returns:
        analysis.counterfactual.smallest_change's result (None when nothing was searched).
    """
    with st.expander("How to read this"):
        st.markdown(TEACH_COUNTERFACTUAL)
    auto = default_target(probs, true)
    pred = int(np.argmax(probs))
    auto_name = "the true label" if true is not None and pred != true else "the runner-up"
    choice = st.selectbox("Target class", [AUTO, *range(10)], key=f"{key}_target",
                          format_func=lambda c: ("the true label if wrong, else the runner-up" if true is not None
                                                 else "the runner-up") if c == AUTO else f"class {c}",
                          help="The class the model should answer after the change.")
    target = auto if choice == AUTO else int(choice)
    st.caption(f"Target: **class {target}**" + (f" ({auto_name})" if choice == AUTO else "")
               + f"; the model answers {pred}.")
    if target == pred:
        st.info(f"The model already answers {target}: no change needed. Pick another class.")
        return None
    res = cache.smallest_change(run_dir, epoch, image, target)
    m1, m2, m3 = st.columns(3)
    m1.metric("Found", "yes" if res["found"] else "no")
    m2.metric("Radius (L2)", f"{res['radius']:.3f}", help="the size of the change: the square root of the sum of "
                                                           "squared pixel changes (pixels on a 0–1 scale)")
    m3.metric("New answer", res["prediction"], help=f"probability {res['probabilities'][res['prediction']]:.1%}")
    if not res["found"]:
        st.warning(res["message"])
    else:
        st.caption(res["message"])
    a, b, c = st.columns(3)
    a.plotly_chart(maps.image_figure(res["image"], f"changed image → {res['prediction']}"), width="stretch",
                   key=f"{key}_image")
    b.plotly_chart(maps.attribution_figure(res["difference"], True, "difference (red: ink added, blue: removed)",
                                           cache.as_float_image(image)), width="stretch", key=f"{key}_diff")
    c.plotly_chart(maps.probability_bars(res["probabilities"], "probabilities after the change", res["prediction"]),
                   width="stretch", key=f"{key}_probs")
    return res


# ----------------------------------------------------------------------------- label issues

def label_issues_csv(table: pd.DataFrame) -> bytes:
    return table.to_csv(index=False).encode()


def render_label_issues(run_dir: str, epoch: int, key: str, shown: int = 24) -> None:
    """Ranked label-issue candidates of a split, with images, a table, self-influence (train, when the TracIn pass
    is on disk) and a CSV download of the whole list."""
    with st.expander("How to read this"):
        st.markdown(TEACH_LABELS)
    split = st.radio("Split", ["train", "val", "test"], key=f"{key}_split", horizontal=True,
                     format_func={"train": "training", "val": "validation", "test": "test"}.get)
    try:
        table, kind = cache.label_issues(run_dir, split, epoch)
    except RunError as e:
        st.info(f"**No label issues for the training split of this run:** {e}\n\n"
                "The validation and test splits still work: pick one above.")
        return
    st.caption(f"Probabilities used: **{kind}**: {KINDS[kind]}.")
    flagged = int(table["issue"].sum())
    st.markdown(f"**{flagged:,} of {len(table):,} examples flagged** by cleanlab; the most suspicious first.")
    if split == "train" and cache.influence_pass_ready(run_dir):
        table = table.assign(self_influence=table["official_row"].map(cache.self_influence(run_dir, epoch)))
    top = table.head(shown)
    captions = [f"#{r.position} · {r.given}→{r.suggested} · {r.confidence:.0%}" for r in top.itertuples()]
    if split == "train":
        train_gallery(top, captions)
    else:
        split_gallery(run_dir, split, top["position"].to_numpy(), captions)
    st.caption("#position in the split · given label→the model's suggestion · its probability")
    st.dataframe(table.head(200), hide_index=True, width="stretch", key=f"{key}_table",
                 column_config={"confidence": st.column_config.NumberColumn(format="%.3f"),
                                "quality": st.column_config.NumberColumn("label quality", format="%.4f"),
                                "issue": st.column_config.CheckboxColumn("flagged")})
    if split == "train" and "self_influence" not in table:
        st.caption("Self-influence appears here once the training-set pass is computed (Attributions → "
                   "Training images behind this).")
    st.download_button(f"Download all {len(table):,} rows (CSV)", label_issues_csv(table),
                       file_name=f"label_issues_{Path(run_dir).name}_{split}.csv", mime="text/csv",
                       key=f"{key}_csv")


# ----------------------------------------------------------------------------- what changed

def apply_diff_preset(key: str) -> None:
    """Take the Overfitting page's "What changed" link (DIFF_PRESET) into this page's widgets, once."""
    preset = st.session_state.pop(DIFF_PRESET, None)
    if preset:
        st.session_state[f"{key}_run"] = preset["run"]
        st.session_state[f"{key}_epoch"] = preset["epoch_a"]


def render_diff(sel, epoch: int, split: str, key: str, columns: int = 8) -> None:
    """What changed from another (run, epoch) to the selected one: counts, churn, flips and galleries."""
    with st.expander("How to read this"):
        st.markdown(TEACH_DIFF)
    run_dir = sel.run_dir
    by_id = {r.run_id: r for r in sel.runs}
    ids = list(by_id)
    if st.session_state.get(f"{key}_run") not in ids:
        st.session_state[f"{key}_run"] = sel.run.run_id
    c1, c2 = st.columns(2)
    other_id = c1.selectbox("Compare with run", ids, key=f"{key}_run",
                            format_func=lambda i: by_id[i].name + (" (this run)" if i == sel.run.run_id else ""))
    other = str(by_id[other_id].path)
    epochs = cache.prediction_epochs(other)
    if not epochs:
        st.info(f"Run {by_id[other_id].name} has no saved predictions to compare with.")
        return
    if st.session_state.get(f"{key}_epoch") not in epochs:
        earlier = [e for e in epochs if e < epoch] if other_id == sel.run.run_id else []
        st.session_state[f"{key}_epoch"] = earlier[-1] if earlier else epochs[-1]
    other_epoch = int(c2.selectbox("at epoch", epochs, key=f"{key}_epoch"))
    a_name = f"{by_id[other_id].name} epoch {other_epoch}"
    b_name = f"{sel.run.name} epoch {epoch}"
    st.markdown(f"From **A = {a_name}** to **B = {b_name}** (the sidebar's run and epoch), {split} split.")
    if other_id == sel.run.run_id and other_epoch == epoch:
        st.info("A and B are the same model: pick another epoch or run.")
        return
    try:
        d = cache.diff(other, other_epoch, run_dir, epoch, split)
    except ValueError as e:
        st.warning(f"**These two cannot be compared example by example:** {e}")
        return
    cols = st.columns(len(GROUPS) + 1)
    for col, group in zip(cols, GROUPS):
        col.metric(GROUP_NAMES[group], f"{d.counts[group]:,}")
    cols[-1].metric("churn", f"{d.churn:.1%}", help="share of the examples whose answer changed")
    left, right = st.columns([2, 3])
    with left:
        st.markdown("**Flips** (examples whose answer changed)")
        if len(d.flips):
            st.dataframe(d.flips.rename(columns={"true": "true class", "old": "A's answer", "new": "B's answer",
                                                 "count": "examples"}),
                         hide_index=True, width="stretch", height=300, key=f"{key}_flips")
        else:
            st.caption("No answer changed.")
    with right:
        group = st.selectbox("Gallery of", list(GROUPS), key=f"{key}_group", format_func=GROUP_NAMES.get,
                             help="The examples of one group, in the documented order (analysis.diff).")
        positions = d.positions[group][:24]
        rows = d.examples.set_index("position").loc[positions] if len(positions) else d.examples.head(0)
        st.markdown(f"**{GROUP_NAMES[group]}: {d.counts[group]:,}**" + (" (first 24)" if d.counts[group] > 24 else ""))
        split_gallery(run_dir, split, positions,
                      [f"#{p} · {r.label}: {r.old}→{r.new}" for p, r in zip(positions, rows.itertuples())],
                      columns=6)
        st.caption("#position · true class: A's answer→B's answer")
    if any(d.counts[g] for g in CHANGED) and d.counts["became_wrong"] == 0:
        st.caption("No example became wrong.")


# ----------------------------------------------------------------------------- forgotten at a spike

def render_spike_links(run_id: str, run_dir: str, spikes: list, key: str, go: Callable[[dict], None]) -> None:
    """For each one-epoch spike: how many validation images broke at that epoch and came back at the next, a
    button to the "What changed" view (epoch e-1 → e) and a gallery of the forgotten images."""
    for spike in spikes:
        e = int(spike.epoch)
        try:
            rows = cache.forgotten(run_dir, e, "val")
        except ValueError as err:
            st.caption(f"The images behind the spike at epoch {e} cannot be listed: {err}")
            continue
        n = len(rows)
        st.markdown(f"**Forgotten at epoch {e}: {n} validation image{'s' if n != 1 else ''} broke at epoch {e} and "
                    f"came back at epoch {e + 1}.**")
        c1, c2 = st.columns([1, 2])
        c1.button(f"What changed from epoch {e - 1} to {e} →", key=f"{key}_go_{e}", on_click=go,
                  args=({"run": run_id, "epoch_a": e - 1, "epoch_b": e},))
        if c2.toggle(f"Show the images forgotten at epoch {e}", key=f"{key}_show_{e}"):
            top = rows.head(24)
            split_gallery(run_dir, "val", top["position"].to_numpy(),
                          [f"#{r.position} · {r.label}→{r.answer} · {r.confidence:.0%}" for r in top.itertuples()])
            st.caption(f"#position · true class→the wrong answer at epoch {e} · its probability; right at epochs "
                       f"{e - 1} and {e + 1}")
