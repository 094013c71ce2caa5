"""The similarity threshold of an index: "is this person in the gallery at all?".

A calibration counts, on a labelled split, the similarities of *positive* pairs (a query and a
gallery detection of the same identity) and *negative* pairs (different identities) in
histograms of :data:`BINS` bins over [-1, 1] (streaming, so a PRW-sized split fits in memory).
From them:

- the curve: per bin edge ``t``, the false-match rate ``FPR(t)`` (the share of negative pairs
  with similarity >= t) and the true-match rate ``TPR(t)`` (likewise for positive pairs);
- the threshold for a target false-match rate: the lowest edge with ``FPR(t) <= target``;
- each hit's calibrated score: ``FPR`` at its similarity, i.e. how often a different person
  scores that high (lower is surer), floored at one negative pair.

It is saved as ``calibration.json`` (plus ``calibration.png``, the curve) in the index folder,
with the sha256 of the weights it was measured with; an index whose weights differ ignores it.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np

from ..utils.io import atomic_open, atomic_write_json

__all__ = ["BINS", "PairHistogram", "Calibration", "CALIBRATION_FILE", "TooFewPairs"]

BINS = 20000  # similarity resolution 1e-4
CALIBRATION_FILE = "calibration.json"
_EDGES = np.linspace(-1.0, 1.0, BINS + 1)


class TooFewPairs(ValueError):
    """The labelled split has too few negative pairs to measure the asked false-match rate."""


class PairHistogram:
    """Counts of positive and negative pair similarities, fed query by query."""

    def __init__(self):
        self.positive = np.zeros(BINS, dtype=np.int64)
        self.negative = np.zeros(BINS, dtype=np.int64)

    def add(self, similarities: np.ndarray, same_identity: np.ndarray) -> None:
        sims = np.clip(np.asarray(similarities, dtype=np.float64).ravel(), -1.0, 1.0)
        same = np.asarray(same_identity, dtype=bool).ravel()
        bins = np.minimum(((sims + 1.0) * (BINS / 2.0)).astype(np.int64), BINS - 1)
        self.positive += np.bincount(bins[same], minlength=BINS)
        self.negative += np.bincount(bins[~same], minlength=BINS)

    def curve(self) -> Dict[str, np.ndarray]:
        """``threshold`` (the BINS lower bin edges), ``fpr`` and ``tpr`` at each (non-increasing
        in the threshold)."""
        npos, nneg = int(self.positive.sum()), int(self.negative.sum())
        if npos == 0 or nneg == 0:
            raise ValueError(
                f"calibration needs positive and negative pairs, got {npos} and {nneg}"
            )
        at_least = lambda c: np.cumsum(c[::-1])[::-1]  # noqa: E731  pairs with sim >= edge
        return {
            "threshold": _EDGES[:-1],
            "fpr": at_least(self.negative) / nneg,
            "tpr": at_least(self.positive) / npos,
        }


@dataclass
class Calibration:
    """A calibration's threshold and curve (see the module docstring)."""

    threshold: float
    target_fpr: float
    threshold_fpr: float  # the FPR actually measured at the threshold (<= target)
    threshold_tpr: float
    num_positive: int
    num_negative: int
    dataset: str
    weights_sha256: Optional[str]
    curve: Dict[str, np.ndarray]  # threshold, fpr, tpr: kept at the edges where they change

    @classmethod
    def from_histogram(
        cls, hist: PairHistogram, target_fpr: float, dataset: str, weights_sha256: str
    ) -> "Calibration":
        """The threshold for ``target_fpr``; raises when the negatives are too few to measure
        it (fewer than ``1 / target_fpr``)."""
        nneg, npos = int(hist.negative.sum()), int(hist.positive.sum())
        if not 0 < target_fpr < 1:
            raise ValueError(f"--target-fpr must be in (0, 1), got {target_fpr}")
        if nneg * target_fpr < 1:
            raise TooFewPairs(
                f"{dataset}: {nneg} negative pairs cannot measure a false-match rate of "
                f"{target_fpr:g} (needs at least {int(np.ceil(1 / target_fpr))})"
            )
        curve = hist.curve()
        i = int(np.argmax(curve["fpr"] <= target_fpr))  # fpr is non-increasing
        change = np.r_[True, np.diff(curve["fpr"]) != 0] | np.r_[True, np.diff(curve["tpr"]) != 0]
        change[i] = True
        return cls(
            threshold=float(curve["threshold"][i]),
            target_fpr=float(target_fpr),
            threshold_fpr=float(curve["fpr"][i]),
            threshold_tpr=float(curve["tpr"][i]),
            num_positive=npos,
            num_negative=nneg,
            dataset=dataset,
            weights_sha256=weights_sha256,
            curve={k: v[change] for k, v in curve.items()},
        )

    def tpr_at(self, fpr: float) -> float:
        """The true-match rate at the lowest threshold whose FPR is at most ``fpr``."""
        ok = self.curve["fpr"] <= fpr
        return float(self.curve["tpr"][np.argmax(ok)]) if ok.any() else 0.0

    def false_match_rate(self, similarities: np.ndarray) -> np.ndarray:
        """Each similarity's calibrated score: the FPR at it, at least ``1 / num_negative``."""
        edges = self.curve["threshold"]
        i = np.searchsorted(edges, np.asarray(similarities, dtype=np.float64), side="right") - 1
        fpr = np.where(i >= 0, self.curve["fpr"][np.clip(i, 0, None)], 1.0)
        return np.maximum(fpr, 1.0 / self.num_negative)

    def as_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "curve"}
        d["tpr_at_fpr"] = {f"{f:g}": self.tpr_at(f) for f in (1e-1, 1e-2, 1e-3, 1e-4)}
        d["curve"] = {k: [float(x) for x in v] for k, v in self.curve.items()}
        return d

    def save(self, folder: str) -> str:
        path = os.path.join(folder, CALIBRATION_FILE)
        atomic_write_json(self.as_dict(), path)
        self.plot(os.path.join(folder, "calibration.png"))
        return path

    @classmethod
    def load(cls, folder: str, weights_sha256: Optional[str]) -> Optional["Calibration"]:
        """The calibration of the index in ``folder``; None when there is none or it was
        measured with other weights. Raises naming the file and key when it is malformed."""
        path = os.path.join(folder, CALIBRATION_FILE)
        if not os.path.isfile(path):
            return None
        with open(path) as f:
            d = json.load(f)
        try:
            if d["weights_sha256"] != weights_sha256:
                return None
            curve = {k: np.asarray(d["curve"][k], dtype=np.float64) for k in ("threshold", "fpr")}
            curve["tpr"] = np.asarray(d["curve"]["tpr"], dtype=np.float64)
            fields = {k: d[k] for k in cls.__dataclass_fields__ if k != "curve"}
        except KeyError as e:
            raise ValueError(f"{path}: missing key {e}") from None
        return cls(curve=curve, **fields)

    def plot(self, path: str) -> None:
        """The TPR / FPR curve (log FPR), the threshold marked; a PNG at ``path``."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
        from matplotlib.figure import Figure  # noqa: PLC0415

        fig = Figure(figsize=(5, 3.6))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        fpr = np.maximum(self.curve["fpr"], 1.0 / self.num_negative)
        ax.step(fpr, self.curve["tpr"], where="post")
        ax.plot([self.threshold_fpr], [self.threshold_tpr], "ro")
        ax.annotate(
            f"threshold {self.threshold:.3f}\nFPR {self.threshold_fpr:.1e}, "
            f"TPR {self.threshold_tpr:.3f}",
            (max(self.threshold_fpr, 1.0 / self.num_negative), self.threshold_tpr),
            textcoords="offset points",
            xytext=(8, -24),
            fontsize=8,
        )
        ax.set_xscale("log")
        ax.set_xlabel("false-match rate (negative pairs)")
        ax.set_ylabel("true-match rate")
        ax.set_title(
            f"{self.dataset}: {self.num_positive} positive, {self.num_negative} negative pairs",
            fontsize=8,
        )
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100)
        with atomic_open(path, "wb") as f:
            f.write(buffer.getvalue())
