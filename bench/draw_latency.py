"""Draw-and-predict latency: one canvas drawing -> preprocess -> prediction + Saliency map.

    python bench/draw_latency.py [--run RUN_DIR] [--repeats 50] [--size 280]

The drawing is what the dashboard's canvas hands over: an RGBA uint8 (size, size, 4) array with a
transparent background and white anti-aliased strokes (a '7', drawn once before timing). Each repeat
times the whole path the page runs after a stroke: `analysis.preprocess.preprocess`, the model's
softmax, and a Saliency map towards the predicted class (`analysis.attributions.attribute(...,
"saliency")` when that module exists, else a plain torch input gradient). Prints the median and the
95th percentile in ms, and each stage's median (target: total median under 150 ms).
Default run: the newest run in runs/ with a checkpoint, else a randomly initialised seed Net.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as `python bench/draw_latency.py`

import argparse  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from analysis.preprocess import preprocess  # noqa: E402
from bench.common import pick_model  # noqa: E402

TARGET_MS = 150.0


def saliency_fn():
    """(function (model, x (1,1,28,28), target) -> (1,1,28,28), its name)."""
    try:
        from analysis.attributions import attribute
    except ImportError:
        def plain(model: torch.nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
            x = x.detach().clone().requires_grad_(True)
            (g,) = torch.autograd.grad(model(x)[0, target], x)
            return g.abs()
        return plain, "plain torch gradient (analysis.attributions not found)"
    return (lambda model, x, target: attribute(model, x, target, "saliency")), "analysis.attributions saliency"


def canvas_drawing(size: int) -> np.ndarray:
    """A white '7' on a transparent canvas, anti-aliased: RGBA uint8 (size, size, 4)."""
    big = Image.new("RGBA", (size * 4, size * 4), (0, 0, 0, 0))
    s = size / 280                                                       # coordinates below: a 1120 px canvas
    ImageDraw.Draw(big).line([(300 * s, 260 * s), (820 * s, 260 * s), (480 * s, 900 * s)],
                             fill=(255, 255, 255, 255), width=int(64 * s))
    return np.asarray(big.resize((size, size), Image.Resampling.LANCZOS))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default=None, help="run folder (default: newest run with a checkpoint)")
    p.add_argument("--repeats", type=int, default=50, help="timed repeats (default: 50)")
    p.add_argument("--size", type=int, default=280, help="canvas side in pixels (default: 280)")
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")

    model, source = pick_model(args.run)
    saliency, saliency_name = saliency_fn()
    drawing = canvas_drawing(args.size)

    def once() -> tuple[float, float, float, int]:
        t0 = time.perf_counter()
        x = preprocess(drawing).tensor                                   # (1,1,28,28)
        t1 = time.perf_counter()
        with torch.no_grad():
            probs = torch.softmax(model(x), dim=1)[0]                   # (10,)
        pred = int(probs.argmax())
        t2 = time.perf_counter()
        saliency(model, x, pred)                                         # (1,1,28,28)
        t3 = time.perf_counter()
        return (t1 - t0) * 1000, (t2 - t1) * 1000, (t3 - t2) * 1000, pred

    for _ in range(3):
        once()                                                           # warm-up
    stages = np.array([once()[:3] for _ in range(args.repeats)])        # (repeats, 3) ms
    total = stages.sum(axis=1)
    pred = once()[3]

    print(f"model: {source}")
    print(f"saliency: {saliency_name}; canvas {args.size}x{args.size} RGBA; predicted class {pred}; "
          f"torch threads {torch.get_num_threads()}")
    for name, col in zip(("preprocess", "predict", "saliency"), stages.T):
        print(f"  {name:<10} median {np.median(col):7.1f} ms")
    med, p95 = float(np.median(total)), float(np.percentile(total, 95))
    print(f"draw -> preprocess -> prediction + saliency over {args.repeats} repeats: "
          f"median {med:.1f} ms, p95 {p95:.1f} ms (target: median < {TARGET_MS:.0f} ms) "
          f"{'OK' if med < TARGET_MS else 'SLOWER THAN TARGET'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
