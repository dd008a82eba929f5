"""model.import_checkpoint for anyone's network: class files, TorchScript, .pt2, numbered folders, failures.

Every expected number comes from plain PyTorch on the same weights (the zoo class imported by the test itself,
inputs normalised by hand), never from the importer or model.runs. The pytorch/examples network is trained here
on real MNIST (its main.py's recipe: Adadelta lr 1.0, batch 64, nll_loss; PE_STEPS steps), so its predictions
have structure worth comparing.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

from data.mnist import load_mnist
from model import external, import_checkpoint, runs, train
from model.import_checkpoint import main
from tests.model_zoo import ZOO, save_form, zoo_class

PE_NORM = (0.1307, 0.3081)          # pytorch/examples mnist/main.py's transforms.Normalize
PE_STEPS = 100                      # its recipe for 100 batches: ~92% test accuracy, ~20-60 s on 2 loaded cores


def load_zoo_file(stem: str, class_name: str) -> type[nn.Module]:
    """A class from tests/zoo/<stem>.py, imported by the test (not by the importer)."""
    spec = importlib.util.spec_from_file_location(f"zoo_test_{stem}", ZOO / f"{stem}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, class_name)


def plain_input(images: torch.Tensor, norm=None) -> torch.Tensor:
    """uint8 (N,28,28) -> (N,1,28,28) float, by hand: /255, then (x - mean) / std when norm is given."""
    x = images.to(torch.float32).unsqueeze(1) / 255.0
    return (x - norm[0]) / norm[1] if norm else x


@torch.no_grad()
def plain_log_probs(model: nn.Module, images: torch.Tensor, norm=None, batch: int = 2000) -> torch.Tensor:
    model.eval()
    return torch.cat([F.log_softmax(model(plain_input(images[i:i + batch], norm)), 1)
                      for i in range(0, len(images), batch)])


@torch.no_grad()
def run_logits(run: Path, images: torch.Tensor, epoch: int | None = None, batch: int = 2000) -> torch.Tensor:
    """The run's model (runs.load_model) on uint8 images, float32."""
    model = runs.load_model(run, epoch)
    return torch.cat([model(images[i:i + batch].to(torch.float32).unsqueeze(1) / 255.0)
                      for i in range(0, len(images), batch)])


