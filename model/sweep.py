"""Train a grid of ordinary runs, a few at a time, and print how each did.

    python -m model.sweep --lr 0.1 0.01 --variant seed dropout --epochs 1 --subset 256 --parallel 2

    python -m model.sweep --cross-val 5 --epochs 3 --name cv   # 5 fold runs: out-of-sample probabilities

A trainer flag given several values is an axis of the grid; a flag given one value is passed to every
run. Each grid point is one ordinary run of `python -m model.train`, named after the point
(`sweep-lr0.1-dropout`: `<--name>-<flag><value>`, choice flags such as --variant by their value alone).
At most --parallel trainers run at once, each in its own process.

Re-running the same command continues the sweep: a point whose run (found by name in the runs
folder) is completed or still running is skipped, an interrupted one is resumed with --resume, a
failed one is reported and left alone (delete its folder to train it again). The table at the end
lists every point with its state and best validation accuracy.
"""
from __future__ import annotations

import argparse
import itertools
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from model import runs, train
from model.config import train_options

TRAINER = [sys.executable, "-m", "model.train"]
CHOICE_FLAGS = {"variant", "optimizer", "split", "preset"}   # named by their value alone in run names
RESERVED = {"name", "resume", "runs-dir", "dry-run"}         # the sweep sets these itself


def parse_grid(tokens: list[str]) -> dict[str, list[str]]:
    """`--lr 0.1 0.01 --epochs 1` -> {"lr": ["0.1", "0.01"], "epochs": ["1"]} (flags in the order given)."""
    grid: dict[str, list[str]] = {}
    flag = None
    for tok in tokens:
        if tok.startswith("--"):
            flag = tok[2:]
            if flag in RESERVED:
                raise ValueError(f"--{flag} is set by the sweep; give it to the sweep, not to the grid")
            if flag in grid:
                raise ValueError(f"--{flag} is given twice; list all its values after one --{flag}")
            grid[flag] = []
        elif flag is None:
            raise ValueError(f"{tok!r} is not after a trainer flag")
        else:
            grid[flag].append(tok)
    empty = [f for f, values in grid.items() if not values]
    if empty:
        raise ValueError(f"--{empty[0]} has no value")
    return grid


def expand(grid: dict[str, list[str]], prefix: str) -> list[tuple[str, list[str]]]:
    """Every grid point as (run name, trainer flags), in the order of the flags and their values."""
    axes = [f for f, values in grid.items() if len(values) > 1]
    points = []
    for combo in itertools.product(*grid.values()):
        point = dict(zip(grid, combo))
        parts = [point[f] if f in CHOICE_FLAGS else f.replace("-", "") + point[f] for f in axes]
        name = runs.check_name("-".join([prefix, *parts]))
        points.append((name, [arg for f, v in point.items() for arg in (f"--{f}", v)]))
    return points


def find_run(runs_dir: Path, name: str) -> runs.RunInfo | None:
    """The newest run of that name in the runs folder, or None."""
    return next((r for r in runs.list_runs(runs_dir) if r.name == name), None)


def plan(points: list[tuple[str, list[str]]], runs_dir: Path, trainer: list[str]) -> list[tuple[str, list[str] | None, str]]:
    """(name, command or None to skip, why) for every point, after looking for its run by name."""
    out = []
    for name, flags in points:
        found = find_run(runs_dir, name)
        if found is None:
            out.append((name, [*trainer, *flags, "--name", name, "--runs-dir", str(runs_dir)], "new"))
        elif found.state == "interrupted":
            epochs = flags[flags.index("--epochs"):flags.index("--epochs") + 2] if "--epochs" in flags else []
            out.append((name, [*trainer, "--resume", str(found.path), *epochs, "--runs-dir", str(runs_dir)],
                        "resume"))
        else:
            out.append((name, None, found.state))     # completed, running elsewhere, failed or imported
    return out


