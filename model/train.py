"""Train the seed CNN (or a variant) on MNIST and save a complete run (see docs/run-format.md).

    python -m model.train --preset quick          # a few minutes on a CPU
    python -m model.train --preset seed           # the seed notebook's protocol, 10 epochs
    python -m model.train --resume RUN            # continue a run from its last finished epoch
    python -m model.train --model-file my_net.py --model-class Net   # your own network, our trainer and run format
    torchrun --nproc-per-node 2 -m model.train    # data-parallel over 2 processes (GPUs, else CPU cores)

The math is the seed's: SGD lr 0.01, batch 64, cross-entropy, shuffled every epoch. Unlike the seed,
the data is held as one uint8 tensor in memory and sliced per batch (no per-sample ToTensor).

Under torchrun (RANK, WORLD_SIZE, LOCAL_RANK set) the model is wrapped in DistributedDataParallel
(NCCL on GPUs, gloo on CPUs). --batch-size stays the GLOBAL batch: each of the W processes trains on
its own contiguous slice of B/W examples of every batch of the same per-epoch permutation, so W
processes take the same steps as one process (up to float summation order). Rank 0 alone writes the
run; losses, accuracies and per-example records are those of all ranks together.

"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from data.mnist import SPLITS, DataError, MnistSplits, default_root, load_mnist, source_info
from model import external, runs
from model.config import DataConfig, TrainConfig, train_options
from model.net import VARIANTS, Net, to_input

DEVICES = ("auto", "cpu", "cuda", "mps")
# Options chosen outside TrainConfig: the architecture (model section) and the protocol (data section).
OTHER_DEFAULTS = dict(variant="seed", split="classic")
PRESETS = {
    "seed": dict(split="seed"),  # the seed notebook: all 60k for training, the test set for validation
    "quick": dict(epochs=4, subset=20000),  # a real run in about two minutes on a 2-core CPU
}


class Diverged(Exception):
    """Training produced a NaN or infinite loss: continuing would only save garbage."""

    def __init__(self, epoch: int, step: int, what: str):
        self.epoch = epoch
        super().__init__(f"diverged at epoch {epoch}, step {step}: {what} is not a finite number "
                         "(try a lower --lr)")


def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


@dataclass
class Ranks:
    """This process's place in a torchrun job: rank 0 of 1 when started without torchrun."""
    rank: int = 0   # 0 writes the run
    world: int = 1  # processes training together (torchrun's WORLD_SIZE)


def join_torchrun(device: torch.device) -> tuple[Ranks, torch.device]:
    """Under torchrun (WORLD_SIZE > 1) join its process group: NCCL on cuda:LOCAL_RANK, else gloo on the CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Ranks(), device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise ValueError(f"several processes train on cuda or cpu, not {device.type} (use --device cpu)")
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Ranks(dist.get_rank(), world), device


class RankWriter:
    """What a rank other than 0 holds instead of a RunWriter: the run's folder and config; it writes nothing."""

    def __init__(self, run_dir: Path):
        self.dir = Path(run_dir)
        self.config = runs.load_config(self.dir)

    def _skip(self, *args, **kwargs) -> None:
        pass

    set_status = heartbeat = set_progress = add_steps = write_epoch = save_config = _skip


def make_optimizer(model: Net, name: str, lr: float, momentum: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr)
    raise ValueError(f"unknown optimizer {name!r}")