def import_cli(capsys, runs_dir: Path, *args) -> tuple[int, str, str]:
    """main([...]) of model.import_checkpoint: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main([str(a) for a in args] + ["--runs-dir", str(runs_dir)])
    out, err = capsys.readouterr()
    return code, out, err


def only_run(runs_dir: Path, name: str) -> Path:
    (run,) = [p for p in runs_dir.iterdir() if p.name.endswith(f"-{name}")]
    return run


def correct_count(acc: float, n: int) -> int:
    """The number of right answers behind an accuracy fraction of n examples (float32 mean -> exact count)."""
    count = round(acc * n)
    assert abs(acc * n - count) < 1e-3
    return count


@pytest.fixture(scope="module")
def mnist(mnist_root):
    return load_mnist(mnist_root, "classic")


# ----------------------------------------------------------------------------- 1. pytorch/examples, trained here

@pytest.fixture(scope="module")
def pe_trained(mnist):
    """pytorch/examples' Net after PE_STEPS steps of its own recipe (Adadelta lr 1.0, batch 64, nll_loss)."""
    Net = load_zoo_file("pytorch_examples", "Net")
    torch.manual_seed(0)
    model = Net()
    opt = torch.optim.Adadelta(model.parameters(), lr=1.0)
    order = torch.randperm(len(mnist.train_x), generator=torch.Generator().manual_seed(0))
    model.train()
    for step in range(PE_STEPS):
        idx = order[step * 64:(step + 1) * 64]
        loss = F.nll_loss(model(plain_input(mnist.train_x[idx], PE_NORM)), mnist.train_y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def pe_run(pe_trained, mnist_root, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pe")
    torch.save(pe_trained.state_dict(), tmp / "mnist_cnn.pt")
    code = main([str(tmp / "mnist_cnn.pt"), "--name", "pe", "--model-file", str(ZOO / "pytorch_examples.py"),
                 "--model-class", "Net", "--input-norm", *map(str, PE_NORM), "--runs-dir", str(tmp / "runs"),
                 "--data-root", str(mnist_root)])
    assert code == 0
    return only_run(tmp / "runs", "pe")


def test_pytorch_examples_accuracy_to_the_last_example(pe_trained, pe_run, mnist):
    plain = plain_log_probs(pe_trained, mnist.test_x, PE_NORM)                     # (10000,10)
    plain_pred = plain.argmax(1).numpy()
    n_right = int((plain_pred == mnist.test_y.numpy()).sum())
    assert n_right > 8800, "100 steps of pytorch/examples' recipe reach about 92%"

    m = runs.load_metrics(pe_run)
    assert list(m["epoch"]) == [1]
    assert m["test_acc"].iloc[0] == pytest.approx(n_right / 10000, abs=1e-6)   # float32 mean; one example is 1e-4
    assert correct_count(m["test_acc"].iloc[0], 10000) == n_right

    p = runs.load_predictions(pe_run, 1)                                            # saved float16 logits
    assert np.array_equal(p["test_labels"], mnist.test_y.numpy()) and np.array_equal(p["test_index"], np.arange(10000))
    assert np.array_equal(p["val_labels"], mnist.val_y.numpy())
    assert np.array_equal(p["val_index"], 50000 + np.arange(10000))
    top2 = torch.topk(plain, 2, 1).values
    clear = ((top2[:, 0] - top2[:, 1]) > 0.05).numpy()                             # float16 cannot split nearer
    assert clear.mean() > 0.98
    assert np.array_equal(p["test_logits"].astype(np.float32).argmax(1)[clear], plain_pred[clear])

    # the near ties float16 may flip, and 500 more: runs.load_model in float32 against plain PyTorch
    some = torch.from_numpy(np.flatnonzero(~clear | (np.arange(10000) < 500)))
    got = run_logits(pe_run, mnist.test_x[some])
    assert np.array_equal(got.argmax(1).numpy(), plain_pred[some.numpy()])
    assert torch.allclose(F.log_softmax(got, 1), plain[some], atol=1e-5)

    cfg = runs.load_config(pe_run)
    assert cfg.source.kind == "class" and cfg.source.class_name == "Net"
    assert cfg.source.outputs == "log_probs"                                        # detected
    assert cfg.source.input_norm == list(PE_NORM)
    assert cfg.source.hook_methods                                                  # F.relu etc. became modules
    assert runs.load_status(pe_run)["state"] == "imported"


# ----------------------------------------------------------------------------- 2 and 5. the zoo in every form

def small_res(width: int = 4) -> nn.Module:
    """SmallRes with batch-norm statistics and affine parameters that matter in eval mode."""
    torch.manual_seed(1)
    model = zoo_class("resnetish")(width=width)
    with torch.no_grad():
        for bn in model.modules():
            if isinstance(bn, nn.BatchNorm2d):
                bn.running_mean.uniform_(-0.3, 0.3)
                bn.running_var.uniform_(0.5, 2.0)
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.uniform_(-0.2, 0.2)
    return model.eval()


def lenet() -> nn.Module:
    torch.manual_seed(2)
    return zoo_class("lenet")(hidden=120).eval()


def lenet_at(state: dict) -> nn.Module:
    model = zoo_class("lenet")(hidden=120)
    model.load_state_dict(state)
    return model.eval()


LENET_CHECKPOINTS = {1: 3, 2: 20, 10: 120}     # epoch_N.pt -> SGD steps behind it


@pytest.fixture(scope="module")
def lenet_history(mnist, tmp_path_factory):
    """A folder epoch_1.pt, epoch_2.pt, epoch_10.pt (and a notes.txt) of a LeNet in training:
    (folder, {N: state_dict}, {N: right answers of plain PyTorch on the 10k test images})."""
    torch.manual_seed(4)
    model = zoo_class("lenet")(hidden=120)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    folder = tmp_path_factory.mktemp("history") / "checkpoints"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a checkpoint")
    saved, right = {}, {}
    for step in range(1, max(LENET_CHECKPOINTS.values()) + 1):
        idx = torch.arange(step * 64, (step + 1) * 64)
        model.train()
        loss = F.cross_entropy(model(plain_input(mnist.train_x[idx])), mnist.train_y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        for n in [n for n, steps in LENET_CHECKPOINTS.items() if steps == step]:
            saved[n] = {k: v.detach().clone() for k, v in model.state_dict().items()}
            # epoch_2 as a training script's checkpoint of a DataParallel model: {"state_dict": {"module.…"}}
            wrapped = {"epoch": 2, "state_dict": {f"module.{k}": v for k, v in saved[n].items()}}
            torch.save(saved[n] if n != 2 else wrapped, folder / f"epoch_{n}.pt")
            right[n] = int((plain_log_probs(model, mnist.test_x).argmax(1) == mnist.test_y).sum())
    assert len(set(right.values())) == 3, "the checkpoints must be told apart by their accuracy"
    return folder, saved, right


# case -> (model factory, form, zoo stem, class name, kwargs); "lenet-class" is lenet_history's folder
ZOO_CASES = {
    "lenet-class": (None, "class", "lenet", "LeNet", {"hidden": 120}),
    "smallres-class": (small_res, "class", "resnetish", "SmallRes", {"width": 4}),
    "lenet-torchscript": (lenet, "torchscript", None, None, None),
    "smallres-export": (small_res, "export", None, None, None),
}


@pytest.fixture(scope="module")
def zoo_runs(mnist_root, tmp_path_factory, lenet_history):
    """Each ZOO_CASES entry imported through the command line from copies that are deleted afterwards:
    case -> (run folder, the original model (at the last checkpoint), SHA-256 of the original definition)."""
    tmp = tmp_path_factory.mktemp("zoo")
    out = {}
    for case, (factory, form, stem, cls, kwargs) in ZOO_CASES.items():
        originals = tmp / f"orig-{case}"
        if factory is None:
            folder, saved, _ = lenet_history
            path = shutil.copytree(folder, originals / folder.name)
            model = lenet_at(saved[max(saved)])
        else:
            model = factory()
            path = save_form(model, originals, form)
        args = [path, "--name", case, "--runs-dir", tmp / "runs", "--data-root", mnist_root]
        if form == "class":
            definition = shutil.copy(ZOO / f"{stem}.py", originals / f"{stem}.py")
            args += ["--model-file", definition, "--model-class", cls, "--model-kwargs", json.dumps(kwargs)]
        else:
            definition = path
        digest = hashlib.sha256(Path(definition).read_bytes()).hexdigest()
        assert main([str(a) for a in args]) == 0, case
        shutil.rmtree(originals)                          # the run must rebuild from its own copy
        out[case] = (only_run(tmp / "runs", case), model, digest)
    return out


@pytest.mark.parametrize("case", list(ZOO_CASES))
def test_zoo_imports_and_reloads_without_the_originals(zoo_runs, case, mnist):
    run, model, digest = zoo_runs[case]
    images = mnist.test_x[:500]
    plain = plain_log_probs(model, images)
    got = F.log_softmax(run_logits(run, images), 1)
    assert torch.allclose(got, plain, atol=1e-5), float((got - plain).abs().max())

    cfg = runs.load_config(run)
    form = ZOO_CASES[case][1]
    assert cfg.source.kind == form and cfg.source.outputs == "logits" and cfg.source.hook_methods
    copy = run / cfg.source.file
    assert copy.parent.name == "source" and hashlib.sha256(copy.read_bytes()).hexdigest() == cfg.source.sha256 == digest


@pytest.mark.parametrize("case", ["lenet-class", "smallres-export"])
def test_an_edited_source_copy_is_refused(zoo_runs, case, tmp_path):
    run = shutil.copytree(zoo_runs[case][0], tmp_path / "runs" / "edited")
    copy = run / runs.load_config(run).source.file
    blob = bytearray(copy.read_bytes())
    if case.endswith("class"):
        blob += b"\n# edited\n"
    else:
        blob[len(blob) // 2] ^= 0xFF
    copy.write_bytes(bytes(blob))
    with pytest.raises(runs.RunError, match="SHA-256"):
        runs.load_model(run)


# ----------------------------------------------------------------------------- 3. what is refused, and nothing written

@pytest.fixture()
def empty_runs(tmp_path) -> Path:
    d = tmp_path / "runs"
    d.mkdir()
    return d


def assert_nothing_written(runs_dir: Path) -> None:
    assert list(runs_dir.iterdir()) == []


def test_wrong_shapes_name_every_misfitting_tensor(capsys, empty_runs, tmp_path):
    torch.manual_seed(0)
    Net = load_zoo_file("pytorch_examples", "Net")
    state = Net().state_dict()
    state["conv1.weight"] = torch.zeros(16, 1, 3, 3)
    state["fc1.weight"], state["fc1.bias"] = torch.zeros(64, 9216), torch.zeros(64)
    torch.save(state, tmp_path / "bad.pt")
    code, _, err = import_cli(capsys, empty_runs, tmp_path / "bad.pt", "--model-file", ZOO / "pytorch_examples.py",
                              "--model-class", "Net", "--name", "bad")
    assert code == 1
    assert "conv1.weight" in err and "(16, 1, 3, 3)" in err and "(32, 1, 3, 3)" in err
    assert "fc1.weight" in err and "fc1.bias" in err and "fc2.weight" not in err
    assert "Traceback" not in err
    assert_nothing_written(empty_runs)


def test_broken_class_file(capsys, empty_runs, tmp_path):
    torch.save({"w": torch.zeros(1)}, tmp_path / "w.pt")
    code, _, err = import_cli(capsys, empty_runs, tmp_path / "w.pt", "--model-file", ZOO / "broken.py",
                              "--model-class", "Net")
    assert code == 1
    assert "broken.py" in err and "RuntimeError" in err and "broken on purpose" in err
    assert_nothing_written(empty_runs)


def test_twelve_outputs_is_refused_naming_the_shape(capsys, empty_runs, tmp_path):
    torch.manual_seed(0)
    torch.save(load_zoo_file("twelve", "Twelve")().state_dict(), tmp_path / "twelve.pt")
    code, _, err = import_cli(capsys, empty_runs, tmp_path / "twelve.pt", "--model-file", ZOO / "twelve.py",
                              "--model-class", "Twelve")
    assert code == 1
    assert ", 12)" in err and "10" in err and "twelve.py" in err
    assert_nothing_written(empty_runs)


def test_flag_mistakes(capsys, empty_runs, tmp_path):
    torch.save(lenet().state_dict(), tmp_path / "lenet.pt")
    base = [tmp_path / "lenet.pt", "--model-file", ZOO / "lenet.py"]
    code, _, err = import_cli(capsys, empty_runs, *base)
    assert code == 1 and "--model-class" in err
    code, _, err = import_cli(capsys, empty_runs, *base, "--model-class", "Lenet")
    assert code == 1 and "'Lenet'" in err and "LeNet" in err and "classes found" in err
    code, _, err = import_cli(capsys, empty_runs, *base, "--model-class", "LeNet", "--model-kwargs", "{hidden: 120}")
    assert code == 2 and "--model-kwargs" in err and "JSON" in err
    code, _, err = import_cli(capsys, empty_runs, *base, "--model-class", "LeNet", "--model-kwargs", "[120]")
    assert code == 2 and "--model-kwargs" in err
    code, _, err = import_cli(capsys, empty_runs, *base, "--model-class", "LeNet", "--model-kwargs", '{"width": 3}')
    assert code == 1 and "width" in err and "TypeError" in err
    code, _, err = import_cli(capsys, empty_runs, tmp_path / "lenet.pt", "--input-norm", "0.1", "0.3")
    assert code == 1 and "--model-file" in err
    code, _, err = import_cli(capsys, empty_runs, *base, "--model-class", "LeNet", "--input-norm", "0.1", "0")
    assert code == 2 and "--input-norm" in err and "positive std" in err
    state = lenet().state_dict()
    state["9.weight"][0, 0] = float("nan")                       # a broken checkpoint: NaN scores
    torch.save(state, tmp_path / "nan.pt")
    code, _, err = import_cli(capsys, empty_runs, tmp_path / "nan.pt", "--model-file", ZOO / "lenet.py",
                              "--model-class", "LeNet")
    assert code == 1 and "NaN" in err and "lenet.py" in err
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    code, _, err = import_cli(capsys, empty_runs, tmp_path / "junk.pt", "--model-file", ZOO / "lenet.py",
                              "--model-class", "LeNet")
    assert code == 1 and "junk.pt" in err and "state_dict" in err
    assert "Traceback" not in err
    assert_nothing_written(empty_runs)


def test_a_misfitting_epoch_in_a_folder_writes_nothing(capsys, empty_runs, tmp_path):
    folder = tmp_path / "ckpts"
    save_form(lenet(), folder, "class", "epoch_1")
    torch.manual_seed(3)
    save_form(zoo_class("lenet")(hidden=60), folder, "class", "epoch_2")
    code, _, err = import_cli(capsys, empty_runs, folder, "--model-file", ZOO / "lenet.py", "--model-class", "LeNet")
    assert code == 1 and "epoch_2.pt" in err and "(60, 400)" in err
    assert_nothing_written(empty_runs)


def test_archives_of_different_networks_in_one_folder_write_nothing(capsys, empty_runs, tmp_path):
    """Regression: the second archive's weights were checked only while writing, leaving a one-epoch run."""
    folder = tmp_path / "archives"
    save_form(lenet(), folder, "export", "epoch_1")
    torch.manual_seed(3)
    save_form(zoo_class("lenet")(hidden=60).eval(), folder, "export", "epoch_2")
    code, _, err = import_cli(capsys, empty_runs, folder)
    assert code == 1 and "epoch_2.pt2" in err and "(60, 400)" in err
    assert_nothing_written(empty_runs)


def test_a_failure_while_writing_leaves_no_half_run(capsys, empty_runs, tmp_path, monkeypatch):
    save_form(lenet(), tmp_path, "class", "lenet")
    begun = []

    def full_disk(*args, **kwargs):                 # the first epoch's scoring, after the run folder is begun
        (run,) = empty_runs.iterdir()
        begun.extend(sorted(p.name for p in run.rglob("*")))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(import_checkpoint, "evaluate", full_disk)
    code, _, err = import_cli(capsys, empty_runs, tmp_path / "lenet.pt", "--model-file", ZOO / "lenet.py",
                              "--model-class", "LeNet")
    assert {"config.json", "source", "lenet.py"} <= set(begun)
    assert code == 1 and "No space left" in err and "Traceback" not in err
    assert_nothing_written(empty_runs)


def test_an_archive_kept_as_it_is_still_loads(capsys, empty_runs, tmp_path, mnist, monkeypatch):
    """A .pt2 whose rewrite is not possible keeps its export module (hook methods off); that module refuses
    .eval(), which load_model's wrapper must survive (it raised NotImplementedError while writing the run)."""
    torch.manual_seed(6)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10)).eval()
    path = save_form(model, tmp_path, "export")

    def untraceable(net):
        raise external.ModelError("torch.fx could not trace the model (a stand-in)")

    monkeypatch.setattr(external, "modularize", untraceable)
    code, _, err = import_cli(capsys, empty_runs, path, "--name", "kept")
    assert code == 0, err
    run = only_run(empty_runs, "kept")
    source = runs.load_config(run).source
    assert not source.hook_methods and "stand-in" in source.note
    images = mnist.test_x[:300]
    got = F.log_softmax(run_logits(run, images), 1)
    assert torch.allclose(got, plain_log_probs(model, images), atol=1e-5)


# ----------------------------------------------------------------------------- 4. a folder of numbered checkpoints

def test_numbered_folder_in_number_order(zoo_runs, lenet_history, mnist):
    """epoch_1, epoch_2, epoch_10 (string order would put 10 second): one epoch each, in number order."""
    run = zoo_runs["lenet-class"][0]
    _, saved, right = lenet_history
    m = runs.load_metrics(run)
    assert list(m["epoch"]) == [1, 2, 3] and runs.checkpoint_epochs(run) == [1, 2, 3]
    assert [correct_count(a, 10000) for a in m["test_acc"]] == [right[1], right[2], right[10]]
    for epoch, n in zip((1, 2, 3), (1, 2, 10)):
        stored = load_file(str(runs.checkpoint_path(run, epoch)))
        assert stored.keys() == saved[n].keys() and all(torch.equal(stored[k], saved[n][k]) for k in stored)
    assert runs.load_config(run).train.epochs == 3
    got = F.log_softmax(run_logits(run, mnist.test_x[:300], epoch=2), 1)
    assert torch.allclose(got, plain_log_probs(lenet_at(saved[2]), mnist.test_x[:300]), atol=1e-5)


# ----------------------------------------------------------------------------- 6. version-1 runs

def test_version_1_runs_still_load(tmp_path, mnist, mnist_root):
    d = tmp_path / "runs"
    assert train.main(["--epochs", "1", "--subset", "256", "--eval-subset", "300", "--variant", "small-fc",
                       "--seed", "3", "--log-every", "2", "--runs-dir", str(d), "--name", "v1",
                       "--data-root", str(mnist_root)]) == 0
    run = only_run(d, "v1")
    raw = json.loads((run / "config.json").read_text())
    raw["format_version"] = 1                     # as written before the source section existed
    raw.pop("source", None)
    (run / "config.json").write_text(json.dumps(raw))

    cfg = runs.load_config(run)
    assert cfg.format_version == 1 and cfg.source is None and cfg.model.fc1_units == 128
    got = run_logits(run, mnist.test_x[:300])
    # the trainer's own record of that epoch: its saved logits and accuracy on the same 300 test images
    p = runs.load_predictions(run, 1)
    saved = torch.from_numpy(p["test_logits"].astype(np.float32))
    assert torch.allclose(got, saved, atol=0.02, rtol=1e-3)
    n_right = int((got.argmax(1) == mnist.test_y[:300]).sum())
    assert correct_count(runs.load_metrics(run)["test_acc"].iloc[0], 300) == n_right


# ----------------------------------------------------------------------------- 7. a network that returns probabilities

PROBS_FILE = '''
import torch
import torch.nn as nn
import torch.nn.functional as F


class SoftmaxNet(nn.Module):
    """Ends in F.softmax: the rewrite drops it."""
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(784, 10)

    def forward(self, x):
        return F.softmax(self.fc(x.flatten(1)) * 4, dim=1)


class ManualProbs(nn.Module):
    """Normalises by hand: nothing to drop, the wrapper must take log(p)."""
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(784, 10)

    def forward(self, x):
        e = torch.exp(self.fc(x.flatten(1)) * 4)
        return e / e.sum(1, keepdim=True)
'''


@pytest.mark.parametrize("cls,outputs", [("SoftmaxNet", "auto"), ("ManualProbs", "auto"), ("ManualProbs", "probs")])
def test_probabilities_become_logits(capsys, empty_runs, tmp_path, mnist, cls, outputs):
    (tmp_path / "probs_net.py").write_text(PROBS_FILE)
    spec = importlib.util.spec_from_file_location(f"probs_net_test_{cls}", tmp_path / "probs_net.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(5)
    model = getattr(module, cls)().eval()
    torch.save(model.state_dict(), tmp_path / "p.pt")
    code, _, err = import_cli(capsys, empty_runs, tmp_path / "p.pt", "--name", "probs", "--model-file",
                              tmp_path / "probs_net.py", "--model-class", cls, "--outputs", outputs)
    assert code == 0, err
    run = only_run(empty_runs, "probs")
    assert runs.load_config(run).source.outputs == "probs"
    images = mnist.test_x[:300]
    with torch.no_grad():
        probs = model(plain_input(images))
    got = run_logits(run, images)
    assert torch.allclose(F.softmax(got, 1), probs, atol=1e-5)
    assert torch.allclose(F.log_softmax(got, 1), torch.log(probs), atol=1e-4)


# ----------------------------------------------------------------------------- 8. --help

def test_help_says_the_model_file_is_run(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--model-file" in text and "RUNS that Python file" in text and "trust" in text
