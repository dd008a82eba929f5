"""The "why this mistake" views (issue 10, dashboard/why.py) on the Attributions, Confusion and Overfitting pages.

Pages are driven with Streamlit's AppTest on private copies of the fixture run (tests/conftest.py). What a view
shows is compared with the analysis functions called directly, outside Streamlit (the references): TracIn
proponents (analysis.influence.influence), the smallest change (analysis.counterfactual.smallest_change), label
issues (analysis.label_issues.run_label_issues), the diff (analysis.diff.diff) and the images forgotten at a spike
(analysis.diff.forgotten). The spike link is checked on a run built to have a spike and on one built without.
"""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import streamlit as st
import torch

from analysis import counterfactual, diff as diffs, influence, label_issues
from model import runs
from tests.apptest_util import captions, errors, ok, open_app
from tests.test_spike_views import spiked

EPOCH = 3


def fresh(copy_run, name: str = "why"):
    """A private copy of the fixture run (no analysis cache) and Streamlit's caches cleared."""
    st.cache_data.clear()
    st.cache_resource.clear()
    return copy_run(name)


def example_image(run, split: str = "val", index: int = 0) -> np.ndarray:
    """The example's uint8 pixels, read from the official file by the run's saved index (the reference path)."""
    from dashboard.cache import official_images
    with np.load(runs.predictions_path(run, EPOCH)) as z:
        row = int(z[f"{split}_index"][index])
    return official_images(runs.load_config(run).data.official_file(split), np.array([row]))[0]


def metric(at, label: str) -> str:
    found = [m for m in at.metric if m.label == label]
    assert len(found) == 1, [m.label for m in at.metric]
    return found[0].value


def only_table(at) -> pd.DataFrame:
    """The one st.dataframe of the view (AppTest keeps no key on dataframes)."""
    (table,) = at.dataframe
    return table.value


def texts(at) -> str:
    return " ".join(e.value for kind in ("markdown", "info", "warning", "caption") for e in at.get(kind))


# ----------------------------------------------------------------------------- Attributions

def test_training_images_behind_this_equal_tracin(monkeypatch, copy_run):
    run = fresh(copy_run)
    at = open_app(monkeypatch, run.parent, "attributions", _wanted_epoch=EPOCH, attr_view="Training images behind this")
    ok(at)
    button = at.button(key="attr_inf_pass")
    assert "Compute the training-set pass (less than a minute, once per run)" in button.label
    assert not [c for c in captions(at) if c.startswith("train #")], "nothing is scored before the pass"
    button.click().run()
    ok(at)
    image = example_image(run)
    for target in (None, 5):       # the predicted class, then a chosen class
        if target is not None:
            at.selectbox(key="attr_inf_target").select(target).run()
            ok(at)
        ref = influence.influence(run, image, target=target, epoch=EPOCH, k=8)
        shown = [c for c in captions(at) if c.startswith("train #")]
        want = [f"train #{r.official_row} · label {r.label} · {r.score:+.3g}" for r in ref["proponents"].itertuples()]
        want_opp = [f"train #{r.official_row} · label {r.label} · {r.score:+.3g}" for r in ref["opponents"].itertuples()]
        assert shown[:8] == want
        assert shown[8:16] == want_opp
        assert f"Proponents of class {ref['target']}" in texts(at)
    # the self-influence gallery: highest first, as analysis.influence ranks it
    selfs = influence.self_influence(run, EPOCH)
    top = influence.top_examples(selfs, 16, run)
    assert [c for c in captions(at) if c.startswith("train #")][16:32] == [
        f"train #{r.official_row} · label {r.label} · {r.score:.3g}" for r in top.itertuples()]
    # once on disk, a new session loads it without the button
    st.cache_resource.clear()
    again = open_app(monkeypatch, run.parent, "attributions", _wanted_epoch=EPOCH,
                     attr_view="Training images behind this")
    ok(again)
    assert not [b for b in again.button if b.key == "attr_inf_pass"]
    assert len([c for c in captions(again) if c.startswith("train #")]) == 32


