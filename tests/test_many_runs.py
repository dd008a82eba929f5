"""A runs folder with many runs: the Runs page filters and pages them; model.runs.filter_runs by hand."""
from __future__ import annotations

import shutil

import pandas as pd

from apptest_util import ok, open_app
from model import runs


def many_runs(fixture_run, folder, n: int):
    """n light copies of the fixture run (config, status, metrics only), named run-000 … with varied names."""
    for i in range(n):
        d = folder / f"20260101-{i:06d}-{'alpha' if i % 3 == 0 else 'beta'}-{i:03d}"
        d.mkdir(parents=True)
        for name in ("config.json", "status.json", "metrics.csv"):
            shutil.copy(fixture_run / name, d / name)
        cfg = runs.load_config(d)
        cfg.run_id, cfg.name, cfg.started_at = d.name, d.name.split("-", 2)[2], f"2026-01-01T00:{i:04d}"
        runs.atomic_write_json(runs.config_path(d), cfg.to_dict())
    return folder


def test_filter_runs_matches_every_word_in_any_field(fixture_run, tmp_path):
    infos = runs.list_runs(many_runs(fixture_run, tmp_path / "runs", 6))
    names = lambda found: sorted(r.name for r in found)                      # noqa: E731
    assert names(runs.filter_runs(infos, "alpha")) == ["alpha-000", "alpha-003"]
    assert names(runs.filter_runs(infos, "BETA 04")) == ["beta-004"]          # every word, any case
    assert names(runs.filter_runs(infos, "completed seed")) == names(infos)   # status and variant count too
    assert runs.filter_runs(infos, "gamma") == []
    assert names(runs.filter_runs(infos, "")) == names(infos)


def test_runs_page_filters_and_pages_a_large_folder(monkeypatch, fixture_run, tmp_path):
    folder = many_runs(fixture_run, tmp_path / "runs", 120)
    at = open_app(monkeypatch, folder, "runs")
    ok(at)
    table = at.dataframe[0].value
    assert len(table) == 50                                                  # page 1 of 3
    assert at.number_input(key="runs_page").label == "Page (of 3)"
    at.number_input(key="runs_page").set_value(3).run()
    ok(at)
    assert len(at.dataframe[0].value) == 20                                  # 120 = 50 + 50 + 20
    at.text_input(key="runs_filter").set_value("alpha").run()                # 40 alpha runs: one page
    ok(at)
    shown = at.dataframe[0].value
    assert len(shown) == 40 and shown["name"].str.startswith("alpha").all()
    m = pd.read_csv(fixture_run / "metrics.csv")
    assert set(shown["best epoch"]) == {int(m.loc[m["val_loss"].idxmin(), "epoch"])}
    at.text_input(key="runs_filter").set_value("nothing-like-this").run()
    ok(at)
    assert any("No run matches" in i.value for i in at.info)
    assert at.get("form"), "the training form still shows below"
