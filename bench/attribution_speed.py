"""Attribution speed: our `analysis.attributions` against plain Captum calls, measured in one process.

    python bench/attribution_speed.py [--run RUN_DIR] [--repeats 7] [--images 256] [--rounds 2]
                                      [--internal-batch-size 512] [--saliency-batch 1000]

(a) Integrated Gradients, 50 steps, one test image: ms per image, ours vs a plain
    `IntegratedGradients(model).attribute(x, target=t)` (Captum defaults), alternating, median.
(b) IG on `--images` test images: one `attribute` call (chunked by internal_batch_size) vs one
    call per image; images/s and the ratio (median over rounds, the order alternating).
(c) Saliency over the whole 10k test set in batches: seconds (median over rounds).
The machine may be shared: the load average is printed, and ratios come from the same round.
(d) The cost of thread safety: one `private_copy` of the model (ms), and DeepLift on one image
    through `attribute` (private copy) vs plain `DeepLift(model)` on the shared model.
Default run: the newest run in runs/ with a checkpoint, else a randomly initialised seed Net.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from captum.attr import DeepLift, IntegratedGradients  # noqa: E402

from analysis.attributions import attribute, private_copy  # noqa: E402
from data.mnist import load_raw  # noqa: E402
from bench.common import pick_model  # noqa: E402
from model.net import to_input  # noqa: E402


def median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def alternate(fns: dict[str, callable], repeats: int) -> dict[str, float]:
    """Median ms of each function, calls interleaved so that load changes hit both alike."""
    for fn in fns.values():
        fn()                                                      # warm-up
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append((time.perf_counter() - t0) * 1000)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default=None, help="run folder (default: newest run with a checkpoint)")
    p.add_argument("--repeats", type=int, default=7, help="timed repeats for single-image figures (default: 7)")
    p.add_argument("--images", type=int, default=256, help="images for the batched IG figure (default: 256)")
    p.add_argument("--internal-batch-size", type=int, default=512,
                   help="IG internal_batch_size for the batched figure (default: 512)")
    p.add_argument("--rounds", type=int, default=2, help="rounds of (b) and (c), order alternated (default: 2)")
    p.add_argument("--saliency-batch", type=int, default=1000, help="batch size for saliency on 10k (default: 1000)")
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")                               # Captum's "setting hooks" notices

    model, source = pick_model(args.run)
    raw = load_raw()
    images = to_input(torch.from_numpy(raw["t10k-images-idx3-ubyte"].copy()))       # (10000,1,28,28)
    labels = torch.from_numpy(raw["t10k-labels-idx1-ubyte"].astype(np.int64))     # (10000,)
    print(f"model: {source}; torch threads: {torch.get_num_threads()}; "
          f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")

    # (a) IG on one image
    x1, t1 = images[:1], int(labels[0])
    ig = alternate({
        "ours": lambda: attribute(model, x1, t1, "integrated_gradients", steps=50),
        "captum": lambda: IntegratedGradients(model).attribute(x1, target=t1),
    }, args.repeats)
    print(f"(a) IG 50 steps, 1 image: ours {ig['ours']:.1f} ms, plain Captum {ig['captum']:.1f} ms "
          f"(ours / Captum = {ig['ours'] / ig['captum']:.2f})")

    # (b) IG on N images: batched vs one at a time; (c) saliency on 10k. Rounds alternate the order.
    xs, ts = images[:args.images], labels[:args.images]

    def ig_batched() -> None:
        attribute(model, xs, ts, "integrated_gradients", steps=50, internal_batch_size=args.internal_batch_size)

    def ig_single() -> None:
        for i in range(args.images):
            attribute(model, xs[i:i + 1], int(ts[i]), "integrated_gradients", steps=50)

    def saliency_10k() -> None:
        for i in range(0, len(images), args.saliency_batch):
            attribute(model, images[i:i + args.saliency_batch], labels[i:i + args.saliency_batch], "saliency")

    rates: dict[str, list[float]] = {"batched": [], "single": [], "saliency_s": []}
    for r in range(args.rounds):
        order = [("batched", ig_batched), ("single", ig_single)]
        for name, fn in (order if r % 2 == 0 else order[::-1]):
            t0 = time.perf_counter()
            fn()
            rates[name].append(args.images / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        saliency_10k()
        rates["saliency_s"].append(time.perf_counter() - t0)
    batched, single = statistics.median(rates["batched"]), statistics.median(rates["single"])
    ratios = [b / s for b, s in zip(rates["batched"], rates["single"])]
    print(f"(b) IG 50 steps, {args.images} images: batched (internal_batch_size={args.internal_batch_size}) "
          f"{batched:.1f} img/s, one at a time {single:.1f} img/s (batched / single = "
          f"{statistics.median(ratios):.2f}; per round {', '.join(f'{q:.2f}' for q in ratios)})")
    sal_s = statistics.median(rates["saliency_s"])
    print(f"(c) Saliency on {len(images)} test images (batches of {args.saliency_batch}): {sal_s:.2f} s "
          f"({len(images) / sal_s:.0f} img/s; rounds: {', '.join(f'{q:.2f}' for q in rates['saliency_s'])} s)")

    # (d) the cost of the private copy behind thread safety
    copy_ms = median_ms(lambda: private_copy(model), max(args.repeats, 20))
    dl = alternate({
        "ours": lambda: attribute(model, x1, t1, "deeplift"),
        "captum": lambda: DeepLift(model).attribute(x1, baselines=torch.zeros_like(x1), target=t1),
    }, args.repeats)
    print(f"(d) private_copy of the model: {copy_ms:.2f} ms; DeepLift 1 image: ours (on a copy) "
          f"{dl['ours']:.1f} ms, plain Captum (shared model, not thread-safe) {dl['captum']:.1f} ms")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
