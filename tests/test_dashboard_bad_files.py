"""Every page survives damaged run files: a clear message naming the damaged file, never a traceback or a crash box."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.apptest_util import new_app

PAGES = ["runs", "curves", "overfitting", "data_page", "confusion", "attributions", "filters", "draw"]
DAMAGES = {
    "metrics_not_numbers": lambda r: (r / "metrics.csv").write_text("epoch,train_loss,val_loss\nx,y,z\n"),
    "metrics_with_gaps": lambda r: (r / "metrics.csv").write_text(
        "epoch,train_loss,val_loss,val_acc\n1,nan,nan,nan\n2,0.5,,0.9\n"),
    "status_garbage": lambda r: (r / "status.json").write_text("]]"),
    "steps_binary": lambda r: (r / "steps.csv").write_bytes(b"\x00\xff\xfe garbage"),
    "predictions_wrong_keys": lambda r: [np.savez(p, foo=[1]) for p in (r / "predictions").glob("*.npz")],
    "model_config_wrong_types": lambda r: (r / "config.json").write_text(
        json.dumps({**json.loads((r / "config.json").read_text()), "model": {"fc1_units": "abc"}})),
}
# what the user must be told, by damage: (page, a text that some message box of that page contains)
TOLD = {
    "metrics_not_numbers": ("curves", "metrics.csv"),
    "metrics_with_gaps": ("overfitting", "NaN"),
    "status_garbage": ("runs", "failed"),
    "steps_binary": ("curves", "steps.csv"),
    "predictions_wrong_keys": ("confusion", "val_logits"),
    "model_config_wrong_types": ("attributions", "config.json"),
}


def messages(at) -> list[str]:
    """The texts of the error, warning and info boxes (sidebar included) and the runs table's status column."""
    out = [box.value for kind in ("error", "warning", "info") for box in getattr(at, kind)]
    if at.dataframe and "status" in getattr(at.dataframe[0].value, "columns", []):
        out += [str(s) for s in at.dataframe[0].value["status"]]
    return out


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_pages_survive_damaged_files(monkeypatch, copy_run, damage):
    run = copy_run("damaged")
    DAMAGES[damage](run)
    monkeypatch.setenv("DIGIT_LENS_RUNS", str(run.parent))
    told = {}
    for page in PAGES:
        at = new_app().run()
        at.switch_page(f"app_pages/{page}.py").run()
        assert not at.exception, (page, [e.value for e in at.exception])
        unexpected = [e.value for e in at.error if "unexpected problem" in e.value]
        assert not unexpected, (page, unexpected)
        told[page] = messages(at)
    page, text = TOLD[damage]
    assert any(text in m for m in told[page]), (damage, page, told[page])
