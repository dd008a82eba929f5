"""AppTest of the "How it decides" pages: Attributions, Kernels & activations, Draw a digit.

Every page runs against the fixture run (tests/conftest.py). What a page shows is compared with
references computed here straight from the checkpoint with PyTorch and Captum (and the official
MNIST files), never with the dashboard's own helpers. Settings are kept small (few methods, few
IG steps) so the whole file stays fast on a 2-core machine.

The drawing canvas cannot be driven by AppTest (a custom component); its blank state can, and the
upload path (st.file_uploader, which AppTest drives) goes through the same preprocessing and model.
"""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from captum.attr import GuidedBackprop, IntegratedGradients, Saliency
from PIL import Image
from streamlit.testing.v1 import AppTest

from data.mnist import default_root, load_raw
from model import runs
from model.net import to_input
from tests.apptest_util import array, captions, chart, errors, heatmap, new_app, ok

# ----------------------------------------------------------------------------- helpers

@pytest.fixture(scope="module", autouse=True)
def _leave_no_cache(fixture_run):
    """The pages cache slow results in the run folder: remove what these tests wrote into the shared fixture run,
    so later tests that copy it (copy_run) start from a run without a cache."""
    import shutil
    cache_dir = fixture_run / "cache"
    existed = cache_dir.exists()
    yield
    if not existed:
        shutil.rmtree(cache_dir, ignore_errors=True)


@pytest.fixture()
def app(runs_dir, monkeypatch):
    """A fresh AppTest of the dashboard on the fixture runs folder; pass session state to preset widgets."""
    monkeypatch.setenv("DIGIT_LENS_RUNS", str(runs_dir))

    def make(page: str, **session) -> AppTest:
        at = new_app(**session).run()
        return at.switch_page(f"app_pages/{page}.py").run()
    return make


