"""Figures of the evaluation: the CUHK-SYSU gallery-size curve (paper, Fig. "gallery size").

Uses Matplotlib's object API with the Agg canvas, so it never touches the global backend of the
process (training may run with another one) and works headless.
"""

from __future__ import annotations

from typing import Sequence

from stl_search.utils.io import atomic_open


def plot_gallery_size_curve(
    sizes: Sequence[int],
    mean_ap: Sequence[float],
    top1: Sequence[float],
    path: str,
    title: str = "CUHK-SYSU: performance vs. gallery size",
) -> None:
    """Save mAP and top-1 (in %) against the gallery size (log axis) as a PNG, atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    order = sorted(range(len(sizes)), key=lambda i: sizes[i])
    xs = [sizes[i] for i in order]
    fig = Figure(figsize=(5, 3.6), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(xs, [mean_ap[i] for i in order], marker="o", label="mAP")
    ax.plot(xs, [top1[i] for i in order], marker="s", label="top-1")
    if len(xs) > 1 and xs[0] > 0:
        ax.set_xscale("log")
    ax.set_xticks(xs)
    ax.set_xticklabels([str(x) for x in xs])
    ax.set_xlabel("gallery size")
    ax.set_ylabel("%")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")
