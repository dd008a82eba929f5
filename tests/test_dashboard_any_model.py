"""Every page works for networks defined outside digit-lens (issue 9): pytorch/examples' Net (a class file),
LeNet (a torch.export archive: nn.Sequential layers "0", "3", ...; 5×5 kernels, padding 2) and SmallRes
(batch norm, a residual addition, adaptive pooling), each imported as a one-epoch run (tests/model_zoo.py),
plus a class torch.fx cannot trace (so the hook-based attribution methods are unavailable).

Pages are driven with AppTest. Expected values come from the user's own network (the zoo class with the
weights that were imported) and torch's own conv2d and forward hooks, never from the dashboard's code.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from data.mnist import load_raw
from model import runs
from tests.apptest_util import array, chart, new_app, ok
from tests.model_zoo import import_zoo, zoo_model

ZOO = {"pytorch_examples": "class", "lenet": "export", "resnetish": "class"}
PAGES = ("runs", "curves", "overfitting", "data_page", "confusion", "attributions", "filters", "draw")
FAST = {"filt_topn": 1000, "filt_am_steps": 50, "filt_emb_n": 500, "attr_trust": False}
FILTER_VIEWS = ("Kernels", "What excites a channel", "Walk-through", "Embedding")

UNTRACEABLE = '''
import torch.nn as nn
import torch.nn.functional as F


class Moody(nn.Module):
    """F.relu and a branch on the data: torch.fx cannot trace it, so no module per non-linearity."""
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4 * 13 * 13, 10)

    def forward(self, x):
        h = F.relu(self.conv(x))
        if h.sum() > -1:
            h = F.max_pool2d(h, 2)
        else:
            h = F.avg_pool2d(h, 2)
        return self.fc(h.flatten(1))
'''


@pytest.fixture(scope="module")
def zoo_runs(tmp_path_factory, mnist_root) -> dict[str, Path]:
    """{stem: run folder} of the three zoo networks and "untraceable", imported into one runs folder."""
    from model.import_checkpoint import main as import_main
    root = tmp_path_factory.mktemp("any_model")
    folder = root / "runs"
    made = {stem: import_zoo(folder, stem, form=form, data_root=mnist_root) for stem, form in ZOO.items()}
    source = root / "moody.py"
    source.write_text(UNTRACEABLE)
    namespace: dict = {}
    exec(compile(UNTRACEABLE, str(source), "exec"), namespace)
    torch.manual_seed(0)
    torch.save(namespace["Moody"]().state_dict(), root / "moody.pt")
    assert import_main([str(root / "moody.pt"), "--name", "untraceable", "--model-file", str(source),
                        "--model-class", "Moody", "--runs-dir", str(folder), "--data-root", str(mnist_root)]) == 0
    (made["untraceable"],) = [p for p in folder.iterdir() if p.name.endswith("-untraceable")]
    return made


def open_run(monkeypatch, run: Path, page: str, **session):
    """The dashboard on the run's folder with `run` selected, switched to `page`."""
    monkeypatch.setenv("DIGIT_LENS_RUNS", str(run.parent))
    at = new_app(run_id=run.name, **{**FAST, **session}).run()
    at.switch_page(f"app_pages/{page}.py").run()
    return at


def markdown(at) -> str:
    return "\n".join(m.value for m in at.markdown)


def conv_modules(run: Path) -> list[tuple[str, nn.Conv2d]]:
    """The run's conv layers in forward order, found with forward hooks on the loaded model (names as loaded)."""
    model = runs.load_model(run, 1).eval()
    order: list[str] = []
    named = dict(model.named_modules())
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: order.append(n))
             for n, m in named.items() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model(torch.zeros(1, 1, 28, 28))
    for h in hooks:
        h.remove()
    return [(n, named[n]) for n in dict.fromkeys(order)]


def test_import_fixture_holds_the_networks(zoo_runs):
    for stem, run in zoo_runs.items():
        assert runs.load_config(run).source is not None, stem


@pytest.mark.parametrize("stem", [*ZOO, "untraceable"])
def test_every_page_and_view_renders(monkeypatch, zoo_runs, stem):
    run = zoo_runs[stem]
    for page in PAGES:
        at = open_run(monkeypatch, run, page)
        ok(at)
        assert at.title, page
    for view in FILTER_VIEWS:
        at = open_run(monkeypatch, run, "filters", filt_view=view)
        ok(at)
    if stem == "lenet":                       # the trust figures too, once (the slowest part)
        ok(open_run(monkeypatch, run, "attributions", attr_trust=True))
    # the runs table and the selected run's details name the architecture
    at = open_run(monkeypatch, run, "runs")
    table = at.dataframe[0].value.set_index("run")
    assert table.loc[run.name, "architecture"] == runs.load_config(run).architecture
    assert runs.load_config(run).architecture in markdown(at)