def test_smallest_change_equals_the_search(monkeypatch, copy_run):
    run = fresh(copy_run)
    at = open_app(monkeypatch, run.parent, "attributions", _wanted_epoch=EPOCH, attr_view="Smallest change")
    ok(at)
    model = runs.load_model(run, EPOCH)
    x = torch.from_numpy(example_image(run).astype(np.float32) / 255)[None, None]
    with torch.no_grad():
        probs = torch.softmax(model(x), 1)[0].numpy()
    label = int(np.load(runs.predictions_path(run, EPOCH))["val_labels"][0])
    order = np.argsort(-probs)
    target = label if order[0] != label else int(order[1])          # the documented default
    assert f"Target: **class {target}**" in texts(at)
    ref = counterfactual.smallest_change(model, x, target)
    assert metric(at, "Found") == ("yes" if ref["found"] else "no")
    assert metric(at, "Radius (L2)") == f"{ref['radius']:.3f}"
    assert metric(at, "New answer") == str(ref["prediction"])
    other = next(c for c in range(10) if c not in (target, int(order[0])))
    at.selectbox(key="attr_cf_target").select(other).run()
    ok(at)
    ref = counterfactual.smallest_change(model, x, other)
    assert metric(at, "Radius (L2)") == f"{ref['radius']:.3f}"


# ----------------------------------------------------------------------------- Confusion: label issues

