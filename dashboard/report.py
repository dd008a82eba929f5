"""The downloadable HTML report of one run: it only assembles (numbers from dashboard/cache.py, figures from
dashboard/figures.py).

The report is one self-contained HTML file: Plotly's JavaScript is inlined once, tables are
`DataFrame.to_html`, so it opens offline in any browser. It reads through the same cached wrappers as
the pages (`cache.diagnosis`, `cache.confusion`, `cache.class_report`, ...), so the report and the pages
show the same numbers, computed once.
"""
from __future__ import annotations

import html
import time
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from dashboard import cache
from dashboard.figures import MARK_COLORS, add_spike_marks, confusion_figure, curves_figure, style_class_report


def flatten(config: dict, prefix: str = "") -> dict[str, object]:
    """A nested config as {"train.lr": 0.01, ...}; lists become strings."""
    out: dict[str, object] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = str(value) if isinstance(value, (list, tuple)) else value
    return out


def build_report(run_dir: Path | str, epoch: int | None = None, split: str = "val") -> str:
    """A self-contained HTML report of one run: curves, overfitting verdict, confusion matrix, per-class table.

    Args:
        run_dir: the run folder.
        epoch: the epoch of the confusion matrix and per-class table. Default: the best epoch.
        split: "val" or "test". Default: "val".
    Returns:
        The HTML page as a string (Plotly's JavaScript inlined once: opens offline).
    """
    run_dir = Path(run_dir)
    key = str(run_dir)
    config = cache.load_config(key)
    metrics = cache.load_metrics(key)
    name = config.name or run_dir.name
    parts: list[str] = []
    try:
        diag = cache.diagnosis(key)
        verdict, spikes = diag.verdict, diag.spikes
    except ValueError as e:
        verdict, spikes = f"No diagnosis: {e}", []
    best = cache.best_epoch(key)
    epoch = epoch if epoch is not None else best

    figures: list[go.Figure] = []
    marks = {f"best epoch {best}": (best, MARK_COLORS["best"])} if best is not None else {}
    if len(metrics):
        same = (name,) if config.data.val_is_test else ()
        figures += [curves_figure({name: metrics}, "loss", marks=marks, val_is_test=same),
                    curves_figure({name: metrics}, "acc", marks=marks, val_is_test=same)]
        add_spike_marks(figures[0], spikes)
    parts.append(f"<h2>Overfitting</h2><p class='verdict'>{html.escape(verdict)}</p>")
    parts.append("<h2>Training curves</h2>{FIG0}{FIG1}" if figures else "<p>No finished epoch yet.</p>")

    if epoch is not None and epoch in cache.prediction_epochs(key):
        cm = cache.confusion(key, epoch, split)
        figures.append(confusion_figure(cm, title=f"Confusion matrix, {split} set, epoch {epoch}", clickable=False))
        parts.append(f"<h2>Errors at epoch {epoch} ({split} set)</h2>{{FIG{len(figures) - 1}}}")
        parts.append("<h3>Per class</h3><p>The three classes with the lowest F1 are in red.</p>"
                     + style_class_report(cache.class_report(key, epoch, split)).to_html())
        parts.append("<h3>Most confused pairs</h3>" + cache.top_confusions(key, epoch, split, 10).to_html(
            index=False, float_format=lambda v: f"{v:.1%}"))
    else:
        parts.append("<h2>Errors</h2><p>This run has no saved predictions for that epoch, so there is no "
                     "confusion matrix or per-class table.</p>")

    parts.append("<h2>Metrics per epoch</h2>" + metrics.to_html(index=False, float_format=lambda v: f"{v:.4f}"))
    flat = pd.Series(flatten(config.to_dict()), name="value").rename_axis("field").to_frame()
    parts.append("<h2>Configuration</h2>" + flat.to_html())

    body = "\n".join(parts)
    for i, fig in enumerate(figures):
        body = body.replace(f"{{FIG{i}}}", fig.to_html(full_html=False, include_plotlyjs=(i == 0),
                                                       config={"displaylogo": False}))
    title = f"digit-lens report: {html.escape(name)} ({html.escape(run_dir.name)})"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #212529; }}
table {{ border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0 1.5em; }}
th, td {{ border: 1px solid #dee2e6; padding: 3px 8px; text-align: right; }}
th {{ background: #f1f3f5; }}
.verdict {{ font-size: 1.1em; padding: 0.6em 1em; background: #f1f3f5; border-left: 4px solid #4C6EF5; }}
.meta {{ color: #868e96; }}
</style></head><body>
<h1>{title}</h1>
<p class="meta">Generated {time.strftime('%Y-%m-%d %H:%M')} by digit-lens from <code>{html.escape(str(run_dir))}</code>.
Best epoch = the lowest validation loss.</p>
{body}
</body></html>"""