@pytest.mark.parametrize("stem", list(ZOO))
def test_gradcam_lists_the_models_conv_layers(monkeypatch, zoo_runs, stem):
    run = zoo_runs[stem]
    at = open_run(monkeypatch, run, "attributions")
    ok(at)
    convs = conv_modules(run)
    box = at.selectbox(key="attr_cam_layer")
    assert box.value == convs[-1][0]                                     # the last conv to start
    expected = []
    for name, m in convs:
        o, i, kh, kw = m.weight.shape
        shape = f"{o}×{kh}×{kw}" if i == 1 else f"{o}×{i}×{kh}×{kw}"
        expected.append(f"{name.removeprefix('net.')} (Conv2d {shape})")
    assert list(box.options) == expected
    # every listed layer gives a Grad-CAM map, no error
    for name, _ in convs:
        box.set_value(name).run()
        ok(at)
        assert chart(at, "attr_map_gradcam")["data"]


@pytest.mark.parametrize("stem", list(ZOO))
def test_walkthrough_draws_every_stage_in_forward_order(monkeypatch, zoo_runs, stem):
    run = zoo_runs[stem]
    at = open_run(monkeypatch, run, "filters", filt_view="Walk-through", example_split="test", example_index=4)
    ok(at)
    model = runs.load_model(run, 1).eval()
    leaves = {n: m for n, m in model.named_modules() if n and not list(m.children())}
    seen: list[tuple[str, tuple]] = []
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: seen.append((n, tuple(o.shape[1:]))))
             for n, m in leaves.items() if not isinstance(m, (nn.Identity, nn.Dropout, nn.Flatten))]
    with torch.no_grad():
        model(torch.zeros(1, 1, 28, 28))
    for h in hooks:
        h.remove()
    keys = [c.proto.id.rsplit("-", 1)[-1] for c in at.get("plotly_chart")]
    stage_keys = [k.removeprefix("filt_walk_stage_") for k in keys if k.startswith("filt_walk_stage_")]
    expected = ["input"] + [n for n, _ in seen[:-1]] + ["logits", "softmax"]   # the final layer: the logits
    assert stage_keys == expected
    for number, (name, shape) in enumerate(seen[:-1], start=2):
        title = chart(at, f"filt_walk_stage_{name}")["layout"]["title"]["text"]
        assert "×".join(map(str, shape)) in title and name.removeprefix("net.") in title, title
        assert title.startswith("①②③④⑤⑥⑦⑧⑨⑩⑪⑫⑬⑭⑮⑯⑰⑱⑲⑳"[number - 1]), title
    texts = " ".join(i.value for i in at.info) + " ".join(c.value for c in at.caption)
    if stem == "resnetish":
        assert "branches" in texts and "covers convolutions" in texts
    else:
        assert "branches" not in texts
    assert "pooled values" not in texts                              # the fc1 sentence is about our network only


def test_lenet_by_hand_equals_the_forward_pass_at_a_padded_border(monkeypatch, zoo_runs):
    run = zoo_runs["lenet"]
    channel, row, col = 2, 0, 1                                # the 5×5 window hangs over the 2-pixel padding
    at = open_run(monkeypatch, run, "filters", filt_view="Walk-through", example_split="test", example_index=4,
                  filt_conv_channel=channel, filt_conv_row=row, filt_conv_col=col)
    ok(at)
    index = runs.load_predictions(run, 1)["test_index"][4]
    x = torch.from_numpy(load_raw()["t10k-images-idx3-ubyte"][index].astype(np.float32) / 255.0)[None, None]
    lenet = zoo_model("lenet")                                  # the very weights that were imported
    with torch.no_grad():
        expected = F.conv2d(x, lenet[0].weight, lenet[0].bias, padding=2)[0, channel, row, col].item()
        assert lenet[0](x)[0, channel, row, col].item() == pytest.approx(expected, abs=1e-6)
    text = markdown(at)
    assert f"gives **{expected:.4f}**, layer 0 channel {channel} at row {row}, column {col} of test #4." in text
    # 25 products written out, the first two rows of the window are padding zeros
    terms = re.search(r"\*\*Multiply and sum:\*\* (.*?) = \*\*", text).group(1).split(" + ")
    assert len(terms) == 25 and all(t.startswith("(0.00×") for t in terms[:10])
    window = chart(at, "filt_conv_win")["data"][0]["z"]
    assert array(window).shape == (5, 5)
    assert any("pads its input with 2" in c.value for c in at.caption)
    # the clickable mosaic is layer 0's 6 channels of 28×28
    assert "6×28×28" in chart(at, "filt_walk_stage_net.0")["layout"]["title"]["text"]