def markdown(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


def metric(at: AppTest, label: str) -> str:
    values = [m.value for m in at.metric if m.label == label]
    assert values, f"no metric {label!r}"
    return values[0]


def model_at(run: str, epoch: int) -> torch.nn.Module:
    return runs.load_model(run, epoch).eval()


def split_image(position: int, run) -> torch.Tensor:
    """The fixture run's test example at `position`, from the official file: (1,1,28,28) in [0,1]."""
    index = runs.load_predictions(run, 3)["test_index"][position]
    img = load_raw()["t10k-images-idx3-ubyte"][index]
    return to_input(torch.from_numpy(img.copy())[None])


def saliency(model, x, target: int) -> np.ndarray:
    return Saliency(model).attribute(x.clone().requires_grad_(), target=target, abs=True)[0, 0].detach().numpy()


def png(array_: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array_).save(buf, format="PNG")
    return buf.getvalue()


# ----------------------------------------------------------------------------- attributions

ATTR_FAST = {"example_split": "test", "attr_methods": ["saliency"], "attr_ig_steps": 8}


def test_attributions_renders_with_trust_figures(app, fixture_run):
    at = app("attributions", **ATTR_FAST)
    ok(at)
    text = markdown(at)
    assert "Sanity check" in text and ("passes" in text or "fails" in text)
    assert "Deletion AUC" in text and "vs random order" in text
    # the saliency map is Captum's, on the checkpoint of the sidebar epoch (the best one), for the prediction
    epoch = at.session_state["epoch"]
    model, x = model_at(fixture_run, epoch), split_image(0, fixture_run)
    pred = int(model(x).argmax())
    assert metric(at, f"Predicted (epoch {epoch})") == str(pred)
    np.testing.assert_allclose(heatmap(at, "attr_map_saliency"), saliency(model, x, pred), rtol=1e-4, atol=1e-7)
    # only the chosen view is built (no hidden tabs); every class 0-9 is a tick of the probability bars
    keys = [c.proto.id for c in at.get("plotly_chart")]
    assert not any(k.endswith(("-attr_adv_img", "-attr_all_grid", "-attr_cmp_map_a")) for k in keys), keys
    assert chart(at, "attr_probs")["layout"]["xaxis"]["tickvals"] == list(range(10))
    assert not any(k.endswith("-attr_curves_saliency") for k in keys), "the trust details open only when asked"
    assert not [w.key for w in at.selectbox if (w.key or "").startswith("attr_f_")], "the closed finder is built"

    # the trust details (a dialog): every similarity curve starts at 1 (the map against itself), and the
    # deletion curve at the model's probability of the class for the untouched image
    at.button(key="attr_details_saliency").click().run()
    ok(at)
    curves = {t["name"]: array(t["y"]) for t in chart(at, "attr_curves_saliency")["data"]}
    similarity = [name for name in curves if name.startswith(("rank correlation", "SSIM"))]
    assert "rank correlation of |map|" in similarity and "SSIM of |map|" in similarity, list(curves)
    for name in similarity:
        assert curves[name][0] == pytest.approx(1.0, abs=1e-6), name
    with torch.no_grad():
        p_class = float(torch.softmax(model(x), 1)[0, pred])
    assert curves["most important pixels first"][0] == pytest.approx(p_class, abs=1e-5)


def test_attributions_target_example_and_epoch_change_the_map(app, fixture_run):
    at = app("attributions", **ATTR_FAST)
    before = heatmap(at, "attr_map_saliency")
    epoch = at.session_state["epoch"]
    model = model_at(fixture_run, epoch)
    x0 = split_image(0, fixture_run)
    other = (int(model(x0).argmax()) + 1) % 10

    at.selectbox(key="attr_target").set_value(other).run()                 # "why not <other>?"
    ok(at)
    after = heatmap(at, "attr_map_saliency")
    np.testing.assert_allclose(after, saliency(model, x0, other), rtol=1e-4, atol=1e-7)
    assert not np.allclose(before, after)
    assert f"class {other}" in chart(at, "attr_map_saliency")["layout"]["title"]["text"]

    at.number_input(key="attr_index").set_value(5).run()                   # another example
    ok(at)
    np.testing.assert_allclose(heatmap(at, "attr_map_saliency"), saliency(model, split_image(5, fixture_run), other),
                               rtol=1e-4, atol=1e-7)

    first = runs.checkpoint_epochs(fixture_run)[0]
    assert first != epoch
    at.sidebar.select_slider(key="epoch").set_value(first).run()           # another epoch
    ok(at)
    np.testing.assert_allclose(heatmap(at, "attr_map_saliency"),
                               saliency(model_at(fixture_run, first), split_image(5, fixture_run), other),
                               rtol=1e-4, atol=1e-7)


def test_attributions_methods_warning_and_ig_delta(app, fixture_run):
    at = app("attributions", **ATTR_FAST)
    assert not any("known to fail" in w.value for w in at.warning)
    at.multiselect(key="attr_methods").set_value(["guided_backprop", "integrated_gradients"]).run()
    ok(at)
    assert any("Guided Backprop is known to fail the sanity check" in w.value for w in at.warning)
    assert "Convergence delta" in markdown(at)
    epoch = at.session_state["epoch"]
    model, x = model_at(fixture_run, epoch), split_image(0, fixture_run)
    pred = int(model(x).argmax())
    ig = IntegratedGradients(model).attribute(x, baselines=torch.zeros_like(x), target=pred, n_steps=8)
    np.testing.assert_allclose(heatmap(at, "attr_map_integrated_gradients"), ig[0, 0].numpy(), rtol=1e-3, atol=1e-6)
    gbp = GuidedBackprop(model_at(fixture_run, epoch)).attribute(x.clone().requires_grad_(), target=pred)
    np.testing.assert_allclose(heatmap(at, "attr_map_guided_backprop"), gbp[0, 0].numpy(), rtol=1e-4, atol=1e-7)


def test_attributions_filter_link_class_mean_and_fgsm(app, fixture_run):
    at = new_app(**ATTR_FAST, attr_find=True)                        # the finder open
    at.query_params["split"] = "test"
    at.query_params["index"] = "7"                                         # a link from the confusion page
    at.run()
    at.switch_page("app_pages/attributions.py").run()
    ok(at)
    assert at.session_state["example_index"] == 7 and at.number_input(key="attr_index").value == 7

    # "most confident mistakes" picks the wrong prediction with the highest probability
    epoch = at.session_state["epoch"]
    pred_file = runs.load_predictions(fixture_run, epoch)
    probs = torch.softmax(torch.from_numpy(pred_file["test_logits"].astype(np.float32)), 1).numpy()
    wrong = np.flatnonzero(probs.argmax(1) != pred_file["test_labels"])
    expected = int(wrong[np.argmax(probs[wrong].max(1))])
    at.selectbox(key="attr_f_outcome").set_value("wrong")
    at.selectbox(key="attr_f_order").set_value("most confident mistakes").run()
    at.button(key="attr_f_go").click().run()
    ok(at)
    assert at.session_state["example_index"] == expected
    assert at.number_input(key="attr_index").value == expected

    # class mean: Captum's saliency averaged over the first N test images of the class
    at.session_state["attr_view"] = "Class means"
    at.run()
    at.slider(key="attr_mean_n").set_value(5)
    at.selectbox(key="attr_mean_class").set_value(3)
    at.toggle(key="attr_mean_on").set_value(True).run()
    ok(at)
    model = model_at(fixture_run, epoch)
    raw = load_raw()
    idx = np.flatnonzero(raw["t10k-labels-idx1-ubyte"] == 3)[:5]
    xs = to_input(torch.from_numpy(raw["t10k-images-idx3-ubyte"][idx].copy()))
    ref = Saliency(model).attribute(xs.requires_grad_(), target=3, abs=True).mean(0)[0].detach().numpy()
    np.testing.assert_allclose(heatmap(at, "attr_mean_map"), ref, rtol=1e-4, atol=1e-7)

    # FGSM: the prediction after one signed-gradient step of size epsilon
    at.session_state["attr_view"] = "Fragility"
    at.run()
    at.slider(key="attr_eps").set_value(0.3).run()
    ok(at)
    x = split_image(expected, fixture_run).requires_grad_()
    pred = int(model(x).argmax())
    (grad,) = torch.autograd.grad(F.cross_entropy(model(x), torch.tensor([pred])), x)
    adv = (x.detach() + 0.3 * grad.sign()).clamp(0, 1)
    assert metric(at, "Prediction after FGSM") == str(int(model(adv).argmax()))
    np.testing.assert_allclose(heatmap(at, "attr_adv_img"), adv[0, 0].numpy(), atol=1e-6)


def saved_predicted(run, epoch: int, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class, label) of every example of a split, from the run's saved logits."""
    d = runs.load_predictions(run, epoch)
    return d[f"{split}_logits"].astype(np.float32).argmax(1), d[f"{split}_labels"]


def official_image(run, split: str, position: int) -> np.ndarray:
    """The example's pixels (28,28) uint8 read straight from the official MNIST idx file (16-byte header)."""
    row = int(runs.load_predictions(run, runs.prediction_epochs(run)[-1])[f"{split}_index"][position])
    file = runs.load_config(run).data.official_file(split)
    name = {"train": "train-images-idx3-ubyte", "test": "t10k-images-idx3-ubyte"}[file]
    path = next(p for p in default_root().rglob(name) if p.is_file())
    return np.fromfile(path, dtype=np.uint8, offset=16 + row * 784, count=784).reshape(28, 28)


def captions_text(at: AppTest) -> str:
    return "\n".join(c.value for c in at.caption)


def test_attributions_widgets_follow_the_example(app, fixture_run):
    """Back and forth between examples whose predictions differ: no stale "predicted (7)" label, no crash."""
    at = app("attributions", **ATTR_FAST)
    epoch = at.session_state["epoch"]
    predicted, labels = saved_predicted(fixture_run, epoch, "test")
    a = int(np.flatnonzero(predicted != predicted[0])[0])
    b = int(np.flatnonzero((predicted != predicted[0]) & (predicted != predicted[a]))[0])
    for position in (a, 0, b, 0, a):
        at.number_input(key="attr_index").set_value(position).run()
        ok(at)
        want = int(predicted[position])
        assert metric(at, f"Predicted (epoch {epoch})") == str(want)
        assert f"Explaining **class {want}** (the prediction)" in captions_text(at)
        assert chart(at, "attr_map_saliency")["layout"]["title"]["text"].endswith(f"class {want}")
        assert any(c.startswith(f"test #{position} ") for c in captions(at)), captions(at)

    # a class picked by hand stays picked across examples ("why not 3?")
    other = (int(predicted[a]) + 1) % 10
    at.selectbox(key="attr_target").set_value(other).run()
    for position in (0, a):
        at.number_input(key="attr_index").set_value(position).run()
        ok(at)
        assert chart(at, "attr_map_saliency")["layout"]["title"]["text"].endswith(f"class {other}")
        said = " (the prediction)" if other == predicted[position] else f"; predicted {int(predicted[position])}"
        assert f"Explaining **class {other}**{said}" in captions_text(at)

    # Class means: "the example's true class" follows the example
    at.session_state["attr_view"] = "Class means"
    at.run()
    for position in (0, b, 0):
        at.number_input(key="attr_index").set_value(position).run()
        ok(at)
        assert f"class {int(labels[position])} (the true class of test #{position})" in captions_text(at)


def test_confusion_explain_link_opens_the_same_example(app, fixture_run):
    """An Explain link of the Confusion page opens the same image on Attributions (position in the split)."""
    from urllib.parse import parse_qs
    at = app("confusion")
    at.radio(key="conf_split").set_value("test").run()
    ok(at)
    links = [parse_qs(el.proto.query_string) for el in at.get("page_link")
             if el.proto.label == "Explain" and el.proto.query_string]
    assert links, "no Explain links on the Confusion page"
    link = {k: v[0] for k, v in links[-1].items()}          # the last gallery: not the first example
    assert link["split"] == "test" and link["index"] != "0"
    position = int(link["index"])

    follow = new_app(attr_methods=["saliency"], attr_trust=False)
    for key, value in link.items():
        follow.query_params[key] = value
    follow.run()
    follow.switch_page("app_pages/attributions.py").run()
    ok(follow)
    assert follow.session_state["example_split"] == "test" and follow.session_state["example_index"] == position
    # the map is Captum's saliency of the official MNIST row of that example, read from the idx file here
    epoch = int(link["epoch"])
    x = to_input(torch.from_numpy(official_image(fixture_run, "test", position).copy())[None])
    model = model_at(fixture_run, epoch)
    np.testing.assert_allclose(heatmap(follow, "attr_map_saliency"), saliency(model, x, int(model(x).argmax())),
                               rtol=1e-4, atol=1e-7)


def test_confusion_cell_survives_an_epoch_change(app, fixture_run):
    """The picked cell stays picked when the epoch (and so its count of examples) changes."""
    at = app("confusion")
    epochs = runs.prediction_epochs(fixture_run)
    at.sidebar.select_slider(key="epoch").set_value(epochs[-1]).run()
    predicted, labels = saved_predicted(fixture_run, epochs[-1], "val")
    wrong = predicted != labels
    t, p = int(labels[wrong][0]), int(predicted[wrong][0])
    at.selectbox(key="conf_cell").set_value(f"{t},{p}").run()
    ok(at)
    for epoch in (epochs[0], epochs[-1]):
        at.sidebar.select_slider(key="epoch").set_value(epoch).run()
        ok(at)
        pe, lab = saved_predicted(fixture_run, epoch, "val")
        n = int(((lab == t) & (pe == p)).sum())
        assert at.selectbox(key="conf_cell").value == f"{t},{p}"
        assert any(h.value.startswith(f"True {t}, predicted {p}: {n} example") for h in at.subheader)


# ----------------------------------------------------------------------------- kernels & activations

FILT_FAST = {"filt_topn": 1000, "filt_am_steps": 50, "filt_emb_n": 500}


def test_filters_kernels_follow_the_epoch(app, fixture_run):
    at = app("filters", **FILT_FAST)
    ok(at)
    epoch = at.session_state["epoch"]

    def kernels_shown() -> np.ndarray:
        z = heatmap(at, "filt_kernels")                  # 4x8 mosaic: a 1-row header above each 3x3, 1-px gaps
        return np.stack([z[1 + r * 5:1 + r * 5 + 3, c * 4:c * 4 + 3] for r in range(4) for c in range(8)])

    weights = runs.load_state_dict(fixture_run, epoch)["conv1.weight"][:, 0].numpy()
    np.testing.assert_allclose(kernels_shown(), weights, rtol=1e-6)
    # every kernel numbered, centred above its 3x3
    (numbers,) = [t for t in chart(at, "filt_kernels")["data"] if t.get("name") == "tile numbers"]
    labels = {text: (x, y) for text, x, y in zip(numbers["text"], array(numbers["x"]), array(numbers["y"]))}
    assert labels == {str(k): ((k % 8) * 4 + 1, (k // 8) * 5) for k in range(32)}
    # the words table: one row per kernel, weight range from the checkpoint
    (table,) = [t.value for t in at.table if "responds to" in t.value.columns]
    assert [int(k) for k in table.index] == list(range(32))
    assert table.iloc[3]["weight range (min … max)"] == f"{weights[3].min():.3f} … {weights[3].max():.3f}"
    assert table["responds to"].str.len().min() > 0
    first = runs.checkpoint_epochs(fixture_run)[0]
    at.sidebar.select_slider(key="epoch").set_value(first).run()
    ok(at)
    np.testing.assert_allclose(kernels_shown(), runs.load_state_dict(fixture_run, first)["conv1.weight"][:, 0].numpy(),
                               rtol=1e-6)
    assert not chart(at, "filt_kernels").get("frames")                    # one epoch, until asked to animate
    at.toggle(key="filt_animate").set_value(True).run()
    ok(at)
    frames = chart(at, "filt_kernels")["frames"]
    assert [f["name"] for f in frames] == [str(e) for e in runs.checkpoint_epochs(fixture_run)]
    np.testing.assert_allclose(kernels_shown(), runs.load_state_dict(fixture_run, first)["conv1.weight"][:, 0].numpy(),
                               rtol=1e-6)                                 # still the sidebar's epoch

    # the embedding: sklearn's PCA of the fc1 features (after ReLU) of the first 500 test images, one trace per class
    from sklearn.decomposition import PCA
    model = model_at(fixture_run, first)
    raw = load_raw()
    x = to_input(torch.from_numpy(raw["t10k-images-idx3-ubyte"][:500].copy()))
    with torch.no_grad():
        h = model.pool2(model.relu2(model.conv2(model.pool1(model.relu1(model.conv1(x))))))
        feats = model.relu3(model.fc1(h.flatten(1))).numpy()
    xy = PCA(n_components=2, random_state=0).fit_transform(feats)
    labels = raw["t10k-labels-idx1-ubyte"][:500]
    at.session_state["filt_view"] = "Embedding"
    at.run()
    ok(at)
    assert chart(at, "filt_emb_sel")["layout"]["xaxis"]["title"]["text"] == "PC 1"
    traces = chart(at, "filt_emb_sel")["data"]
    assert [t["name"] for t in traces] == [str(c) for c in range(10)]
    for c, t in enumerate(traces):
        np.testing.assert_array_equal(array(t["customdata"]), np.flatnonzero(labels == c))
        np.testing.assert_allclose(array(t["x"]), xy[labels == c, 0], rtol=1e-3, atol=1e-3)


def test_filters_walkthrough_conv1_window_and_top_images(app, fixture_run):
    from dashboard.walkthrough import clicked_unit
    # the shared example (test #4, as every page names it) and one conv1 unit preset by its inputs
    at = app("filters", filt_view="Walk-through", example_split="test", example_index=4, filt_conv_channel=3,
             filt_conv_row=9, filt_conv_col=11, **FILT_FAST)
    ok(at)
    assert (at.session_state["filt_split"], at.session_state["filt_index"]) == ("test", 4)
    epoch = at.session_state["epoch"]
    model = model_at(fixture_run, epoch)
    x = split_image(4, fixture_run)
    with torch.no_grad():
        probs = torch.softmax(model(x), 1)[0].numpy()
        conv1 = F.conv2d(x, model.conv1.weight, model.conv1.bias)[0].numpy()     # (32,26,26)
    assert "test #4 · label" in " ".join(captions(at))
    np.testing.assert_allclose(array(chart(at, "filt_walk_stage_softmax")["data"][0]["y"]), probs, rtol=1e-4, atol=1e-7)
    text = markdown(at)
    assert "Multiply and sum" in text and f"gives **{conv1[3, 9, 11]:.4f}**, conv1 channel 3 at row 9, column 11 " \
        "of test #4." in text
    shapes = {"conv1": "32×26×26", "pool1": "32×13×13", "conv2": "64×11×11", "pool2": "64×5×5"}
    for stage, shape in shapes.items():
        assert shape in chart(at, f"filt_walk_stage_{stage}")["layout"]["title"]["text"]
    # why fc1 is wider than its input, in one sentence
    assert any("fc1 (4608 units) is wider than its input (1600 pooled values)" in c.value
               and "small-fc variant uses 128" in c.value for c in at.caption)

    # the conv1 mosaic: a click on a unit names the kernel, the row and the column at once
    fig = chart(at, "filt_walk_stage_conv1")
    z, points = array(fig["data"][0]["z"]), fig["data"][-1]                 # the heatmap, the click points
    cells = array(points["customdata"])                                      # channel, row, col, value
    i = int(np.flatnonzero((cells[:, 0] == 3) & (cells[:, 1] == 16) & (cells[:, 2] == 11))[0])
    px, py = array(points["x"])[i], array(points["y"])[i]
    assert z[int(py), int(px)] == pytest.approx(conv1[3, 16, 11], abs=1e-5)  # the mosaic cell is that unit
    assert cells[i, 3] == pytest.approx(conv1[3, 16, 11], abs=1e-5)
    assert clicked_unit({"x": px, "y": py}, conv1.shape, mosaic=True) == (3, 16, 11)

    at.number_input(key="filt_conv_channel").set_value(5).run()            # another kernel, same unit
    ok(at)
    assert f"gives **{conv1[5, 9, 11]:.4f}**" in markdown(at)
    # another example on this page is the shared example on every page
    at.number_input(key="filt_index").set_value(7).run()
    ok(at)
    assert at.session_state["example_index"] == 7 and "test #7 · label" in " ".join(captions(at))

    # the top image of conv2 channel 0: highest max of its post-ReLU map over the first 1000 test images
    at.session_state["filt_view"] = "What excites a channel"   # conv2: the last conv layer, the default
    at.run()
    ok(at)
    raw = load_raw()
    imgs = to_input(torch.from_numpy(raw["t10k-images-idx3-ubyte"][:1000].copy()))
    with torch.no_grad():
        scores = model.relu2(model.conv2(model.pool1(model.relu1(model.conv1(imgs)))))[:, 0].amax(dim=(1, 2))
    top = int(torch.argmax(scores))
    shown = captions(at)
    assert any(c.startswith(f"test #{top} ") for c in shown), shown
    # the kernel summary: mean |weight| over the 32 input channels, by hand from the checkpoint
    w2 = runs.load_state_dict(fixture_run, epoch)["conv2.weight"].double().numpy()
    z = heatmap(at, "filt_unit_kernels")                                           # 8x8 mosaic of 3x3, header 1, gap 1
    np.testing.assert_allclose(z[1 + 5:1 + 5 + 3, 2 * 4:2 * 4 + 3], np.abs(w2[10]).sum(axis=0) / 32, rtol=1e-5)


def test_kernel_3_at_a_unit_of_an_example_takes_three_interactions(app, fixture_run):
    """"What does conv1 kernel 3 compute at row 16, column 11 of val #115?": open the walk-through, type the
    example, click the unit in the conv1 mosaic: three interactions, and the answer is torch's conv2d."""
    at = app("filters", **FILT_FAST)                                          # the page, as it opens
    ok(at)
    interactions = 0
    at.segmented_control(key="filt_view").set_value("Walk-through").run()     # 1. open the walk-through
    interactions += 1
    at.selectbox(key="filt_split").set_value("val").run()                     # the default split: no interaction
    at.number_input(key="filt_index").set_value(115).run()                    # 2. type the example
    interactions += 1
    ok(at)
    points = chart(at, "filt_walk_stage_conv1")["data"][-1]
    cells = array(points["customdata"])
    i = int(np.flatnonzero((cells[:, 0] == 3) & (cells[:, 1] == 16) & (cells[:, 2] == 11))[0])
    click = {"x": array(points["x"])[i], "y": array(points["y"])[i], "curve_number": 2, "point_index": i}
    at.session_state["filt_walk_stage_conv1"] = {"selection": {"points": [click], "point_indices": [i],
                                                               "box": [], "lasso": []}}
    at.run()                                                                   # 3. click the unit
    interactions += 1
    ok(at)
    assert interactions == 3
    assert (at.session_state["filt_conv_channel"], at.session_state["filt_conv_row"],
            at.session_state["filt_conv_col"]) == (3, 16, 11)
    model = model_at(fixture_run, at.session_state["epoch"])
    row = runs.load_predictions(fixture_run, 3)["val_index"][115]
    file = {"test": "t10k-images-idx3-ubyte", "train": "train-images-idx3-ubyte"}[
        runs.load_config(fixture_run).data.official_file("val")]
    x = to_input(torch.from_numpy(load_raw()[file][row:row + 1].copy()))
    with torch.no_grad():
        expected = F.conv2d(x, model.conv1.weight, model.conv1.bias)[0, 3, 16, 11].item()
    assert f"gives **{expected:.4f}**, conv1 channel 3 at row 16, column 11 of val #115." in markdown(at)


# ----------------------------------------------------------------------------- draw a digit

def digit_upload(position: int = 0) -> bytes:
    """An MNIST test digit drawn dark on a light background at 10x size, as a PNG."""
    img = load_raw()["t10k-images-idx3-ubyte"][position]
    big = np.asarray(Image.fromarray(255 - img).resize((280, 280), Image.BILINEAR))
    return png(np.stack([big] * 3, axis=-1))                               # RGB


def test_draw_blank_canvas_asks_for_a_digit(app):
    at = app("draw")
    ok(at)
    assert any("Draw a digit" in i.value for i in at.info)
    assert "Prediction:" not in markdown(at)


def test_draw_upload_predicts_and_follows_the_epoch(app, fixture_run):
    from analysis.preprocess import preprocess
    at = app("draw", draw_source="upload")
    ok(at)
    data = digit_upload(0)
    at.file_uploader(key="draw_upload").set_value(("digit.png", data, "image/png")).run()
    ok(at)
    x = preprocess(data).tensor
    epoch = at.session_state["draw_epoch"]
    with torch.no_grad():
        p = torch.softmax(model_at(fixture_run, epoch)(x), 1)[0].numpy()
    assert f"Prediction: {int(p.argmax())}" in markdown(at)
    np.testing.assert_allclose(array(chart(at, "draw_probs")["data"][0]["y"]), p, rtol=1e-4, atol=1e-7)
    assert "Draw a digit" not in "".join(i.value for i in at.info)
    # the hand-computed conv1 example starts where channel 0 responds most (not on an empty corner)
    with torch.no_grad():
        c0 = model_at(fixture_run, epoch).conv1(x)[0, 0].numpy()
    assert (at.session_state["draw_conv_row"], at.session_state["draw_conv_col"]) == \
        tuple(int(i) for i in np.unravel_index(np.argmax(c0), c0.shape))
    # preprocessing steps are numbered 1, 2, ... in the order shown, whatever steps were skipped
    numbered = [c for c in captions(at) if " · " in c and c[0].isdigit()]
    assert [int(c.split(" · ")[0]) for c in numbered] == list(range(1, len(numbered) + 1)), numbered

    first = runs.checkpoint_epochs(fixture_run)[0]
    assert first != epoch
    at.select_slider(key="draw_epoch").set_value(first).run()
    ok(at)
    with torch.no_grad():
        p1 = torch.softmax(model_at(fixture_run, first)(x), 1)[0].numpy()
    np.testing.assert_allclose(array(chart(at, "draw_probs")["data"][0]["y"]), p1, rtol=1e-4, atol=1e-7)
    assert not np.allclose(p, p1)
    sal = saliency(model_at(fixture_run, first), x, int(p1.argmax()))
    np.testing.assert_allclose(heatmap(at, "draw_saliency"), sal, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("name, data, message", [
    ("notes.png", b"these are not the pixels you are looking for", "not an image"),
    ("huge.png", b"\x89PNG" + bytes(11 * 1024 * 1024), "the limit is 10 MB"),
    ("wide.png", png(np.zeros((10, 5000), np.uint8)), "the limit is 4096 pixels"),
])
def test_draw_bad_uploads_get_a_clear_message(app, name, data, message):
    at = app("draw", draw_source="upload")
    at.file_uploader(key="draw_upload").set_value((name, data, "image/png")).run()
    assert not at.exception
    shown = errors(at)
    assert len(shown) == 1 and message in shown[0], shown
    assert "Prediction:" not in markdown(at)


# ----------------------------------------------------------------------------- a run with metrics only

def test_pages_say_what_is_missing_without_checkpoints(copy_run, monkeypatch):
    import shutil
    run = copy_run("metrics-only")
    shutil.rmtree(run / "checkpoints")
    shutil.rmtree(run / "predictions")
    monkeypatch.setenv("DIGIT_LENS_RUNS", str(run.parent))
    for page in ("attributions", "filters", "draw"):
        at = new_app().run()
        at.switch_page(f"app_pages/{page}.py").run()
        ok(at)
        assert any("checkpoints" in i.value for i in at.info), (page, [i.value for i in at.info])
        assert not at.get("plotly_chart"), page


# ----------------------------------------------------------------------------- figure details

def test_maps_ticks_constant_maps_and_no_negative_zero():
    from dashboard import maps
    bars = maps.probability_bars(np.full(10, 0.1))
    assert list(bars.layout.xaxis.tickvals) == list(range(10))               # every class labelled
    blank = maps.attribution_figure(np.zeros((28, 28)), signed=False)
    assert blank.data[0].colorbar.tickformat and "s" not in blank.data[0].colorbar.tickformat   # no SI prefixes
    assert blank.data[0].zmax == 1.0                                          # not a 1e-12 scale
    assert maps.constant_value(np.zeros((28, 28))) == 0.0
    assert str(maps.constant_value(np.full((3, 3), -0.0))) == "0.0"                  # not "-0.0"
    assert maps.constant_value(np.eye(3)) is None
    cells = maps.numbers_figure(np.array([[-0.0001, 0.5], [-0.2, 0.0]]), "t").data[1].text
    assert list(cells) == ["0.000", "0.500", "-0.200", "0.000"]


def _contrast(a: str, b: str) -> float:
    """WCAG contrast ratio of two colours given as "#RRGGBB" or "rgb(r, g, b)" (the reference formula)."""
    def lum(c: str) -> float:
        rgb = [int(c[i:i + 2], 16) for i in (1, 3, 5)] if c.startswith("#") else \
            [int(float(v)) for v in c[c.index("(") + 1:-1].split(",")]
        lin = [v / 255 / 12.92 if v / 255 <= 0.04045 else ((v / 255 + 0.055) / 1.055) ** 2.4 for v in rgb]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    hi, lo = sorted((lum(a), lum(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


@pytest.mark.parametrize("image, signed", [(True, False), (False, True), (False, False)])
def test_numbers_are_readable_on_their_cells(image, signed):
    from plotly.colors import sample_colorscale
    from dashboard import maps
    values = np.linspace(-1, 1, 25).reshape(5, 5) if signed else np.linspace(0, 1, 25).reshape(5, 5)
    fig = maps.numbers_figure(values, "t", signed=signed, image=image)
    heat, text = fig.data[0], fig.data[1]
    scale = [c[1] for c in heat.colorscale]
    cells = sample_colorscale([[p, c] for p, c in heat.colorscale],
                              list(((values - heat.zmin) / (heat.zmax - heat.zmin)).ravel()))
    assert scale and len(cells) == 25
    for cell, color in zip(cells, text.textfont.color):
        assert _contrast(cell, color) >= 4.5, (cell, color)
    if image:                                    # black cell (0) -> white numbers, white cell (1) -> black numbers
        assert (text.textfont.color[0], text.textfont.color[-1]) == ("#FFFFFF", "#000000")
    assert list(fig.layout.xaxis.tickvals) == [0, 1, 2, 3, 4]


def test_single_maps_have_row_and_column_ticks():
    from dashboard import maps
    fig = maps.image_figure(np.zeros((28, 28)), "t")
    assert list(fig.layout.xaxis.tickvals) == [0, 5, 10, 15, 20, 25] == list(fig.layout.yaxis.tickvals)
    assert (fig.layout.xaxis.title.text, fig.layout.yaxis.title.text) == ("column", "row")
    attr = maps.attribution_figure(np.zeros((26, 26)), signed=True)
    assert list(attr.layout.yaxis.tickvals) == [0, 5, 10, 15, 20, 25]


def test_lines_with_gaps_puts_each_group_in_order_with_a_gap_between():
    from dashboard import maps
    table = pd.DataFrame({"kernel": [1, 0, 0, 1], "epoch": [2, 1, 2, 1], "d": [0.4, 0.1, 0.2, 0.3]})
    x, y, who = maps.lines_with_gaps(table.sort_values(["kernel", "epoch"]), "kernel", "epoch", "d")
    np.testing.assert_array_equal(x, [1, 2, np.nan, 1, 2, np.nan])
    np.testing.assert_array_equal(y, [0.1, 0.2, np.nan, 0.3, 0.4, np.nan])
    assert list(who) == [0, 0, 0, 1, 1, 1]
