"""`python -m model.train --model-file F.py --model-class C`: our trainer and run format for anyone's network.

References: the user's own class with a checkpoint loaded by plain `load_state_dict` (what the run must
equal), and an uninterrupted run (what --resume must equal).
"""
from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from model import external, runs, train
from model_zoo import ZOO, zoo_class

TINY = ["--subset", "256", "--eval-subset", "200", "--seed", "3", "--log-every", "2", "--lr", "0.05"]
LENET = ["--model-file", str(ZOO / "lenet.py"), "--model-class", "LeNet", "--model-kwargs", '{"hidden": 32}']


def test_trains_a_class_file_into_a_run_that_rebuilds_as_the_users_class(tmp_path, mnist_root):
    assert train.main(TINY + LENET + ["--epochs", "1", "--runs-dir", str(tmp_path)]) == 0
    (run,) = tmp_path.iterdir()
    cfg = runs.load_config(run)
    assert cfg.format_version == runs.FORMAT_VERSION == 2 and cfg.name == "LeNet" and cfg.variant == "custom"
    src = cfg.source
    assert (src.kind, src.class_name, src.kwargs, src.outputs) == ("class", "LeNet", {"hidden": 32}, "logits")
    assert (run / src.file).read_bytes() == (ZOO / "lenet.py").read_bytes()
    assert src.sha256 == external.sha256_of(ZOO / "lenet.py")
    assert json.loads((run / "config.json").read_text())["model"] is None     # the source section says it

    # the checkpoint is a plain state_dict of the user's class: their own code loads it unchanged
    mine = zoo_class("lenet")(hidden=32).eval()
    mine.load_state_dict(load_file(str(runs.checkpoint_path(run, 1))))
    x = torch.rand(16, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(runs.load_model(run, 1)(x), mine(x), atol=1e-6)
    saved = runs.load_predictions(run, 1)["val_logits"]
    assert saved.shape == (200, 10)


def test_resume_of_a_class_file_run_equals_an_uninterrupted_run(tmp_path, mnist_root):
    opts = TINY + LENET + ["--runs-dir", str(tmp_path)]
    assert train.main(opts + ["--epochs", "2", "--name", "whole"]) == 0
    assert train.main(opts + ["--epochs", "1", "--name", "split"]) == 0
    whole, split = sorted(tmp_path.iterdir(), key=lambda p: p.name.endswith("split"))
    assert train.main(["--resume", str(split), "--epochs", "2", "--runs-dir", str(tmp_path)]) == 0
    a, b = load_file(str(runs.checkpoint_path(whole, 2))), load_file(str(runs.checkpoint_path(split, 2)))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert list(runs.load_metrics(split)["epoch"]) == [1, 2]


def test_input_norm_and_log_softmax_are_recorded_and_applied(tmp_path, mnist_root):
    args = ["--model-file", str(ZOO / "pytorch_examples.py"), "--model-class", "Net", "--input-norm", "0.1307",
            "0.3081", "--epochs", "1", "--subset", "128", "--eval-subset", "100", "--runs-dir", str(tmp_path)]
    assert train.main(args) == 0
    (run,) = tmp_path.iterdir()
    src = runs.load_config(run).source
    assert src.input_norm == [0.1307, 0.3081] and src.outputs == "log_probs" and src.hook_methods
    mine = zoo_class("pytorch_examples")().eval()
    mine.load_state_dict(load_file(str(runs.checkpoint_path(run, 1))))
    x = torch.rand(8, 1, 28, 28)
    with torch.no_grad():   # the run's model: normalises, then returns logits whose log-softmax is the class's output
        ours = torch.log_softmax(runs.load_model(run, 1)(x), 1)
        assert torch.allclose(ours, mine((x - 0.1307) / 0.3081), atol=1e-5)


def test_bad_model_arguments_give_a_message_and_no_run(tmp_path, mnist_root, capsys):
    cases = [
        ["--model-file", str(ZOO / "broken.py"), "--model-class", "X"],
        ["--model-file", str(ZOO / "twelve.py"), "--model-class", "Twelve"],
        ["--model-file", str(ZOO / "lenet.py"), "--model-class", "NoSuchClass"],
        ["--model-file", str(ZOO / "lenet.py")],
    ]
    expected = ["raised RuntimeError: this model file is broken on purpose", "(batch, 10)", "classes found",
                "--model-class"]
    for case, message in zip(cases, expected):
        assert train.main(TINY + case + ["--epochs", "1", "--runs-dir", str(tmp_path)]) == 1
        assert message in capsys.readouterr().err
    assert not tmp_path.exists() or not any(tmp_path.iterdir())