def test_label_issues_equal_cleanlab_ranking_and_csv_holds_all_rows(monkeypatch, copy_run):
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
    saved = []
    real = MemoryMediaFileStorage.load_and_get_id

    def record(self, path_or_data, mimetype, kind, filename=None):
        saved.append((mimetype, filename, path_or_data))
        return real(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", record)
    run = fresh(copy_run)
    at = open_app(monkeypatch, run.parent, "confusion", _wanted_epoch=EPOCH, conf_why="Label issues")
    ok(at)
    for split in ("train", "val", "test"):
        saved.clear()
        at.radio(key="conf_li_split").set_value(split).run()
        ok(at)
        ref, kind = label_issues.run_label_issues(run, split, EPOCH)
        assert f"Probabilities used: **{kind}**" in texts(at)
        table = only_table(at)
        cols = ["position", "official_row", "given", "suggested"]
        pd.testing.assert_frame_equal(table[cols].head(20).reset_index(drop=True),
                                      ref[cols].head(20).reset_index(drop=True), check_dtype=False)
        assert np.allclose(table["confidence"].head(20), ref["confidence"].head(20))
        (csv,) = [d for m, f, d in saved if m == "text/csv"]
        got = pd.read_csv(io.BytesIO(csv))
        assert len(got) == len(ref)
        assert got["official_row"].tolist() == ref["official_row"].tolist()
        assert at.download_button(key="conf_li_csv").label == f"Download all {len(ref):,} rows (CSV)"


def test_label_issues_of_an_imported_run_say_why_train_is_missing(monkeypatch, tmp_path, mnist_root):
    from tests.model_zoo import import_zoo
    st.cache_data.clear()
    run = import_zoo(tmp_path / "runs", "lenet", form="class", data_root=mnist_root)
    at = open_app(monkeypatch, run.parent, "confusion", conf_why="Label issues")
    ok(at)                                                  # the message is an info box, not an error
    assert at.radio(key="conf_li_split").value == "train"
    message = " ".join(i.value for i in at.info)
    assert "No label issues for the training split of this run" in message
    assert "no training probabilities" in message
    at.radio(key="conf_li_split").set_value("val").run()
    ok(at)
    ref, _ = label_issues.run_label_issues(run, "val", 1)
    assert only_table(at)["official_row"].head(10).tolist() == \
        ref["official_row"].head(10).tolist()


# ----------------------------------------------------------------------------- Confusion: what changed

def diff_counts(at) -> dict[str, int]:
    from dashboard.why import GROUP_NAMES
    return {g: int(metric(at, name).replace(",", "")) for g, name in GROUP_NAMES.items()}


def test_what_changed_equals_the_diff(monkeypatch, copy_run):
    run = fresh(copy_run)
    at = open_app(monkeypatch, run.parent, "confusion", _wanted_epoch=EPOCH, conf_why="What changed")
    ok(at)
    assert at.selectbox(key="conf_diff_epoch").value == EPOCH - 1          # default: the previous epoch
    ref = diffs.diff(run, EPOCH - 1, run, EPOCH, "val")
    assert diff_counts(at) == ref.counts
    assert metric(at, "churn") == f"{ref.churn:.1%}"
    flips = only_table(at)
    assert flips.to_numpy().tolist() == ref.flips.to_numpy().tolist()
    at.selectbox(key="conf_diff_epoch").select(1).run()
    ok(at)
    assert diff_counts(at) == diffs.diff(run, 1, run, EPOCH, "val").counts


def test_what_changed_refuses_runs_that_scored_other_examples(monkeypatch, copy_run):
    run = fresh(copy_run, "a")
    other = copy_run("b")
    path = runs.predictions_path(other, EPOCH)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["val_index"] = arrays["val_index"] + 1                        # other rows of the official file
    np.savez(path, **arrays)
    with pytest.raises(ValueError):
        diffs.diff(other, EPOCH, run, EPOCH, "val")
    at = open_app(monkeypatch, run.parent, "confusion", run_id=run.name, _wanted_epoch=EPOCH,
                  conf_why="What changed")
    at.selectbox(key="conf_diff_run").select(other.name).run()
    at.selectbox(key="conf_diff_epoch").select(EPOCH).run()
    ok(at)
    assert any("cannot be compared example by example" in w.value for w in at.warning)
    assert not [m for m in at.metric if m.label == "churn"]


# ----------------------------------------------------------------------------- Overfitting: the spike's link

@pytest.mark.parametrize("spike", [True, False])
def test_spike_links_to_the_forgotten_images_and_the_diff(monkeypatch, copy_run, spike):
    st.cache_data.clear()
    run = spiked(copy_run, spike)
    at = open_app(monkeypatch, run.parent, "overfitting")
    ok(at)
    links = [b for b in at.button if b.key == "over_spike_go_2"]
    if not spike:
        assert not links and "Forgotten at epoch" not in texts(at)
        return
    n = len(diffs.forgotten(run, 2, "val"))
    assert (f"Forgotten at epoch 2: {n} validation image{'s' if n != 1 else ''} broke at epoch 2 and came back "
            "at epoch 3.") in texts(at)
    at.toggle(key="over_spike_show_2").set_value(True).run()
    ok(at)
    assert len([c for c in captions(at) if c.startswith("#")]) == min(n, 24)
    links[0].click().run()
    ok(at)
    assert at.session_state["conf_why"] == "What changed"          # now on the Confusion page, preset
    assert at.session_state["epoch"] == 2
    assert at.selectbox(key="conf_diff_epoch").value == 1
    assert diff_counts(at) == diffs.diff(run, 1, run, 2, "val").counts


def test_every_view_renders_without_an_error(monkeypatch, copy_run):
    run = fresh(copy_run)
    at = open_app(monkeypatch, run.parent, "attributions", _wanted_epoch=EPOCH)
    for view in ("Training images behind this", "Smallest change"):
        at.session_state["attr_view"] = view
        at.run()
        ok(at)
    at.switch_page("app_pages/confusion.py").run()
    for view in ("Label issues", "What changed"):
        at.session_state["conf_why"] = view
        at.run()
        ok(at)
    assert not errors(at)


# ----------------------------------------------------------------------------- one path per number

def test_the_new_views_read_and_compute_each_thing_once_per_rerun(monkeypatch, copy_run):
    """tests/test_one_path.py's check on the new views: a cold rerun of each reads no run file twice and loads no
    model twice (the TracIn pass is on disk first, as after its button)."""
    from tests.test_one_path import _cold_rerun, _install_counters, _report
    from tests.apptest_util import new_app
    run = spiked(copy_run, True)
    influence.train_pass(run)
    monkeypatch.setenv("DIGIT_LENS_RUNS", str(run.parent))
    calls = _install_counters(monkeypatch)
    at = new_app(_wanted_epoch=EPOCH)
    found = {"(first run)": _cold_rerun(at, calls, None)}
    for view in ("Training images behind this", "Smallest change"):
        found[view] = _cold_rerun(at, calls, "attributions", attr_view=view)
    for view, split in (("Label issues", "train"), ("Label issues", "val"), ("What changed", None)):
        extra = {"conf_li_split": split} if split else {}
        found[f"{view} {split or ''}"] = _cold_rerun(at, calls, "confusion", conf_why=view, **extra)
    found["overfitting spike"] = _cold_rerun(at, calls, "overfitting", over_spike_show_2=True)
    problems = _report(found, lambda page, name: True)
    assert not problems, "\n".join(problems)


def test_read_only_the_new_views_write_nothing_into_the_run(monkeypatch, copy_run, tmp_path):
    """Read-only serving (dashboard/mode.py): the TracIn pass goes to $DIGIT_LENS_CACHE, and a tour of every new
    view (pass computed with its button) leaves the run folder's files byte for byte as they were."""
    import sys

    from dashboard import mode
    from tests.test_read_only import tree_hash
    run = fresh(copy_run)
    monkeypatch.setattr(sys, "argv", ["dashboard/app.py", "--read-only"])
    monkeypatch.setenv(mode.CACHE_ENV, str(tmp_path / "cache"))
    before = tree_hash(run)
    at = open_app(monkeypatch, run.parent, "attributions", _wanted_epoch=EPOCH, attr_view="Training images behind this")
    at.button(key="attr_inf_pass").click().run()
    ok(at)
    assert "Proponents of class" in texts(at)
    at.session_state["attr_view"] = "Smallest change"
    at.run()
    ok(at)
    at.switch_page("app_pages/confusion.py").run()
    for view, split in (("Label issues", "train"), ("What changed", None)):
        at.session_state["conf_why"] = view
        if split:
            at.session_state["conf_li_split"] = split
        at.run()
        ok(at)
    assert tree_hash(run) == before
    assert list((tmp_path / "cache").rglob("*tracin*")), "the pass is stored in the read-only cache folder"


def test_draw_what_would_make_this_a_4(monkeypatch, copy_run):
    """Draw page: an uploaded digit, the smallest change to class 4, equal to the search on the same 28x28 image."""
    from PIL import Image

    from analysis.preprocess import preprocess
    from dashboard.cache import load_raw_mnist
    run = fresh(copy_run)
    digit = 255 - load_raw_mnist()["t10k-images-idx3-ubyte"][0]
    buf = io.BytesIO()
    Image.fromarray(np.asarray(Image.fromarray(digit).resize((280, 280)))).save(buf, format="PNG")
    at = open_app(monkeypatch, run.parent, "draw", draw_source="upload", _wanted_epoch=EPOCH)
    at.file_uploader(key="draw_upload").set_value(("digit.png", buf.getvalue(), "image/png")).run()
    at.toggle(key="draw_cf_on").set_value(True).run()
    at.selectbox(key="draw_cf_target").select(4).run()
    ok(at)
    model = runs.load_model(run, EPOCH)
    x = preprocess(buf.getvalue()).tensor
    with torch.no_grad():
        pred = int(model(x).argmax(1))
    if pred == 4:
        assert any("already answers 4" in i.value for i in at.info)
        return
    ref = counterfactual.smallest_change(model, x, 4)
    assert metric(at, "Found") == ("yes" if ref["found"] else "no")
    assert metric(at, "Radius (L2)") == f"{ref['radius']:.3f}"


def test_smallest_change_out_of_reach_says_so(monkeypatch, copy_run):
    """A search limited to a tiny radius (built so that no target is reachable): "no", and the search's message."""
    import functools
    run = fresh(copy_run)
    monkeypatch.setenv("DIGIT_LENS_WORKERS", "0")        # the patched search must run in this process
    tiny = functools.partial(counterfactual.smallest_change, max_radius=0.01)
    monkeypatch.setattr(counterfactual, "smallest_change", tiny)
    at = open_app(monkeypatch, run.parent, "attributions", _wanted_epoch=EPOCH, attr_view="Smallest change")
    ok(at)
    model = runs.load_model(run, EPOCH)
    x = torch.from_numpy(example_image(run).astype(np.float32) / 255)[None, None]
    shown = " ".join(c.value for c in at.caption)
    target = int(shown.split("Target: **class ")[1].split("**")[0])
    ref = tiny(model, x, target)
    assert not ref["found"]
    assert metric(at, "Found") == "no"
    assert [w.value for w in at.warning if w.value == ref["message"]], [w.value for w in at.warning]
