"""Plots of a training history, drawn off screen (matplotlib's Agg canvas, no pyplot state).

Needs matplotlib, an optional dependency: ``pip install "jaxnet[plot]"``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_history(history: dict, path, *, title: str | None = None) -> Path:
    """Draw the cost J per step (log y-axis) and write it to `path` (format from its suffix).

    Arguments:
        history: the dict `fit` returns: ``cost`` `(steps_run,)`, and, when training had
            validation data, ``val_step`` and ``val_cost`` (drawn as dots).
        path: the image file to write, e.g. ``cost.png``; missing parent folders are created.
        title: the figure title (e.g. the data set and the architecture).

    Returns:
        `path` as a `pathlib.Path`.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError('plot_history needs matplotlib: pip install "jaxnet[plot]"') from err
    if "cost" not in history:
        raise ValueError(f"history has no 'cost' entry (it holds {sorted(history)})")
    cost = np.asarray(history["cost"], dtype=float)

    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(np.arange(cost.size), cost, lw=1.2, label="training cost J")
    if "val_cost" in history and len(history["val_cost"]):
        ax.plot(np.asarray(history["val_step"]), np.asarray(history["val_cost"], dtype=float),
                "o", ms=3, label="validation cost")
    # A cost of exactly 0 (or a diverged NaN) cannot sit on a log axis: keep the axis linear.
    positive = cost[np.isfinite(cost)]
    if positive.size and np.all(positive > 0):
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("cost J")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