def run_all(jobs: list[tuple[str, list[str]]], parallel: int, poll: float = 0.2) -> dict[str, int]:
    """Run the commands, at most `parallel` at once; the exit code of each by name (output shown on failure)."""
    waiting, active, codes = list(jobs), {}, {}
    while waiting or active:
        while waiting and len(active) < parallel:
            name, cmd = waiting.pop(0)
            log = tempfile.TemporaryFile()
            active[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log)
            print(f"[sweep] started {name}", flush=True)
        time.sleep(poll)
        for name, (proc, log) in list(active.items()):
            if proc.poll() is None:
                continue
            del active[name]
            codes[name] = proc.returncode
            print(f"[sweep] {name} exited with {proc.returncode}", flush=True)
            if proc.returncode != 0:
                log.seek(0)
                print(log.read().decode(errors="replace")[-2000:], file=sys.stderr)
            log.close()
    return codes


def summary(names: list[str], runs_dir: Path) -> list[dict]:
    """One row per grid point: name, state, best validation accuracy (None before a finished epoch), run id."""
    rows = []
    for name in names:
        found = find_run(runs_dir, name)
        best = None
        if found is not None and runs.metrics_path(found.path).exists():
            metrics = runs.load_metrics(found.path)
            best = float(metrics["val_acc"].max()) if len(metrics) else None
        rows.append({"name": name, "state": found.state if found else "missing", "best_val_acc": best,
                     "run_id": found.run_id if found else ""})
    return rows


def print_table(rows: list[dict]) -> None:
    width = max(len(r["name"]) for r in rows)
    print(f"{'name':<{width}}  {'state':<11}  best val acc  run")
    for r in rows:
        acc = f"{r['best_val_acc']:.2%}" if r["best_val_acc"] is not None else "-"
        print(f"{r['name']:<{width}}  {r['state']:<11}  {acc:>12}  {r['run_id']}")


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(
        description="Train every point of a grid of trainer flags as its own run; other flags go to model.train "
                    "(several values: a grid axis; one value: passed to every run).",
        epilog="trainer flags: " + " ".join(f"--{n.replace('_', '-')}" for n, *_ in train_options())
               + " --variant --split --preset --device --data-root", allow_abbrev=False)
    p.add_argument("--name", default="sweep", help="prefix of the run names (default: sweep)")
    p.add_argument("--parallel", type=int, default=1, help="trainers running at once (default: 1)")
    p.add_argument("--runs-dir", default=None, help="where runs are saved (default: $DIGIT_LENS_RUNS or runs/)")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument("--cross-val", type=int, default=None, metavar="K",
                   help="K-fold cross-validation: K runs, each holding out one fold of the training set "
                        "(= --folds K --fold 0 1 ... K-1); their held-out probabilities are out-of-sample for "
                        "every training image (python -m analysis.label_issues uses them)")
    return p.parse_known_args(argv)


def main(argv: list[str] | None = None, trainer: list[str] = TRAINER) -> int:
    """`trainer` is the command that trains one run (tests swap in a stand-in)."""
    args, rest = parse_args(argv)
    if args.parallel < 1:
        print("error: --parallel must be at least 1", file=sys.stderr)
        return 2
    runs_dir = (Path(args.runs_dir) if args.runs_dir else runs.default_runs_dir()).resolve()
    if args.cross_val is not None:
        if args.cross_val < 2:
            print("error: --cross-val needs at least 2 folds", file=sys.stderr)
            return 2
        rest = rest + ["--folds", str(args.cross_val), "--fold", *map(str, range(args.cross_val))]
    try:
        points = expand(parse_grid(rest), args.name)
    except (ValueError, runs.RunError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name, flags in points:        # a typo in a flag fails here, before anything starts
        try:
            train.parse_args(flags + ["--name", name])
        except SystemExit as e:
            return int(e.code or 2)
    todo = plan(points, runs_dir, trainer)
    if args.dry_run:
        for name, cmd, why in todo:
            print(shlex.join(cmd) if cmd else f"# {name}: {why}, skipped")
        return 0
    for name, cmd, why in todo:
        if cmd is None:
            print(f"[sweep] {name}: {why}, skipped")
    codes = run_all([(name, cmd) for name, cmd, _ in todo if cmd], args.parallel)
    print()
    print_table(summary([name for name, _ in points], runs_dir))
    return 1 if any(codes.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
