"""Generation of the synthetic set: its size (:class:`SyntheticSpec`, :data:`PRESETS`), the plan
of who appears in which frame (long-tail counts, cameras), and the PRW-format files
(:func:`generate`; :func:`ensure_generated` for a safe first use when processes race).

Written exactly in the PRW on-disk format (``frames/``, ``annotations/*.jpg.mat`` with
``box_new``, ``frame_{train,test}.mat``, CRLF ``query_info.txt``, ``ID_{train,test}.mat``); MAT
files without a creation time, so that the same seed gives the same bytes.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import shutil
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from scipy.io import savemat

from ....utils.io import atomic_open
from .appearance import appearance_distance, sample_appearance, sample_identities
from .scene import camera, render_frame

logger = logging.getLogger(__name__)

#: Written last into a generated root: its presence means the set is complete.
COMPLETE_MARKER = "synthetic_info.json"
FORMAT_VERSION = 1


@dataclasses.dataclass
class SyntheticSpec:
    """Sizes of the generated set. The default runs the whole pipeline in minutes on 2 CPU cores."""

    seed: int = 0
    height: int = 192  # frame height (px)
    width: int = 320  # frame width (px)
    num_cameras: int = 3
    num_train_frames: int = 300
    num_train_ids: int = 100
    num_test_ids: int = 50  # = number of queries (one per test identity)
    num_gallery_frames: int = 100
    max_instances: int = 80  # instances of the most frequent training identity
    tail_exponent: float = 0.9  # count of the rank-r identity ~ max_instances * r^-exponent
    max_test_instances: int = 5  # test identities: 2..this many instances
    person_height: Tuple[int, int] = (50, 120)  # person height (px) at the horizon / the bottom
    max_persons_per_frame: int = 5
    unlabeled_per_frame: float = 1.0  # mean passers-by (pid -2) per frame
    occlusion_prob: float = 0.25  # probability that an object occludes a person
    jpeg_quality: int = 90

    def validate(self) -> None:
        if self.num_cameras < 2:
            raise ValueError("SyntheticSpec: num_cameras must be >= 2 (queries need other cameras)")
        if (
            min(
                self.num_train_ids,
                self.num_test_ids,
                self.num_train_frames,
                self.num_gallery_frames,
            )
            < 1
        ):
            raise ValueError("SyntheticSpec: identity and frame counts must be >= 1")
        if self.max_test_instances < 2:
            raise ValueError("SyntheticSpec: max_test_instances must be >= 2")
        if not 8 <= self.person_height[0] <= self.person_height[1] < self.height:
            raise ValueError(
                f"SyntheticSpec: person_height {self.person_height} must be increasing, "
                f">= 8 px and below the frame height {self.height}"
            )


PRESETS: Dict[str, SyntheticSpec] = {
    "default": SyntheticSpec(),
    # For tests: a few frames, generated in well under a second.
    "tiny": SyntheticSpec(
        height=96,
        width=160,
        num_train_frames=10,
        num_train_ids=6,
        num_test_ids=3,
        num_gallery_frames=6,
        max_instances=5,
        tail_exponent=1.0,
        max_test_instances=3,
        person_height=(30, 60),
        max_persons_per_frame=4,
        unlabeled_per_frame=0.5,
    ),
}


# ---------------------------------------------------------------------------------------------
# Planning: which person appears in which frame
# ---------------------------------------------------------------------------------------------
def long_tail_counts(n: int, max_instances: int, exponent: float) -> List[int]:
    """Instances per identity, by frequency rank:
    ``max(1, round(max_instances * rank^-exponent))``."""
    return [max(1, int(round(max_instances * (r + 1) ** -exponent))) for r in range(n)]


def _pack(
    rng: np.random.Generator,
    instances: List[Tuple[int, int]],
    frames_per_cam: Dict[int, int],
    cap: int,
) -> Dict[int, List[List[int]]]:
    """Greedily place (pid, camera) instances in the least-filled frame of their camera that does
    not hold the same pid yet. Returns camera -> frames -> pids."""
    frames = {c: [[] for _ in range(n)] for c, n in frames_per_cam.items()}
    for k in rng.permutation(len(instances)):
        pid, cam = instances[k]
        cands = [f for f in frames[cam] if pid not in f and len(f) < cap]
        if not cands:
            raise ValueError(
                f"synthetic: no room for identity {pid} in camera {cam}: raise the number of "
                "frames or max_persons_per_frame"
            )
        fewest = min(len(f) for f in cands)
        cands = [f for f in cands if len(f) == fewest]
        cands[int(rng.integers(len(cands)))].append(pid)
    return frames


def _split_frames(total: int, per_cam_instances: Dict[int, int]) -> Dict[int, int]:
    cams = sorted(per_cam_instances)
    n_inst = sum(per_cam_instances.values())
    out = {c: max(1, int(round(total * per_cam_instances[c] / max(1, n_inst)))) for c in cams}
    while sum(out.values()) > total and max(out.values()) > 1:
        out[max(out, key=out.get)] -= 1
    while sum(out.values()) < total:
        out[min(out, key=out.get)] += 1
    return out


def _camera_cycle(rng: np.random.Generator, count: int, num_cams: int, at_least: int) -> List[int]:
    k = min(num_cams, max(at_least, min(count, num_cams)))
    cams = [int(c) for c in rng.choice(num_cams, size=k, replace=False)]
    return [cams[i % k] for i in range(count)]


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------
_MAT_HEADER = b"MATLAB 5.0 MAT-file, written by stl_search.data.datasets.synthetic"


def save_mat_deterministic(path: str, variables: dict) -> None:
    """``scipy.io.savemat`` without the creation time in the header (same content, same bytes)."""
    buf = io.BytesIO()
    savemat(buf, variables, do_compression=False)
    data = bytearray(buf.getvalue())
    data[:116] = _MAT_HEADER.ljust(116, b" ")
    with open(path, "wb") as f:
        f.write(bytes(data))


def _cell(names: Sequence[str]) -> np.ndarray:
    """An N x 1 MATLAB cell of strings (as ``frame_train.mat`` holds)."""
    out = np.empty((len(names), 1), dtype=object)
    for i, n in enumerate(names):
        out[i, 0] = n
    return out


def generate(out_dir: str, spec: Optional[SyntheticSpec] = None, **overrides) -> dict:
    """Write the synthetic set to ``out_dir`` (created; must not contain files); returns its
    summary.

    ``overrides`` replace fields of ``spec`` (default: ``PRESETS["default"]``), e.g. ``seed=3``.
    """
    spec = dataclasses.replace(spec or PRESETS["default"], **overrides)
    spec.validate()
    t0 = time.perf_counter()
    rng = np.random.default_rng(spec.seed)
    os.makedirs(os.path.join(out_dir, "frames"), exist_ok=True)
    os.makedirs(os.path.join(out_dir, "annotations"), exist_ok=True)

    cams = [camera(rng, c, spec.height, spec.width) for c in range(spec.num_cameras)]
    n_ids = spec.num_train_ids + spec.num_test_ids
    apps = sample_identities(rng, n_ids, min_distance=2)
    raw = rng.permutation(np.arange(1, 3 * n_ids + 1))[:n_ids]
    train_pids = sorted(int(p) for p in raw[: spec.num_train_ids])
    test_pids = sorted(int(p) for p in raw[spec.num_train_ids :])
    app_of = {int(p): a for p, a in zip(raw, apps)}

    # Training: long-tail counts in a random pid order, spread over cameras.
    counts = long_tail_counts(spec.num_train_ids, spec.max_instances, spec.tail_exponent)
    order = [train_pids[i] for i in rng.permutation(len(train_pids))]
    train_instances = [
        (pid, cam)
        for pid, n in zip(order, counts)
        for cam in _camera_cycle(rng, n, spec.num_cameras, 1)
    ]
    test_counts = {pid: int(rng.integers(2, spec.max_test_instances + 1)) for pid in test_pids}
    test_instances = [
        (pid, cam)
        for pid in test_pids
        for cam in _camera_cycle(rng, test_counts[pid], spec.num_cameras, 2)
    ]

    def per_cam(instances):
        return {c: sum(1 for _, k in instances if k == c) for c in range(spec.num_cameras)}

    train_frames = _pack(
        rng,
        train_instances,
        _split_frames(spec.num_train_frames, per_cam(train_instances)),
        spec.max_persons_per_frame,
    )
    test_frames = _pack(
        rng,
        test_instances,
        _split_frames(spec.num_gallery_frames, per_cam(test_instances)),
        spec.max_persons_per_frame,
    )
    # One query per test identity: one of its instances, never occluded by an object.
    query_slot = {}
    for pid in test_pids:
        slots = [
            (c, f) for c, fr in test_frames.items() for f, pids in enumerate(fr) if pid in pids
        ]
        query_slot[pid] = slots[int(rng.integers(len(slots)))]

    summary = {
        "format_version": FORMAT_VERSION,
        "spec": dataclasses.asdict(spec),
        "train_frames": [],
        "gallery_frames": [],
        "train_pids": train_pids,
        "test_pids": test_pids,
        "train_counts": {str(p): n for p, n in zip(order, counts)},
    }
    queries = []
    for split, seq, frames in (("train", 1, train_frames), ("gallery", 2, test_frames)):
        names = []
        for cam_idx in range(spec.num_cameras):
            for f, pids in enumerate(frames[cam_idx]):
                name = f"c{cam_idx + 1}s{seq}_{25 * (f + 1):06d}"
                free = spec.max_persons_per_frame - len(pids)
                n_unl = min(free, int(rng.poisson(spec.unlabeled_per_frame)))
                if not pids and n_unl == 0:
                    n_unl = 1
                people = [
                    {
                        "pid": pid,
                        "app": app_of[pid],
                        "occludable": query_slot.get(pid) != (cam_idx, f),
                    }
                    for pid in pids
                ]
                for _ in range(n_unl):
                    app = sample_appearance(rng)
                    while any(appearance_distance(app, a) < 1 for a in apps):
                        app = sample_appearance(rng)
                    people.append({"pid": -2, "app": app, "occludable": True})
                people = [people[i] for i in rng.permutation(len(people))]
                img, annos = render_frame(
                    rng,
                    cams[cam_idx],
                    people,
                    (spec.height, spec.width),
                    spec.person_height,
                    spec.occlusion_prob,
                )
                ok, enc = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, spec.jpeg_quality])
                if not ok:
                    raise RuntimeError(f"synthetic: JPEG encoding failed for {name}")
                with open(os.path.join(out_dir, "frames", name + ".jpg"), "wb") as fh:
                    fh.write(enc.tobytes())
                box_new = np.array(annos, dtype=np.float64).reshape(-1, 5)
                save_mat_deterministic(
                    os.path.join(out_dir, "annotations", name + ".jpg.mat"), {"box_new": box_new}
                )
                names.append(name)
                if split == "gallery":
                    for pid, x, y, w, h in annos:
                        if pid >= 0 and query_slot[pid] == (cam_idx, f):
                            queries.append((pid, x, y, w, h, name))
        summary[f"{split}_frames"] = names
    save_mat_deterministic(
        os.path.join(out_dir, "frame_train.mat"),
        {"img_index_train": _cell(summary["train_frames"])},
    )
    save_mat_deterministic(
        os.path.join(out_dir, "frame_test.mat"),
        {"img_index_test": _cell(summary["gallery_frames"])},
    )
    save_mat_deterministic(
        os.path.join(out_dir, "ID_train.mat"),
        {"ID_train": np.array([train_pids], dtype=np.float64)},
    )
    save_mat_deterministic(
        os.path.join(out_dir, "ID_test.mat"), {"ID_test": np.array([test_pids], dtype=np.float64)}
    )
    queries.sort(key=lambda q: (q[0], q[5]))
    with open(os.path.join(out_dir, "query_info.txt"), "wb") as fh:  # CRLF, as the real file
        for pid, x, y, w, h, name in queries:
            fh.write(f"{pid} {x:.4f} {y:.4f} {w:.4f} {h:.4f} {name}\r\n".encode())
    summary["num_queries"] = len(queries)
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    with atomic_open(os.path.join(out_dir, COMPLETE_MARKER), "w") as fh:  # written last
        json.dump({k: v for k, v in summary.items() if k != "seconds"}, fh, indent=1)
    logger.info(
        "synthetic: wrote %d train + %d gallery frames, %d queries to %s in %.1f s",
        len(summary["train_frames"]),
        len(summary["gallery_frames"]),
        len(queries),
        out_dir,
        summary["seconds"],
    )
    return summary


def ensure_generated(root: str, spec: Optional[SyntheticSpec] = None, **overrides) -> str:
    """Generate the set at ``root`` unless it is already complete; safe when processes race.

    The set is written into a temporary sibling directory and renamed onto ``root`` in one step;
    a process that loses the race discards its copy and uses the winner's.
    """
    if os.path.isfile(os.path.join(root, COMPLETE_MARKER)):
        return root
    if os.path.exists(root) and os.listdir(root):
        raise FileExistsError(
            f"{root}: exists but is not a complete synthetic set (no {COMPLETE_MARKER}); "
            "remove it to regenerate"
        )
    parent = os.path.dirname(os.path.abspath(root))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="." + os.path.basename(root) + ".", suffix=".tmp", dir=parent)
    try:
        generate(tmp, spec, **overrides)
        if os.path.isdir(root) and not os.listdir(root):
            os.rmdir(root)  # an empty leftover directory (e.g. made by hand)
        os.rename(tmp, root)
    except OSError:
        if not os.path.isfile(os.path.join(root, COMPLETE_MARKER)):
            raise
        logger.info("synthetic: %s was generated by another process meanwhile", root)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return root