def optimizer_tensors(opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """Flatten an optimizer's per-parameter state into named tensors (safetensors holds only tensors)."""
    out = {}
    for i, state in opt.state_dict()["state"].items():
        for k, v in state.items():
            out[f"{i}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
    return out


def load_optimizer_tensors(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    sd = opt.state_dict()
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        i, k = key.split(".", 1)
        state.setdefault(int(i), {})[k] = v
    sd["state"] = state
    opt.load_state_dict(sd)


def train_epoch(model: Net, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                generator: torch.Generator, device: torch.device, desc: str, log_every: int,
                on_step=None, on_batch=None, epoch: int = 0, ranks: Ranks = Ranks()) -> dict:
    """One shuffled pass over (x uint8 (N,28,28), y (N,)).

    With W processes (`ranks.world`), all draw the same permutation and each trains on its own
    contiguous slice of every batch of `batch_size`; the loss is scaled so that DDP's average of the
    gradients is the gradient of the whole batch's mean loss, and every number returned is global.

    Returns:
        loss and accuracy of the pass, the loss every `log_every` steps, and for every example the
        probability of its true class and whether it was right, as seen in its batch; with several
        processes also `rank`, the rank that trained on each example.
    """
    model.train()
    n = len(x)
    perm = torch.randperm(n, generator=generator)
    true_prob = torch.zeros(n, dtype=torch.float32)
    probs = torch.zeros(n, 10, dtype=torch.float16)  # every class's probability, as seen in its batch
    correct = torch.zeros(n, dtype=torch.bool)
    total_loss, steps, window, mine = 0.0, [], [], []
    bar = tqdm(range(0, n, batch_size), desc=desc, unit="batch", leave=False, mininterval=1.0, file=sys.stderr,
               disable=ranks.rank != 0)
    for step, start in enumerate(bar, 1):
        batch = perm[start:start + batch_size]
        idx = batch.tensor_split(ranks.world)[ranks.rank]   # this rank's share; all of it on one process
        xb = to_input(x[idx]).to(device)           # (B/W,1,28,28)
        yb = y[idx].to(device)                       # (B/W,)
        logits = model(xb)                           # (B/W,10)
        if ranks.world == 1:
            loss = F.cross_entropy(logits, yb)
            batch_loss = loss.item()
        else:
            loss_sum = F.cross_entropy(logits, yb, reduction="sum")
            loss = loss_sum * ranks.world / len(batch)   # DDP divides the summed gradients by W
            summed = loss_sum.detach().clone()
            dist.all_reduce(summed)                      # every rank sees the same loss and stops together
            batch_loss = summed.item() / len(batch)
        if not math.isfinite(batch_loss):
            raise Diverged(epoch, step, f"the training loss ({batch_loss})")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            p = logits.softmax(1)
            true_prob[idx] = p.gather(1, yb[:, None])[:, 0].float().cpu()
            probs[idx] = p.half().cpu()
            correct[idx] = (p.argmax(1) == yb).cpu()
        mine.append(idx)
        total_loss += batch_loss * len(batch)
        window.append(batch_loss)
        if on_batch:
            on_batch(step, len(bar), batch_loss)
        if step % log_every == 0:
            steps.append({"step": step, "loss": float(np.mean(window))})
            window = []
            bar.set_postfix(loss=f"{steps[-1]['loss']:.4f}")
            if on_step:
                on_step()
    rank_of = None
    if ranks.world > 1:
        true_prob, correct, probs, rank_of = gather_examples(torch.cat(mine), true_prob, correct, probs, ranks)
    return {"loss": total_loss / n, "acc": correct.float().mean().item(), "steps": steps,
            "true_prob": true_prob, "correct": correct, "probs": probs, "rank": rank_of}


def gather_examples(mine: torch.Tensor, true_prob: torch.Tensor, correct: torch.Tensor, probs: torch.Tensor,
                    ranks: Ranks):
    """Every rank's per-example records put together (on every rank), checking that each example was seen once."""
    parts = [None] * ranks.world
    dist.all_gather_object(parts, (mine, true_prob[mine], correct[mine], probs[mine]))
    true_prob, correct, probs = torch.zeros_like(true_prob), torch.zeros_like(correct), torch.zeros_like(probs)
    rank_of = torch.full(true_prob.shape, -1, dtype=torch.int8)
    for r, (idx, p, c, q) in enumerate(parts):
        true_prob[idx], correct[idx], probs[idx], rank_of[idx] = p, c, q, r
    seen = torch.bincount(torch.cat([part[0] for part in parts]), minlength=len(true_prob))
    if not bool((seen == 1).all()):
        raise RuntimeError("the ranks' shards overlap or miss examples (a bug in the sharding)")
    return true_prob, correct, probs, rank_of


@torch.no_grad()
def evaluate(model: Net, x: torch.Tensor, y: torch.Tensor, device: torch.device, batch_size: int = 1000) -> dict:
    """Loss, accuracy and logits (N,10) of the model on uint8 images x (N,28,28)."""
    model.eval()
    logits = torch.cat([model(to_input(x[i:i + batch_size]).to(device)).cpu() for i in range(0, len(x), batch_size)])
    return {"loss": F.cross_entropy(logits, y).item(), "acc": (logits.argmax(1) == y).float().mean().item(),
            "logits": logits}


class SaveFailed(Exception):
    """An epoch's files could not be written (disk full, permission denied)."""


def steps_done(n: int, batch_size: int) -> int:
    """Optimizer steps in one pass over n examples."""
    return -(-n // batch_size)


def select_data(data: MnistSplits, subset: int, eval_subset: int, folds: int = 0, fold: int = 0):
    """The (possibly shortened) splits plus each example's index in its official file.

    With folds = K > 0 the training set (after `subset`) is cut into K folds by position (example i is in
    fold i mod K); fold `fold` is held out as "heldout" and the model trains on the others.
    """
    n_tr = subset or len(data.train_x)
    n_ev = eval_subset or len(data.val_x)
    n_te = eval_subset or len(data.test_x)
    val_offset = DataConfig(data.split).first_row("val")
    rows = np.arange(min(n_tr, len(data.train_x)))
    out = dict(
        train=(data.train_x[:n_tr], data.train_y[:n_tr], rows),
        val=(data.val_x[:n_ev], data.val_y[:n_ev], val_offset + np.arange(min(n_ev, len(data.val_x)))),
        test=(data.test_x[:n_te], data.test_y[:n_te], np.arange(min(n_te, len(data.test_x)))),
    )
    if folds:
        if not 0 <= fold < folds:
            raise ValueError(f"--fold must be in 0..{folds - 1} for --folds {folds}, got {fold}")
        held = rows % folds == fold
        keep, out_ = torch.from_numpy(np.flatnonzero(~held)), torch.from_numpy(np.flatnonzero(held))
        x, y = out["train"][0], out["train"][1]
        out["train"] = (x[keep], y[keep], rows[~held])
        out["heldout"] = (x[out_], y[out_], rows[held])
    return out


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=runs.REPO_ROOT, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def model_source(args: argparse.Namespace, data_root: Path) -> external.ModelSource | None:
    """The "source" section for --model-file/--model-class (None without them), checked on real images.

    The class is imported (its file runs, as the user's own script would), built with --model-kwargs and
    run on a batch of validation images: it must return 10 class scores; what it returns (logits,
    log-probabilities, probabilities) is detected. ModelError when any of that fails.
    """
    if args.model_file is None:
        return None
    if not args.model_class:
        raise external.ModelError("--model-file needs --model-class NAME (the nn.Module class in the file)")
    from model.import_checkpoint import check_model, probe_images   # (it imports this module)
    path = Path(args.model_file)
    torch.manual_seed(args.seed)
    net = external.instantiate(external.load_class(path, args.model_class), args.model_kwargs, path)
    source = external.ModelSource("class", file=f"{external.SOURCE_DIR}/{path.name}", sha256=external.sha256_of(path),
                                  class_name=args.model_class, kwargs=args.model_kwargs,
                                  input_norm=args.input_norm, outputs="auto")
    return check_model(net, source, probe_images(data_root, args.split), str(path))


def build_config(args: argparse.Namespace, run_id: str, device: torch.device, data_root: Path,
                 source: external.ModelSource | None = None) -> runs.RunConfig:
    train = TrainConfig(**{name: getattr(args, name) for name, *_ in train_options()})
    return runs.RunConfig(
        run_id=run_id, name=args.name or args.preset or args.variant, preset=args.preset,
        variant="custom" if source else args.variant, model=VARIANTS[args.variant], train=train, source=source,
        data=DataConfig(args.split, str(data_root), source_info(data_root).get("source")),
        device=str(device),
        versions={"python": platform.python_version(), "torch": torch.__version__,
                  "numpy": np.__version__},
        git_commit=git_commit(), started_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"), command=" ".join(sys.argv))


def build_model(cfg: runs.RunConfig, run_dir: Path) -> torch.nn.Module:
    """A freshly initialised network to train: our Net, or the run's own copy of a user's class, wrapped so it
    takes images in [0,1] and returns logits (the class itself is trained as written, not the fx rewrite)."""
    if cfg.source is None:
        return Net(cfg.model)
    net = external.bare_network(cfg.source, run_dir)
    return external.Wrapped(net, cfg.source.input_norm, cfg.source.outputs)


def fit(writer: runs.RunWriter, data: MnistSplits, device: torch.device, start_epoch: int = 1,
        dry_run: bool = False, ranks: Ranks = Ranks()) -> None:
    """Train epochs start_epoch..config.train.epochs, writing each finished epoch to the run (rank 0 only)."""
    cfg, t = writer.config, writer.config.train
    sel = select_data(data, t.subset, t.eval_subset, t.folds, t.fold)
    (tx, ty, ti), (vx, vy, vi), (sx, sy, si) = sel["train"], sel["val"], sel["test"]
    epochs = t.epochs
    if dry_run:
        epochs = 1
        tx, ty, ti = tx[:2 * t.batch_size], ty[:2 * t.batch_size], ti[:2 * t.batch_size]
        vx, vy, vi, sx, sy, si = vx[:100], vy[:100], vi[:100], sx[:100], sy[:100], si[:100]

    torch.manual_seed(t.seed)
    model = build_model(cfg, writer.dir)
    weights = model.net if isinstance(model, external.Wrapped) else model   # what checkpoints hold
    opt = make_optimizer(model, t.optimizer, t.lr, t.momentum)
    if start_epoch > 1:
        weights.load_state_dict(runs.load_state_dict(writer.dir, start_epoch - 1))
        opt_state = runs.load_optimizer_state(writer.dir)
        if opt_state is not None:
            load_optimizer_tensors(opt, opt_state)
    model.to(device)
    trained = model                                  # what train_epoch steps; evaluation uses the plain model
    if ranks.world > 1:
        trained = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    if ranks.rank == 0:
        print(f"[train] {writer.dir.name}: {len(tx)} train / {len(vx)} val / {len(sx)} test examples, "
              f"{t.optimizer} lr {t.lr} batch {t.batch_size} over {ranks.world} process(es), "
              f"epochs {start_epoch}..{epochs} on {device}")

    for epoch in range(start_epoch, epochs + 1):
        t0 = time.time()
        torch.manual_seed(t.seed * 1000 + epoch + 7919 * ranks.rank)  # dropout noise: same on resume, own per rank
        gen = torch.Generator().manual_seed(t.seed * 1000 + epoch)  # shuffle order: same on resume
        writer.set_status("running", last_epoch=epoch - 1, epoch_in_progress=epoch)
        last_progress = [0.0]

        def on_batch(step: int, batches: int, loss: float, epoch: int = epoch) -> None:
            if step == batches or time.time() - last_progress[0] >= 1.0:   # at most once a second
                writer.set_progress(epoch, epochs, step, batches, loss)
                last_progress[0] = time.time()
        tr = train_epoch(trained, opt, tx, ty, t.batch_size, gen, device, f"epoch {epoch}/{epochs}",
                         t.log_every, on_step=lambda: writer.heartbeat(epoch_in_progress=epoch), on_batch=on_batch,
                         epoch=epoch, ranks=ranks)
        if ranks.rank != 0:
            continue                                # rank 0 alone evaluates and writes
        va, te = evaluate(model, vx, vy, device), evaluate(model, sx, sy, device)
        for split_name, result in (("validation", va), ("test", te)):
            if not math.isfinite(result["loss"]):
                raise Diverged(epoch, steps_done(len(tx), t.batch_size), f"the {split_name} loss ({result['loss']})")
        row = {"train_loss": tr["loss"], "train_acc": tr["acc"], "val_loss": va["loss"], "val_acc": va["acc"],
               "test_loss": te["loss"], "test_acc": te["acc"], "lr": opt.param_groups[0]["lr"],
               "epoch_seconds": round(time.time() - t0, 3)}
        steps_per_epoch = steps_done(len(tx), t.batch_size)
        writer.add_steps([{"step": (epoch - 1) * steps_per_epoch + s["step"], "epoch": epoch, "loss": s["loss"]}
                          for s in tr["steps"]])
        preds = {
            "val_logits": va["logits"].numpy().astype(np.float16), "val_labels": vy.numpy().astype(np.uint8),
            "val_index": vi.astype(np.int32),
            "test_logits": te["logits"].numpy().astype(np.float16), "test_labels": sy.numpy().astype(np.uint8),
            "test_index": si.astype(np.int32),
            "train_true_prob": tr["true_prob"].numpy().astype(np.float16), "train_correct": tr["correct"].numpy(),
            "train_probs": tr["probs"].numpy(),    # (N,10) float16: 1.2 MB an epoch for 60k; label issues use it
            "train_labels": ty.numpy().astype(np.uint8), "train_index": ti.astype(np.int32),
        }
        if tr["rank"] is not None:
            preds["train_rank"] = tr["rank"].numpy()  # which process trained on each example
        if "heldout" in sel:                          # cross-validation: out-of-sample probabilities
            hx, hy, hi = sel["heldout"]
            ho = evaluate(model, hx, hy, device)
            preds.update(heldout_probs=ho["logits"].softmax(1).numpy().astype(np.float16),
                         heldout_labels=hy.numpy().astype(np.uint8), heldout_index=hi.astype(np.int32))
        state = {k: v.cpu() for k, v in weights.state_dict().items()}
        try:
            writer.write_epoch(epoch, row, state, preds, optimizer_tensors(opt))
        except OSError as e:                        # disk full, permission denied, ...
            raise SaveFailed(f"could not save epoch {epoch} ({e.strerror or e}); epochs before it are intact") from e
        writer.set_status("running", last_epoch=epoch)
        print(f"[train] epoch {epoch:3d}  train loss {tr['loss']:.4f} acc {tr['acc']:.2%}  "
              f"val loss {va['loss']:.4f} acc {va['acc']:.2%}  test acc {te['acc']:.2%}  "
              f"({row['epoch_seconds']:.1f}s)", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The trainer's flags: one per TrainConfig field, plus architecture, protocol and housekeeping."""
    p = argparse.ArgumentParser(description="Train the seed MNIST CNN (or a variant) and save a run folder.")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="a named set of defaults that flags override: "
                        + "; ".join(f"{k}: {v}" for k, v in sorted(PRESETS.items())) + " (default: none)")
    for name, kind, default, help_text, choices in train_options():
        p.add_argument(f"--{name.replace('_', '-')}", type=kind, choices=choices, default=None,
                       help=f"{help_text} (default: {default})")
    p.add_argument("--variant", choices=sorted(VARIANTS), default=None,
                   help=f"architecture variant (default: {OTHER_DEFAULTS['variant']})")
    p.add_argument("--model-file", type=Path, default=None,
                   help="train your own network: the Python file defining its nn.Module class. The file is "
                        "imported, so it RUNS, as your own script would: use only files you trust (default: none)")
    p.add_argument("--model-class", default=None, help="the class in --model-file (default: none)")
    p.add_argument("--model-kwargs", default="{}", help="JSON object of the class's constructor arguments")
    p.add_argument("--input-norm", nargs=2, type=float, metavar=("MEAN", "STD"), default=None,
                   help="your network expects (x - MEAN) / STD of images in [0,1], e.g. 0.1307 0.3081 (default: none)")
    p.add_argument("--split", choices=SPLITS, default=None,
                   help="classic: 50k train / 10k val / 10k test; seed: 60k train, validate on the test set "
                        f"(default: {OTHER_DEFAULTS['split']})")
    p.add_argument("--device", choices=DEVICES, default="auto",
                   help="where to train; auto picks cuda, then mps, then cpu (default: auto)")
    p.add_argument("--runs-dir", default=None, help="where runs are saved (default: $DIGIT_LENS_RUNS or runs/)")
    p.add_argument("--data-root", default=None, help="MNIST root (default: $DIGIT_LENS_DATA or .data/)")
    p.add_argument("--name", default=None, help="run name (default: the preset or variant)")
    p.add_argument("--resume", default=None, metavar="RUN", help="run id or folder to continue (default: none)")
    p.add_argument("--dry-run", action="store_true", help="two batches, nothing kept: a smoke test")
    args = p.parse_args(argv)
    args.explicit = {k for k, v in vars(args).items() if v is not None}   # flags given on the command line
    try:
        args.model_kwargs = json.loads(args.model_kwargs)
        if not isinstance(args.model_kwargs, dict):
            raise ValueError("not a JSON object")
    except ValueError as e:
        p.error(f"--model-kwargs must be a JSON object like '{{\"hidden\": 128}}' ({e})")
    if args.folds is not None and not 0 <= (args.fold or 0) < args.folds:
        p.error(f"--fold must be in 0..{args.folds - 1} for --folds {args.folds}")
    if args.model_file is not None and args.variant is not None:
        p.error("--variant picks one of our networks; --model-file brings your own: give one of them")
    preset = PRESETS.get(args.preset, {})
    defaults = {**{name: default for name, _, default, *_ in train_options()}, **OTHER_DEFAULTS}
    for key, default in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, preset.get(key, default))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if args.batch_size % world:
        if os.environ.get("RANK", "0") == "0":       # one message for the whole job
            print(f"error: --batch-size {args.batch_size} is the global batch and must divide evenly over "
                  f"{world} processes", file=sys.stderr)
        return 1
    try:
        ranks, device = join_torchrun(pick_device(args.device))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    try:
        return train_run(args, device, ranks)
    finally:
        if ranks.world > 1:
            dist.destroy_process_group()


def open_run(args: argparse.Namespace, device: torch.device, world: int):
    """Rank 0: create the run (or reopen it for --resume); (writer, first epoch, temp dir) or None after an error."""
    runs_dir = Path(args.runs_dir) if args.runs_dir else runs.default_runs_dir()
    data_root = Path(args.data_root) if args.data_root else default_root()
    tmp = None
    if args.resume:
        try:
            run_dir = runs.resolve_run(runs_dir, args.resume)
            writer = runs.RunWriter(run_dir, {}, resume=True)
        except runs.RunError as e:
            print(f"error: cannot resume: {e}", file=sys.stderr)
            return None
        if "epochs" in args.explicit:
            writer.config.train.epochs = args.epochs
            writer.save_config()
        start = int(writer.metrics[-1]["epoch"]) + 1 if writer.metrics else 1
    else:
        if args.dry_run:
            tmp = tempfile.TemporaryDirectory()
            runs_dir = Path(tmp.name)
        try:
            source = model_source(args, data_root)
            default_name = args.model_class if source else args.preset or args.variant
            run_id = runs.new_run_id(runs_dir, args.name or default_name)
            config = build_config(args, run_id, device, data_root, source)
            if source:
                config.name = args.name or default_name
            config.world_size = world
            writer = runs.RunWriter(runs_dir / run_id, config)
            if source:                               # the run keeps its own copy of the class file
                runs.atomic_write_bytes(writer.dir / source.file, Path(args.model_file).read_bytes())
        except (external.ModelError, DataError) as e:
            print(f"error: {e}", file=sys.stderr)
            return None
        except runs.RunError as e:
            print(f"error: {e}", file=sys.stderr)
            return None
        except OSError as e:
            print(f"error: cannot create the run folder in {runs_dir} ({e.strerror or e})", file=sys.stderr)
            return None
        start = 1
    return writer, start, tmp


def train_run(args: argparse.Namespace, device: torch.device, ranks: Ranks) -> int:
    """Open the run on rank 0, tell the other ranks where it is and where to start, then train."""
    opened = open_run(args, device, ranks.world) if ranks.rank == 0 else None
    if ranks.world > 1:
        shared = [(str(opened[0].dir), opened[1]) if opened else None]
        dist.broadcast_object_list(shared, src=0)  # rank 0 decides the run folder and the first epoch
        if shared[0] is not None and ranks.rank != 0:
            opened = (RankWriter(Path(shared[0][0])), shared[0][1], None)
    if opened is None:
        return 1
    writer, start, tmp = opened
    run_dir = writer.dir
    data_root = Path(args.data_root) if args.data_root else default_root()
    try:
        data = load_mnist(data_root, writer.config.data.split)
    except DataError as e:
        writer.set_status("failed", error=str(e))
        print(f"error: {e}", file=sys.stderr)
        return 1

    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    try:
        fit(writer, data, device, start, dry_run=args.dry_run, ranks=ranks)
    except KeyboardInterrupt:
        writer.set_status("interrupted")
        print(f"[train] interrupted; finished epochs are kept in {run_dir}", file=sys.stderr)
        return 130
    except Diverged as e:
        writer.set_status("failed", error=str(e), diverged_epoch=e.epoch)
        print(f"error: {e}; finished epochs are kept in {run_dir}", file=sys.stderr)
        return 1
    except SaveFailed as e:
        try:
            writer.set_status("failed", error=str(e))
        except OSError:
            pass                                    # the disk is full even for status.json: say it here
        print(f"error: {e}", file=sys.stderr)
        return 1
    except Exception as e:
        writer.set_status("failed", error=f"{type(e).__name__}: {e}")
        raise
    if ranks.world > 1:
        dist.barrier()                              # the others are done with the run folder
    writer.set_status("completed")
    if ranks.rank == 0:
        print(f"[train] run saved to {run_dir}" if not args.dry_run else "[train] dry run ok")
    if tmp:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
