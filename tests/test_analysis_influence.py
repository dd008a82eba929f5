"""TracIn on the last layer against Captum's TracInCPFast (the reference), on the fixture run's 1,000
training images and 3 checkpoints; and on an imported network."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from captum.influence import TracInCPFast
from safetensors.torch import load_file
from torch.utils.data import TensorDataset

from analysis import influence
from data.mnist import load_mnist
from model import runs
from model.net import to_input
from tests.flipped import flipped_training_labels


@pytest.fixture(scope="module")
def run(copy_run_module) -> Path:
    return copy_run_module


@pytest.fixture(scope="module")
def copy_run_module(fixture_run, tmp_path_factory) -> Path:
    import shutil
    dest = tmp_path_factory.mktemp("influence") / fixture_run.name
    shutil.copytree(fixture_run, dest, ignore=shutil.ignore_patterns("cache"))
    return dest


@pytest.fixture(scope="module")
def captum(run):
    """Captum's TracInCPFast over the run's checkpoints, each loaded with its epoch's learning rate."""
    lrs = influence.learning_rates(run)
    model = runs.load_model(run, 1)

    def load(net: nn.Module, path: str) -> float:
        net.load_state_dict(load_file(path))
        return lrs[int(Path(path).stem.split("_")[1])]
    images, labels, _ = influence.training_set(run)
    data = TensorDataset(to_input(torch.from_numpy(images)), torch.from_numpy(labels).long())
    ckpts = [str(runs.checkpoint_path(run, e)) for e in runs.checkpoint_epochs(run)]
    return TracInCPFast(model, model.fc2, data, ckpts, checkpoints_load_func=load,
                        loss_fn=nn.CrossEntropyLoss(reduction="sum"), batch_size=250)


@pytest.fixture(scope="module")
def tests_images(run):
    cfg = runs.load_config(run)
    data = load_mnist(cfg.data.root, cfg.data.split)
    return data.val_x[:20].numpy()


def test_unprojected_scores_equal_captums(run, captum, tests_images):
    model = runs.load_model(run)
    x = to_input(torch.from_numpy(tests_images[:5]))
    with torch.no_grad():
        targets = model(x).argmax(1)
    reference = captum.influence((x, targets))                           # (5, 1000)
    for i in range(5):
        ours, target = influence.scores(run, tests_images[i], dim=None)
        assert target == int(targets[i])
        np.testing.assert_allclose(ours, reference[i].numpy(), rtol=1e-3, atol=1e-3 * float(reference[i].abs().max()))


def test_projected_top10_proponents_overlap_captums(run, captum, tests_images):
    """The default projection keeps at least 8 of Captum's top-10 proponents on average over 20 images."""
    model = runs.load_model(run)
    x = to_input(torch.from_numpy(tests_images))
    with torch.no_grad():
        targets = model(x).argmax(1)
    reference = captum.influence((x, targets))                           # (20, 1000)
    overlaps = []
    for i in range(20):
        res = influence.influence(run, tests_images[i], k=10)
        exact = set(torch.topk(reference[i], 10).indices.tolist())
        overlaps.append(len(exact & set(res["proponents"]["position"])))
        assert (res["proponents"]["score"].diff().dropna() <= 0).all()          # highest first
        assert (res["opponents"]["score"] < 0).all() or len(res["opponents"]) == 0
    assert np.mean(overlaps) >= 8, overlaps


def test_self_influence_equals_captums(run, captum):
    ours = influence.self_influence(run, dim=None)
    reference = captum.self_influence()                                   # (1000,) over the training data
    np.testing.assert_allclose(ours, reference.numpy(), rtol=1e-3)


def test_a_mislabelled_training_image_has_high_self_influence(tmp_path, mnist_root):
    """Built to fail: flip 20 labels of a 1,000-image training set; many rank in the top 6% of self-influence
    (chance would put 1.2 of them there)."""
    from model import train
    with flipped_training_labels(20, 1):
        assert train.main(["--epochs", "3", "--subset", "1000", "--eval-subset", "100", "--lr", "0.05",
                           "--momentum", "0.9", "--runs-dir", str(tmp_path), "--name", "flipped"]) == 0
        (run,) = tmp_path.iterdir()
        values = influence.self_influence(run)
    top = set(np.argsort(-values)[:60].tolist())
    assert len(top & set(range(20))) >= 8, sorted(top & set(range(20)))


def test_cli_prints_json_and_refuses_bad_input(run, capsys):
    runs_dir = run.parent
    assert influence.main([run.name, "--split", "val", "--index", "3", "--k", "4", "--runs-dir", str(runs_dir)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["proponents"]) == 4 == len(out["opponents"]) and out["index"] == 3
    assert influence.main([run.name, "--index", "999999", "--runs-dir", str(runs_dir)]) == 1
    assert "--index" in capsys.readouterr().err
    assert influence.main(["../elsewhere", "--index", "1", "--runs-dir", str(runs_dir)]) == 1


def test_works_for_an_imported_network(tmp_path, mnist_root):
    from model_zoo import import_zoo
    run = import_zoo(tmp_path / "runs", "lenet", "class")
    img = load_mnist(mnist_root, "classic").val_x[0].numpy()
    res = influence.influence(run, img, k=5, epoch=None)
    assert len(res["proponents"]) == 5
    values = influence.self_influence(run)
    assert values.shape == (50000,) and np.isfinite(values).all()
