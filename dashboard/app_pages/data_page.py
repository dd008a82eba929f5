"""Data: where MNIST came from, how it is split, how balanced the classes are, and the images themselves."""
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import cache, report, state, ui
from data.mnist import CLASSIC_TRAIN_SIZE
from model.config import DataConfig

PER_PAGE = 40
SPLIT_SOURCES = {  # protocol -> split -> (official file, first row)
    kind: {part: (DataConfig(kind).official_file(part), DataConfig(kind).first_row(part))
           for part in ("train", "val", "test")} for kind in ("classic", "seed")}
PROTOCOLS = {"classic": f"classic: {CLASSIC_TRAIN_SIZE:,} train / {60000 - CLASSIC_TRAIN_SIZE:,} val "
                        f"(official train[{CLASSIC_TRAIN_SIZE}:]) / 10,000 test",
             "seed": "seed notebook: 60,000 train, validation = the 10,000 test images"}

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
c2.dataframe(md5, hide_index=True, width="stretch")
if problems:
    st.error("**MNIST does not match the official files:** " + "; ".join(problems)
             + "\n\nRun `python -m data.mnist` to prepare it again.")
else:
    st.success("All four files match the official MD5 checksums.")

# ----------------------------------------------------------------------------- splits and balance
st.subheader("Splits and class balance")
run_cfg = cache.load_config(sel.run_dir) if sel.run is not None else None
run_split = run_cfg.data.split if run_cfg is not None else "classic"
kind = st.radio("Protocol", list(PROTOCOLS), index=list(PROTOCOLS).index(run_split) if run_split in PROTOCOLS else 0,
                key="data_protocol", format_func=PROTOCOLS.get, horizontal=True,
                help="Defaults to the protocol of the run selected in the sidebar.")
labels = cache.split_labels(kind)
counts = pd.DataFrame({s: pd.Series(y).value_counts().reindex(range(10), fill_value=0) for s, y in labels.items()})
counts.index.name = "class"
sizes = pd.DataFrame({"split": list(labels), "examples": [len(y) for y in labels.values()],
                      "from": [f"{SPLIT_SOURCES[kind][s][0]}[{SPLIT_SOURCES[kind][s][1]}:"
                               f"{SPLIT_SOURCES[kind][s][1] + len(labels[s])}]" for s in labels]})
left, right = st.columns([2, 3])
left.dataframe(sizes, hide_index=True, width="stretch",
               column_config={"split": st.column_config.TextColumn(width=50),
                              "examples": st.column_config.NumberColumn(width=75),
                              "from": st.column_config.TextColumn(
                                  "from (official file[rows])", width=170,
                                  help="Rows of the official train or test file, Python-style: train[50000:60000] "
                                       "= rows 50,000 to 59,999.")})
if run_cfg is not None and (run_cfg.train.subset or run_cfg.train.eval_subset):
    left.info(f"The selected run used a subset: the first {run_cfg.train.subset or 'all'} training and the first "
              f"{run_cfg.train.eval_subset or 'all'} validation/test examples.")
fig = go.Figure()
for s in labels:
    share = counts[s] / max(len(labels[s]), 1)
    fig.add_trace(go.Bar(x=counts.index, y=counts[s], name=s, marker_color=report.SPLIT_COLORS[s], customdata=share,
                         hovertemplate=f"{s}: class %{{x}}<br>%{{y}} examples (%{{customdata:.1%}})<extra></extra>"))
fig.update_layout(barmode="group", height=320, margin=dict(l=10, r=10, t=10, b=10),
                  legend=dict(orientation="h", y=-0.2))
fig.update_xaxes(title="class", dtick=1)
fig.update_yaxes(title="examples")
right.plotly_chart(fig, key="data_balance")

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
file, first = SPLIT_SOURCES[kind][split]
index = first + shown
ui.digit_grid(cache.official_images(file, index), [f"#{i} · {y[p]}" for i, p in zip(index, shown)],
              columns=10, size=64)
st.caption(f"{len(positions):,} images · #index in the official {file} file · label")