def test_kernels_view_picks_any_conv_layer(monkeypatch, zoo_runs):
    run = zoo_runs["lenet"]
    at = open_run(monkeypatch, run, "filters")
    ok(at)
    lenet = zoo_model("lenet")
    z = array(chart(at, "filt_kernels")["data"][0]["z"])
    # 6 kernels 5×5 in one row of a mosaic: a header row above, 1-px gaps between
    header = max(1, round(5 / 7))
    for k in range(6):
        np.testing.assert_allclose(z[header:header + 5, k * 6:k * 6 + 5], lenet[0].weight[k, 0].detach().numpy(),
                                   rtol=1e-5, atol=1e-7)
    assert any("skipped because its kernels are 5×5" in c.value for c in at.caption)   # no 3×3 words
    at.selectbox(key="filt_kernel_layer").set_value("net.3").run()
    ok(at)
    summary = np.abs(lenet[3].weight.detach().double().numpy()).mean(axis=1)            # (16,5,5)
    z = array(chart(at, "filt_kernels")["data"][0]["z"])
    np.testing.assert_allclose(z[header:header + 5, 6:11], summary[1], rtol=1e-5)
    # what excites a channel: the last conv to start, any conv on demand
    at = open_run(monkeypatch, run, "filters", filt_view="What excites a channel")
    ok(at)
    assert at.selectbox(key="filt_unit_layer").value == "net.3"
    at.selectbox(key="filt_unit_layer").set_value("net.0").run()
    ok(at)
    assert at.get("plotly_chart") and chart(at, "filt_actmax")["data"]


def test_unavailable_methods_say_why_instead_of_a_map(monkeypatch, zoo_runs):
    run = zoo_runs["untraceable"]
    at = open_run(monkeypatch, run, "attributions", attr_methods=["saliency", "deeplift"])
    ok(at)
    infos = [i.value for i in at.info]
    assert any("DeepLift is unavailable for this model" in i for i in infos), infos
    keys = [c.proto.id.rsplit("-", 1)[-1] for c in at.get("plotly_chart")]
    assert "attr_map_saliency" in keys and "attr_map_deeplift" not in keys
    # marked in the picker, and not among the methods chosen at first
    at = open_run(monkeypatch, run, "attributions")
    ok(at)
    assert "deeplift" not in at.multiselect(key="attr_methods").value
    assert "DeepLift (unavailable)" in at.multiselect(key="attr_methods").options
    # the other views say so too
    at = open_run(monkeypatch, run, "attributions", attr_view="All ten classes", attr_all_method="guided_backprop")
    ok(at)
    assert any("unavailable for this model" in i.value for i in at.info)
    assert "attr_all_grid" not in [c.proto.id.rsplit("-", 1)[-1] for c in at.get("plotly_chart")]


def test_train_form_offers_imported_class_architectures(monkeypatch, zoo_runs):
    import subprocess
    import sys
    import time

    from dashboard import training
    calls = []
    monkeypatch.setattr(training, "launch", lambda runs_dir, name, **o: calls.append((name, o)) or
                        training.Launch(name, Path(runs_dir), Path(runs_dir) / "none.log", [],
                                        subprocess.Popen([sys.executable, "-c", "pass"]), time.time(), frozenset()))
    run = zoo_runs["pytorch_examples"]
    at = open_run(monkeypatch, run, "runs")
    ok(at)
    at.radio(key="runs_preset").set_value("custom").run()
    box = at.selectbox(key="runs_f_variant_custom")
    class_runs = [o for o in box.options if " · from " in o]
    # the two class-file runs (not the .pt2 archive): pytorch/examples' Net, SmallRes, the untraceable Moody
    assert len(class_runs) == 3 and not any("torch.export" in o for o in box.options)
    box.set_value(f"run:{run.name}")
    [submit] = [b for b in at.button if "Start training" in b.label]
    submit.click().run()
    ok(at)
    _, options = calls[0]
    src = runs.load_config(run).source
    assert options["model_file"] == str(run / src.file) and options["model_class"] == "Net"
    assert options["input_norm"] == pytest.approx([0.1307, 0.3081]) and "variant" not in options
    command = training.build_command(run.parent, "again", **{k: options[k] for k in
                                                              ("model_file", "model_class", "model_kwargs",
                                                               "input_norm")})
    assert command[command.index("--model-file") + 1] == str(run / src.file)
    assert command[command.index("--input-norm") + 1:command.index("--input-norm") + 3] == ["0.1307", "0.3081"]
    at.session_state["runs_launches"][0].process.wait(10)


@pytest.mark.parametrize("stem", ["lenet", "resnetish"])
def test_draw_reads_an_upload_with_the_imported_network(monkeypatch, zoo_runs, stem):
    import io

    from PIL import Image

    from analysis.preprocess import preprocess
    run = zoo_runs[stem]
    digit = 255 - load_raw()["t10k-images-idx3-ubyte"][0]
    buf = io.BytesIO()
    Image.fromarray(np.asarray(Image.fromarray(digit).resize((280, 280)))).save(buf, format="PNG")
    at = open_run(monkeypatch, run, "draw", draw_source="upload")
    at.file_uploader(key="draw_upload").set_value(("digit.png", buf.getvalue(), "image/png")).run()
    ok(at)
    model = runs.load_model(run, 1).eval()
    with torch.no_grad():
        p = torch.softmax(model(preprocess(buf.getvalue()).tensor), 1)[0].numpy()
    assert f"Prediction: {int(p.argmax())}" in markdown(at)
    np.testing.assert_allclose(array(chart(at, "draw_walk_stage_softmax")["data"][0]["y"]), p, rtol=1e-4, atol=1e-7)
    first = conv_modules(run)[0][0]
    assert chart(at, f"draw_walk_stage_{first}")["data"]                    # the clickable first conv mosaic
    assert "Multiply and sum" in markdown(at)
