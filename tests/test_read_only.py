"""Read-only serving (dashboard/mode.py): no training widgets, and a tour of every page writes nothing into a run.

The write check does not trust the app: the run folder is hashed file by file before and after, made read-only
with chmod, and an audit hook (sys.addaudithook, which also sees writes by root, whom chmod does not stop)
records every attempt to open for writing, create, rename or delete anything under the runs folder.
The same tour without read-only must write the analysis cache into the run folder (so the checks can fail).
"""
from __future__ import annotations

import hashlib
import os
import stat
import sys
from pathlib import Path

import pytest
import streamlit as st

from dashboard import mode
from model import runs
from tests.apptest_util import open_app

PAGES = ("runs", "curves", "overfitting", "data_page", "confusion", "attributions", "filters", "draw")
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_watch: dict[str, object] = {"root": None, "hits": []}


def _audit(event: str, args: tuple) -> None:
    root = _watch["root"]
    if root is None:
        return
    paths = []
    if event == "open" and len(args) >= 3:
        path, mode_, flags = args[0], args[1], args[2]
        writing = (isinstance(mode_, str) and any(c in mode_ for c in "wax+")) or (
            isinstance(flags, int) and flags & WRITE_FLAGS)
        if writing and isinstance(path, (str, bytes, os.PathLike)):
            paths = [path]
    elif event in ("os.rename", "os.replace", "os.link", "os.symlink"):
        paths = [a for a in args[:2] if isinstance(a, (str, bytes, os.PathLike))]
    elif event in ("os.mkdir", "os.remove", "os.rmdir", "os.truncate", "os.chmod", "os.utime", "shutil.rmtree"):
        paths = [args[0]] if args and isinstance(args[0], (str, bytes, os.PathLike)) else []
    for p in paths:
        p = os.fsdecode(p)
        if os.path.abspath(p).startswith(root):
            _watch["hits"].append((event, p))


sys.addaudithook(_audit)


