"""Data: where MNIST came from, how it is split, how balanced the classes are, and the images themselves."""
import numpy as np
import pandas as pd
import streamlit as st

from dashboard import cache, figures, state, ui

PER_PAGE = 40


def protocol_label(kind: str) -> str:
    """The radio label of a protocol, e.g. "classic: 50,000 train / 10,000 val (...)", from its rows."""
    rows = cache.split_rows(kind)
    (_, t0, t1), (vf, v0, v1), (_, s0, s1) = rows["train"], rows["val"], rows["test"]
    if kind == "seed":
        return f"seed notebook: {t1 - t0:,} train, validation = the {s1 - s0:,} test images"
    return f"{kind}: {t1 - t0:,} train / {v1 - v0:,} val (official {vf}[{v0}:]) / {s1 - s0:,} test"


PROTOCOLS = ("classic", "seed")

sel = state.current()
st.title("🔢 Data")
ui.intro(
    "The data the model learned from: where the files came from and how they were checked, how they are "
    "split, whether the classes are balanced, what an average digit of each class looks like, and the "
    "images themselves.",
    """
- **Source**: MNIST is four files (training images and labels, test images and labels). Each file's MD5
  checksum is compared with the official one, so the data is exactly the published MNIST.
- **Splits**: with the *classic* protocol the last 10,000 training images are held out for validation
  (used to choose the epoch) and the test set is kept for the final report. The *seed* protocol (the
  original notebook) trains on all 60,000 and validates on the test set, which makes the test accuracy
  optimistic.
- **Class balance**: how many examples of each digit each split holds; MNIST is close to balanced
  (about 10% each), so accuracy is a fair summary.
- **Mean images**: the pixel-wise average of all official training images of a digit; it shows where
  the ink usually is, and why a blurry 4 can look like a 9.
- **Browse**: every image with its index in the official file and its label.
""")

root = str(cache.data_root())
check = cache.mnist_check(root)
info, problems = check["source"], check["problems"]

st.subheader("Where the data came from")
c1, c2 = st.columns([1, 2])
c1.metric("Source", info.get("source", "unknown"))
c1.caption(f"prepared {info.get('prepared_at', '?')} · folder `{root}`")
md5 = pd.DataFrame({"file": list(check["expected"]), "official MD5": list(check["expected"].values())})
md5["check"] = ["✅ matches" if not any(f in p for p in problems) else "❌ " + next(p for p in problems if f in p)
                for f in md5["file"]]
c2.table(md5.style.hide(axis="index"))      # plain tables on this page: a data grid costs the browser ~0.2 s
if problems:
    st.error("**MNIST does not match the official files:** " + "; ".join(problems)
             + "\n\nRun `python -m data.mnist` to prepare it again.")
else:
    st.success("All four files match the official MD5 checksums.")

# ----------------------------------------------------------------------------- splits and balance
st.subheader("Splits and class balance")
run_cfg = cache.load_config(sel.run_dir) if sel.run is not None else None
run_split = run_cfg.data.split if run_cfg is not None else "classic"
kind = st.radio("Protocol", PROTOCOLS, index=PROTOCOLS.index(run_split) if run_split in PROTOCOLS else 0,
                key="data_protocol", format_func=protocol_label, horizontal=True,
                help="Defaults to the protocol of the run selected in the sidebar.")
labels = cache.split_labels(kind)
rows = cache.split_rows(kind)
sizes = pd.DataFrame({"split": list(rows), "examples": [stop - start for _, start, stop in rows.values()],
                      "from": [f"{file}[{start}:{stop}]" for file, start, stop in rows.values()]})
left, right = st.columns([2, 3])
left.table(sizes.rename(columns={"from": "from (official file[rows])"}).style.hide(axis="index")
           .format({"examples": "{:,}"}))
left.caption("Rows of the official train or test file, Python-style: "
             f"{rows['val'][0]}[{rows['val'][1]}:{rows['val'][2]}] = rows {rows['val'][1]:,} to {rows['val'][2] - 1:,}.")
if run_cfg is not None and (run_cfg.train.subset or run_cfg.train.eval_subset):
    left.info(f"The selected run used a subset: the first {run_cfg.train.subset or 'all'} training and the first "
              f"{run_cfg.train.eval_subset or 'all'} validation/test examples.")
right.plotly_chart(figures.class_balance_figure(cache.class_counts(kind)), key="data_balance")

st.subheader("The mean image of each class")
means = cache.class_mean_images()
cols = st.columns(10)
for c, col in enumerate(cols):
    col.image(ui.digit(np.clip(np.rint(means[c]), 0, 255).astype(np.uint8), 84), caption=str(c))
st.caption("Pixel-wise mean of the 60,000 official training images of each digit.")

# ----------------------------------------------------------------------------- browse
st.subheader("Browse the images")
b1, b2, b3 = st.columns(3)
split = b1.selectbox("Split", list(labels), key="data_split")
digit = b2.selectbox("Class", ["all", *range(10)], key="data_class")
y = labels[split]
positions = np.arange(len(y)) if digit == "all" else np.flatnonzero(y == digit)
pages = max(1, -(-len(positions) // PER_PAGE))
if st.session_state.get("data_page", 1) > pages:
    st.session_state["data_page"] = 1
page = b3.number_input(f"Page (of {pages:,})", 1, pages, key="data_page")
shown = positions[(page - 1) * PER_PAGE: page * PER_PAGE]
file, first, _ = rows[split]
index = first + shown
ui.digit_grid(cache.official_images(file, index), [f"#{i} · {y[p]}" for i, p in zip(index, shown)],
              columns=10, size=64)
st.caption(f"{len(positions):,} images · #index in the official {file} file · label")
