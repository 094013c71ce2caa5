"""The timeline of a query's sightings: one row per source, one bar per sighting.

Bars span the sighting's interval (seconds for a video, image numbers for an image source, each
row labelled with its unit) and are coloured by the sighting's best similarity, on one colour
scale for the whole picture. Written with Matplotlib's Agg canvas (no display needed), atomically.
"""

from __future__ import annotations

import io
from typing import Optional, Sequence

from ..utils.io import atomic_open
from .sightings import Sighting

__all__ = ["draw_timeline", "timeline_png"]


def draw_timeline(
    sightings: Sequence[Sighting],
    path: str,
    title: str = "",
    threshold: Optional[float] = None,
) -> None:
    """Save the timeline of ``sightings`` as a PNG at ``path`` (an empty plot says so)."""
    png = timeline_png(sightings, title, threshold)
    with atomic_open(path, "wb") as f:
        f.write(png)


def timeline_png(
    sightings: Sequence[Sighting], title: str = "", threshold: Optional[float] = None
) -> bytes:
    """The timeline of ``sightings`` as PNG bytes."""
    from matplotlib import cm, colormaps, colors  # noqa: PLC0415  (heavy; only for a picture)
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    rows = sorted({(s.source, s.camera, s.kind) for s in sightings})
    fig = Figure(figsize=(9, 1.2 + 0.45 * max(len(rows), 1)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    sims = [s.best_similarity for s in sightings]
    norm = colors.Normalize(vmin=min(sims + [0.0]), vmax=max(sims + [1.0]))
    cmap = colormaps["viridis"]
    for y, row in enumerate(rows):
        for s in sightings:
            if (s.source, s.camera, s.kind) != row:
                continue
            width = max(s.end - s.start, 0.0)
            pad = 0.5 if s.kind == "images" else 0.1
            ax.barh(
                y,
                width + 2 * pad,
                left=s.start - pad,
                height=0.6,
                color=cmap(norm(s.best_similarity)),
                edgecolor="black",
                linewidth=0.5,
            )
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([_label(*r) for r in rows], fontsize=8)
    ax.set_xlabel("time in the source (s = seconds of video, # = image number)")
    ax.invert_yaxis()
    if not rows:
        ax.text(0.5, 0.5, "no sighting", ha="center", va="center", transform=ax.transAxes)
    bar = fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax)
    bar.set_label("best similarity")
    if threshold is not None:
        bar.ax.axhline(threshold, color="red", linewidth=1.5)
    ax.set_title(title or f"{len(sightings)} sightings", fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _label(source: str, camera: str, kind: str) -> str:
    name = source if len(source) <= 40 else "..." + source[-37:]
    return f"{name} [{camera}] (#)" if kind == "images" else f"{name} (s)"