def tree_hash(folder: Path) -> dict[str, str]:
    """{relative path: sha256 of the bytes} of every file, plus every folder (value "dir")."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def set_writable(folder: Path, writable: bool) -> None:
    for p in [folder, *folder.rglob("*")]:
        m = p.stat().st_mode
        w = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
        p.chmod(m | stat.S_IWUSR if writable else m & ~w)


def tour(monkeypatch, runs_folder: Path) -> None:
    """Open every page (fresh Streamlit caches, so the slow analyses really run)."""
    st.cache_data.clear()
    st.cache_resource.clear()
    at = open_app(monkeypatch, runs_folder)
    for page in PAGES:
        at.switch_page(f"app_pages/{page}.py").run()
        assert not at.exception, (page, [e.value for e in at.exception])


@pytest.fixture()
def clean_env(monkeypatch):
    """No read-only flag or cache location from the caller; whatever the app sets is undone afterwards."""
    for name in (mode.ENV, mode.CACHE_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
    return monkeypatch


# ----------------------------------------------------------------------------- the mode itself

def test_mode_reads_the_flag_and_the_environment(clean_env, tmp_path):
    assert not mode.read_only()
    clean_env.setattr(sys, "argv", ["dashboard/app.py", "--read-only"])
    assert mode.read_only()
    clean_env.setattr(sys, "argv", ["dashboard/app.py"])
    for value, want in [("1", True), ("true", True), ("YES", True), ("0", False), ("", False), ("no", False)]:
        clean_env.setenv(mode.ENV, value)
        assert mode.read_only() is want, value
    # read-only without a cache location: the per-user default, outside the runs folder
    clean_env.setenv(mode.ENV, "1")
    clean_env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert mode.configure()
    run = tmp_path / "runs" / "20250101-000000-a"
    got = runs.cache_dir(run)
    assert got.is_relative_to(tmp_path / "xdg" / "digit-lens") and got.name == run.name
    assert not got.is_relative_to(run)
    # two runs folders holding the same run id do not share a cache
    assert runs.cache_dir(tmp_path / "other" / run.name) != got


def test_cache_stays_in_the_run_without_read_only(clean_env, tmp_path):
    assert not mode.configure()
    assert runs.cache_dir(tmp_path / "r") == tmp_path / "r" / "cache"


# ----------------------------------------------------------------------------- the Runs page

@pytest.mark.parametrize("how", ["env", "argv"])
def test_runs_page_read_only_has_no_training_widgets(clean_env, runs_dir, tmp_path, how):
    if how == "env":
        clean_env.setenv(mode.ENV, "1")
    else:
        clean_env.setattr(sys, "argv", ["dashboard/app.py", "--read-only"])
    clean_env.setenv(mode.CACHE_ENV, str(tmp_path / "cache"))
    at = open_app(clean_env, runs_dir)
    assert at.get("form") == [] or len(at.get("form")) == 0
    labels = [b.label for b in at.button]
    assert not [lb for lb in labels if any(w in lb for w in ("Start training", "Stop", "Train a quick run"))], labels
    assert "runs_preset" not in [r.key for r in at.radio]
    assert any("read-only" in i.value for i in at.info), [i.value for i in at.info]
    assert at.get("dataframe"), "the runs table is still shown"


def test_runs_page_not_read_only_has_the_training_form(clean_env, runs_dir):
    """The same checks fail without read-only: the form and its button are there."""
    at = open_app(clean_env, runs_dir)
    assert len(at.get("form")) == 1
    assert any("Start training" in b.label for b in at.button)
    assert not any("read-only" in i.value for i in at.info)


def test_empty_runs_folder_read_only_offers_no_quick_run(clean_env, tmp_path):
    clean_env.setenv(mode.ENV, "1")
    clean_env.setenv(mode.CACHE_ENV, str(tmp_path / "cache"))
    (tmp_path / "runs").mkdir()
    at = open_app(clean_env, tmp_path / "runs")
    assert not [b.label for b in at.button if "Train" in b.label or "Start" in b.label]
    assert any("read-only" in i.value for i in at.info)


# ----------------------------------------------------------------------------- the tour

def test_read_only_tour_leaves_every_run_folder_unchanged(clean_env, copy_run, tmp_path):
    run = copy_run("served")
    folder = run.parent
    cache_root = tmp_path / "cache-root"
    clean_env.setenv(mode.ENV, "1")
    clean_env.setenv(mode.CACHE_ENV, str(cache_root))
    before = tree_hash(folder)
    set_writable(folder, False)
    _watch["root"], _watch["hits"] = str(folder.resolve()), []
    try:
        tour(clean_env, folder)
    finally:
        _watch["root"] = None
        set_writable(folder, True)
    assert _watch["hits"] == [], _watch["hits"][:10]
    assert tree_hash(folder) == before
    written = [p for p in cache_root.rglob("*") if p.is_file()]
    assert written, "the slow analyses were not cached under DIGIT_LENS_CACHE"
    assert all(p.parent == runs.cache_dir(run) for p in written), written


def test_tour_without_read_only_writes_the_cache_into_the_run(clean_env, copy_run):
    """Built to fail the other way: the same tour, not read-only, does write into the run folder."""
    run = copy_run("local")
    clean_env.setenv("DIGIT_LENS_WORKERS", "0")       # the audit hook sees this process's writes, not a worker's
    before = tree_hash(run.parent)
    _watch["root"], _watch["hits"] = str(run.parent.resolve()), []
    try:
        tour(clean_env, run.parent)
    finally:
        _watch["root"] = None
    assert tree_hash(run.parent) != before
    assert [p for p in (run / "cache").iterdir() if p.is_file()]
    assert any(str(run / "cache") in path for _, path in _watch["hits"]), _watch["hits"][:10]   # the hook sees it


def test_launch_refuses_to_train_when_read_only(monkeypatch, tmp_path):
    from dashboard import training
    monkeypatch.setenv("DIGIT_LENS_READ_ONLY", "1")
    with pytest.raises(PermissionError, match="read-only"):
        training.launch(tmp_path / "runs", "x", epochs=1)
    assert not (tmp_path / "runs").exists()                              # nothing created either
