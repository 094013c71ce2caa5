"""A synthetic long-tail person-search data set, written in the PRW format.

Why: PRW and CUHK-SYSU cannot be shipped, but the pipeline (Re-ID pretraining, person-search
training, evaluation) must be shown to learn on CPU in minutes. The set is written exactly in
the PRW on-disk format (``frames/``, ``annotations/*.jpg.mat`` with ``box_new``,
``frame_{train,test}.mat``, CRLF ``query_info.txt``, ``ID_{train,test}.mat``), so that the PRW
loader is the code that reads it.

What it contains (all drawn from one seed, so the same seed gives the same bytes):

- cameras with their own background (street / park / hall styles) and lighting (gain, colour
  cast, spatial gradient);
- identities with a fixed appearance: shirt colour + pattern (solid, stripes, checks, logo) and
  sleeve length, trouser colour + type (long, shorts, skirt), shoes, hair colour + length, skin,
  hat, bag (backpack, shoulder bag, handbag) and body proportions. Attributes are shared between
  identities (11 shirt colours for 150 identities), and any two labeled identities differ in at
  least two of the main attributes: combinations identify people, not single colours;
- per instance: pose (walking phase, facing left / right / front), scale from the camera's
  perspective, position (sometimes partly out of the frame: negative coordinates), partial
  occlusion (low walls, poles, other people), illumination, texture noise, blur, JPEG;
- long-tail instance counts for the training identities (``max_instances * rank^-tail_exponent``:
  a few identities in dozens of frames, many seen once or twice), unlabeled passers-by
  (pid -2), and a test split of disjoint identities, each seen in at least two cameras; one query
  per test identity whose identity appears in other gallery frames, including other cameras.

Usage::

    python -m stl_search.data.datasets.synthetic --out datasets/synthetic_prw [--seed 0] [--preset tiny]
"""
from __future__ import annotations

import argparse
import dataclasses
import io
import json
import logging
import math
import os
import shutil
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from scipy.io import savemat

logger = logging.getLogger(__name__)

__all__ = ["SyntheticSpec", "PRESETS", "generate", "ensure_generated", "long_tail_counts", "COMPLETE_MARKER"]

#: Written last into a generated root: its presence means the set is complete.
COMPLETE_MARKER = "synthetic_info.json"
FORMAT_VERSION = 1


@dataclasses.dataclass
class SyntheticSpec:
    """Sizes of the generated set. The default runs the whole pipeline in minutes on 2 CPU cores."""

    seed: int = 0
    height: int = 192                      # frame height (px)
    width: int = 320                       # frame width (px)
    num_cameras: int = 3
    num_train_frames: int = 300
    num_train_ids: int = 100
    num_test_ids: int = 50                 # = number of queries (one per test identity)
    num_gallery_frames: int = 100
    max_instances: int = 80                # instances of the most frequent training identity
    tail_exponent: float = 0.9             # count of the rank-r identity ~ max_instances * r^-exponent
    max_test_instances: int = 5            # test identities: 2..this many instances
    person_height: Tuple[int, int] = (50, 120)  # person height (px) at the horizon / the bottom
    max_persons_per_frame: int = 5
    unlabeled_per_frame: float = 1.0       # mean passers-by (pid -2) per frame
    occlusion_prob: float = 0.25           # probability that an object occludes a person
    jpeg_quality: int = 90

    def validate(self) -> None:
        if self.num_cameras < 2:
            raise ValueError("SyntheticSpec: num_cameras must be >= 2 (queries need other cameras)")
        if min(self.num_train_ids, self.num_test_ids, self.num_train_frames, self.num_gallery_frames) < 1:
            raise ValueError("SyntheticSpec: identity and frame counts must be >= 1")
        if self.max_test_instances < 2:
            raise ValueError("SyntheticSpec: max_test_instances must be >= 2")
        if not 8 <= self.person_height[0] <= self.person_height[1] < self.height:
            raise ValueError(f"SyntheticSpec: person_height {self.person_height} must be increasing, "
                             f">= 8 px and below the frame height {self.height}")


PRESETS: Dict[str, SyntheticSpec] = {
    "default": SyntheticSpec(),
    # For tests: a few frames, generated in well under a second.
    "tiny": SyntheticSpec(height=96, width=160, num_train_frames=10, num_train_ids=6, num_test_ids=3,
                          num_gallery_frames=6, max_instances=5, tail_exponent=1.0, max_test_instances=3,
                          person_height=(30, 60), max_persons_per_frame=4, unlabeled_per_frame=0.5),
}

# ---------------------------------------------------------------------------------------------
# Appearance
# ---------------------------------------------------------------------------------------------
RGB = Tuple[int, int, int]
SHIRT_COLORS: List[RGB] = [(200, 35, 35), (230, 125, 25), (225, 200, 45), (45, 150, 65), (25, 140, 150),
                           (45, 75, 195), (125, 55, 155), (230, 125, 170), (232, 232, 226), (128, 128, 130),
                           (32, 32, 36)]
ACCENT_COLORS: List[RGB] = [(245, 245, 240), (25, 25, 28), (210, 40, 40), (40, 70, 190), (230, 200, 40)]
SHIRT_PATTERNS = ("solid", "hstripes", "vstripes", "checks", "logo")
TROUSER_COLORS: List[RGB] = [(28, 28, 32), (32, 42, 92), (62, 92, 142), (112, 112, 118), (192, 172, 132),
                             (112, 72, 42), (92, 102, 52), (222, 222, 216)]
TROUSER_TYPES = ("long", "shorts", "skirt")
HAIR_COLORS: List[RGB] = [(22, 18, 16), (75, 48, 28), (205, 170, 95), (160, 160, 160), (140, 60, 30)]
SKIN_TONES: List[RGB] = [(240, 200, 170), (210, 160, 120), (160, 110, 75), (100, 65, 45)]
SHOE_COLORS: List[RGB] = [(20, 20, 20), (235, 235, 235), (100, 60, 35)]
HATS = ("none", "cap", "beanie")
HAT_COLORS: List[RGB] = [(200, 30, 30), (30, 30, 35), (40, 70, 190), (235, 235, 235), (60, 120, 60)]
BAGS = ("none", "backpack", "shoulder", "handbag")
BAG_COLORS: List[RGB] = [(25, 25, 25), (110, 65, 35), (190, 40, 40), (40, 60, 150), (180, 160, 110)]
# The attributes that make an identity (two labeled identities differ in >= 2 of them).
KEY_ATTRS = ("shirt", "pattern", "sleeves", "trousers", "trouser_type", "hair", "hat", "bag")


def _sample_appearance(rng: np.random.Generator) -> dict:
    return {
        "shirt": int(rng.integers(len(SHIRT_COLORS))),
        "pattern": int(rng.choice(len(SHIRT_PATTERNS), p=[0.4, 0.18, 0.12, 0.12, 0.18])),
        "accent": int(rng.integers(len(ACCENT_COLORS))),
        "sleeves": int(rng.integers(2)),  # 0 short, 1 long
        "trousers": int(rng.integers(len(TROUSER_COLORS))),
        "trouser_type": int(rng.choice(3, p=[0.6, 0.22, 0.18])),
        "hair": int(rng.integers(len(HAIR_COLORS))),
        "long_hair": int(rng.random() < 0.35),
        "skin": int(rng.integers(len(SKIN_TONES))),
        "shoes": int(rng.integers(len(SHOE_COLORS))),
        "hat": int(rng.choice(3, p=[0.6, 0.25, 0.15])),
        "hat_color": int(rng.integers(len(HAT_COLORS))),
        "bag": int(rng.choice(4, p=[0.4, 0.22, 0.2, 0.18])),
        "bag_color": int(rng.integers(len(BAG_COLORS))),
        "height_factor": float(rng.uniform(0.88, 1.1)),
        "width_factor": float(rng.uniform(0.85, 1.2)),
    }


def _distance(a: dict, b: dict) -> int:
    return sum(a[k] != b[k] for k in KEY_ATTRS)


def _sample_identities(rng: np.random.Generator, n: int, min_distance: int,
                       others: Sequence[dict] = (), max_tries: int = 20000) -> List[dict]:
    out: List[dict] = []
    for _ in range(max_tries):
        if len(out) == n:
            break
        cand = _sample_appearance(rng)
        if all(_distance(cand, o) >= min_distance for o in list(others) + out):
            out.append(cand)
    if len(out) < n:
        raise ValueError(f"could not draw {n} identities {min_distance} attributes apart")
    return out


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------
SS = 2  # people are drawn at SS x resolution, then downsampled (anti-aliasing)


def _pt(x: float, y: float) -> Tuple[int, int]:
    return int(round(x)), int(round(y))


def _line(canvas: np.ndarray, mask: np.ndarray, p0, p1, color: RGB, thickness: float) -> None:
    t = max(1, int(round(thickness)))
    cv2.line(canvas, _pt(*p0), _pt(*p1), color, t, cv2.LINE_8)
    cv2.line(mask, _pt(*p0), _pt(*p1), 255, t, cv2.LINE_8)


def _poly(canvas: np.ndarray, mask: np.ndarray, pts, color: RGB) -> None:
    arr = np.array([_pt(*p) for p in pts], dtype=np.int32)
    cv2.fillPoly(canvas, [arr], color)
    cv2.fillPoly(mask, [arr], 255)


def _ellipse(canvas: np.ndarray, mask: np.ndarray, c, axes, color: RGB, start: float = 0, end: float = 360) -> None:
    ax = (max(1, int(round(axes[0]))), max(1, int(round(axes[1]))))
    cv2.ellipse(canvas, _pt(*c), ax, 0, start, end, color, -1)
    cv2.ellipse(mask, _pt(*c), ax, 0, start, end, 255, -1)


def _torso(canvas: np.ndarray, mask: np.ndarray, pts, app: dict, height: float) -> None:
    """The torso polygon filled with the shirt colour and its pattern."""
    part = np.zeros(mask.shape, np.uint8)
    arr = np.array([_pt(*p) for p in pts], dtype=np.int32)
    cv2.fillPoly(part, [arr], 255)
    base = np.array(SHIRT_COLORS[app["shirt"]], np.uint8)
    accent = np.array(ACCENT_COLORS[app["accent"]], np.uint8)
    if (accent.astype(int) - base).__abs__().sum() < 90:  # accent too close to the shirt: use black/white
        accent = np.array((25, 25, 28) if base.mean() > 128 else (245, 245, 240), np.uint8)
    ys, xs = np.mgrid[0:mask.shape[0], 0:mask.shape[1]]
    period = max(2, int(round(0.05 * height)))
    pattern = SHIRT_PATTERNS[app["pattern"]]
    if pattern == "hstripes":
        use_accent = (ys // period) % 2 == 1
    elif pattern == "vstripes":
        use_accent = (xs // period) % 2 == 1
    elif pattern == "checks":
        use_accent = ((ys // (period + 1)) + (xs // (period + 1))) % 2 == 1
    elif pattern == "logo":
        x0, y0 = arr[:, 0].min(), arr[:, 1].min()
        x1, y1 = arr[:, 0].max(), arr[:, 1].max()
        cx, cy, hw, hh = (x0 + x1) / 2, y0 + 0.35 * (y1 - y0), 0.2 * (x1 - x0), 0.12 * (y1 - y0)
        use_accent = (np.abs(xs - cx) < hw) & (np.abs(ys - cy) < hh)
    else:
        use_accent = np.zeros(mask.shape, bool)
    sel = part > 0
    canvas[sel] = base
    canvas[sel & use_accent] = accent
    mask[sel] = 255


def render_person(app: dict, pose: dict, height_px: float, rng: np.random.Generator
                  ) -> Tuple[np.ndarray, np.ndarray, int, int]:
    """Draw one person ``height_px`` tall. Returns (RGB float32 h×w×3, alpha float32 h×w, the
    canvas x of the body centre, the canvas y of the feet), at 1x resolution."""
    H = height_px * SS
    facing = pose["facing"]  # -1 left, +1 right, 0 front
    side = facing != 0
    sw = 0.27 * H * app["width_factor"] * (0.72 if side else 1.0)  # shoulder width
    pad = int(0.35 * H) + 4
    ch, cw = int(H + 2 * pad * 0.3) + 4, int(sw + 2 * pad)
    canvas = np.zeros((ch, cw, 3), np.uint8)
    mask = np.zeros((ch, cw), np.uint8)
    cx = cw / 2.0
    top = 0.3 * pad + 2
    foot_y = top + H
    skin = SKIN_TONES[app["skin"]]
    shirt = SHIRT_COLORS[app["shirt"]]
    trousers = TROUSER_COLORS[app["trousers"]]
    hair = HAIR_COLORS[app["hair"]]
    bag_color = BAG_COLORS[app["bag_color"]]
    bag = BAGS[app["bag"]]
    phase = pose["phase"]

    y_sh, y_hip = top + 0.17 * H, top + 0.52 * H
    hip_w = 0.84 * sw
    leg_len, leg_w = 0.45 * H, 0.105 * H
    arm_len, arm_w = 0.34 * H, 0.075 * H
    swing_leg = 0.32 * math.sin(phase) if side else 0.0
    swing_arm = -0.4 * math.sin(phase) if side else 0.0

    def leg_points(sign: float):
        hx = cx + sign * (0.06 * sw if side else 0.24 * sw)
        ang = sign * swing_leg if side else sign * 0.06
        return (hx, y_hip), (hx + leg_len * math.sin(ang), y_hip + leg_len * math.cos(ang))

    def arm_points(sign: float):
        sx = cx + sign * (0.1 * sw if side else 0.5 * sw)
        ang = sign * swing_arm if side else sign * 0.13
        return (sx, y_sh + 0.02 * H), (sx + arm_len * math.sin(ang), y_sh + 0.02 * H + arm_len * math.cos(ang))

    def draw_arm(sign: float) -> None:
        p0, p1 = arm_points(sign)
        _line(canvas, mask, p0, p1, skin, arm_w)
        frac = 1.0 if app["sleeves"] else 0.42
        _line(canvas, mask, p0, (p0[0] + frac * (p1[0] - p0[0]), p0[1] + frac * (p1[1] - p0[1])), shirt, arm_w * 1.1)
        _ellipse(canvas, mask, p1, (arm_w * 0.55, arm_w * 0.6), skin)
        if bag == "handbag" and sign == (facing if side else 1):
            _poly(canvas, mask, [(p1[0] - 0.06 * H, p1[1]), (p1[0] + 0.06 * H, p1[1]),
                                 (p1[0] + 0.07 * H, p1[1] + 0.1 * H), (p1[0] - 0.07 * H, p1[1] + 0.1 * H)], bag_color)

    def draw_leg(sign: float) -> None:
        p0, p1 = leg_points(sign)
        ttype = TROUSER_TYPES[app["trouser_type"]]
        _line(canvas, mask, p0, p1, skin if ttype != "long" else trousers, leg_w)
        if ttype == "shorts":
            _line(canvas, mask, p0, (p0[0] + 0.5 * (p1[0] - p0[0]), p0[1] + 0.5 * (p1[1] - p0[1])), trousers, leg_w * 1.1)
        dx = 0.03 * H * (facing if side else 0)
        _ellipse(canvas, mask, (p1[0] + dx, p1[1] + 0.01 * H), (0.055 * H if side else 0.04 * H, 0.028 * H),
                 SHOE_COLORS[app["shoes"]])

    back, front = (-facing, facing) if side else (-1, 1)
    # Behind the body: the far arm, a backpack (side view), long hair.
    draw_arm(back)
    if bag == "backpack" and side:
        bx = cx - facing * 0.5 * sw
        _poly(canvas, mask, [(bx - 0.09 * H, y_sh + 0.03 * H), (bx + 0.09 * H, y_sh + 0.03 * H),
                             (bx + 0.1 * H, y_sh + 0.3 * H), (bx - 0.1 * H, y_sh + 0.3 * H)], bag_color)
    head_c = (cx + 0.01 * H * facing, top + 0.07 * H)
    r = 0.068 * H
    if app["long_hair"]:
        _poly(canvas, mask, [(head_c[0] - 1.05 * r, head_c[1]), (head_c[0] + 1.05 * r, head_c[1]),
                             (head_c[0] + 1.1 * r - facing * 0.5 * r, y_sh + 0.08 * H),
                             (head_c[0] - 1.1 * r - facing * 0.5 * r, y_sh + 0.08 * H)], hair)
    draw_leg(back)
    draw_leg(front)
    if TROUSER_TYPES[app["trouser_type"]] == "skirt":
        _poly(canvas, mask, [(cx - hip_w / 2, y_hip - 0.02 * H), (cx + hip_w / 2, y_hip - 0.02 * H),
                             (cx + 0.75 * sw, y_hip + 0.22 * H), (cx - 0.75 * sw, y_hip + 0.22 * H)], trousers)
    else:
        _poly(canvas, mask, [(cx - hip_w / 2, y_hip - 0.03 * H), (cx + hip_w / 2, y_hip - 0.03 * H),
                             (cx + hip_w / 2, y_hip + 0.06 * H), (cx - hip_w / 2, y_hip + 0.06 * H)], trousers)
    _torso(canvas, mask, [(cx - sw / 2, y_sh), (cx + sw / 2, y_sh), (cx + hip_w / 2, y_hip), (cx - hip_w / 2, y_hip)],
           app, H)
    # Bags over the torso.
    if bag == "backpack" and not side:
        for s in (-1, 1):
            _line(canvas, mask, (cx + s * 0.3 * sw, y_sh), (cx + s * 0.32 * sw, y_sh + 0.2 * H), bag_color, 0.03 * H)
    if bag == "shoulder":
        s = facing if side else 1
        _line(canvas, mask, (cx - s * 0.35 * sw, y_sh), (cx + s * 0.45 * sw, y_hip - 0.02 * H), bag_color, 0.025 * H)
        bx = cx + s * 0.5 * sw
        _poly(canvas, mask, [(bx - 0.07 * H, y_hip - 0.06 * H), (bx + 0.07 * H, y_hip - 0.06 * H),
                             (bx + 0.07 * H, y_hip + 0.06 * H), (bx - 0.07 * H, y_hip + 0.06 * H)], bag_color)
    # Neck, head, hair, hat.
    _line(canvas, mask, (cx, top + 0.12 * H), (cx, y_sh + 0.01 * H), skin, 0.06 * H)
    _ellipse(canvas, mask, head_c, (r * 0.92, r), skin)
    _ellipse(canvas, mask, (head_c[0] - facing * 0.15 * r, head_c[1] - 0.15 * r), (r * 0.98, r * 0.85), hair, 180, 360)
    hat = HATS[app["hat"]]
    if hat == "cap":
        hc = HAT_COLORS[app["hat_color"]]
        _ellipse(canvas, mask, (head_c[0], head_c[1] - 0.3 * r), (r * 1.0, r * 0.8), hc, 180, 360)
        d = facing if side else 0
        _line(canvas, mask, (head_c[0] + d * 0.3 * r - (0 if side else 0.9 * r), head_c[1] - 0.3 * r),
              (head_c[0] + d * 1.6 * r + (0 if side else 0.9 * r), head_c[1] - 0.3 * r), hc, 0.2 * r + 1)
    elif hat == "beanie":
        _ellipse(canvas, mask, (head_c[0], head_c[1] - 0.2 * r), (r * 1.02, r * 1.05), HAT_COLORS[app["hat_color"]], 180, 360)
    draw_arm(front)

    img = canvas.astype(np.float32)
    # Cloth / body shading (a lit cylinder) and texture noise, then anti-aliasing by downsampling.
    xs = (np.arange(cw, dtype=np.float32) - cx) / max(1.0, 0.75 * sw)
    shade = 0.8 + 0.2 * np.cos(np.clip(xs, -1, 1) * np.pi / 2)
    img *= shade[None, :, None] * (1.04 - 0.08 * np.linspace(0, 1, ch, dtype=np.float32))[:, None, None]
    img += rng.normal(0, 7, size=img.shape).astype(np.float32)
    out_w, out_h = max(1, int(round(cw / SS))), max(1, int(round(ch / SS)))
    img = cv2.resize(img, (out_w, out_h), interpolation=cv2.INTER_AREA)
    alpha = cv2.resize(mask.astype(np.float32) / 255.0, (out_w, out_h), interpolation=cv2.INTER_AREA)
    return img, alpha, int(round(cx / SS)), int(round(foot_y / SS))


# ---------------------------------------------------------------------------------------------
# Cameras
# ---------------------------------------------------------------------------------------------
def _camera(rng: np.random.Generator, index: int, h: int, w: int) -> dict:
    """A camera: background image (RGB float32), horizon row and lighting."""
    style = index % 3
    horizon = int(h * rng.uniform(0.3, 0.42))
    bg = np.zeros((h, w, 3), np.float32)
    ys = np.arange(h, dtype=np.float32)[:, None]
    if style == 0:  # street: facade with windows, grey pavement with joints
        facade = rng.uniform(90, 190, 3)
        bg[:horizon] = facade
        for x0 in range(int(rng.integers(4, 12)), w, int(rng.integers(22, 34))):
            for y0 in range(4, max(5, horizon - 12), int(rng.integers(16, 24))):
                bg[y0:y0 + 9, x0:x0 + 11] = rng.uniform(30, 80, 3)
        bg[horizon:] = rng.uniform(100, 150) + rng.uniform(-8, 8, 3)
        for y0 in range(horizon, h, 14):
            bg[y0:y0 + 1, :] *= 0.8
    elif style == 1:  # park: trees, grass, a path
        bg[:horizon] = (150, 190, 225) + rng.uniform(-20, 20, 3)
        for _ in range(int(rng.integers(5, 10))):
            c = (int(rng.uniform(0, w)), horizon)
            cv2.circle(bg, c, int(rng.uniform(10, 30)), tuple(float(v) for v in rng.uniform([20, 70, 20], [60, 120, 60])), -1)
        bg[horizon:] = (70, 130, 60) + rng.uniform(-15, 15, 3)
        path = np.array([[int(w * 0.2), h], [int(w * 0.45), horizon], [int(w * 0.6), horizon], [int(w * 0.95), h]], np.int32)
        cv2.fillPoly(bg, [path], tuple(float(v) for v in (190, 170, 130) + rng.uniform(-15, 15, 3)))
    else:  # hall: wall with posters, tiled floor
        bg[:horizon] = rng.uniform(170, 220, 3)
        for _ in range(int(rng.integers(3, 6))):
            x0, y0 = int(rng.uniform(0, w - 20)), int(rng.uniform(2, max(3, horizon - 25)))
            bg[y0:y0 + int(rng.uniform(12, 22)), x0:x0 + int(rng.uniform(10, 24))] = rng.uniform(30, 230, 3)
        tile = rng.uniform(120, 200, 3)
        yy, xx = np.mgrid[0:h - horizon, 0:w]
        checker = ((yy // 12 + xx // 20) % 2).astype(np.float32)[..., None]
        bg[horizon:] = tile * (0.9 + 0.1 * checker)
    bg += rng.normal(0, 4, size=bg.shape).astype(np.float32)
    gradient = np.linspace(rng.uniform(0.7, 1.0), rng.uniform(1.0, 1.2), w, dtype=np.float32)
    if rng.random() < 0.5:
        gradient = gradient[::-1].copy()
    lighting = {
        "gain": float(rng.uniform(0.75, 1.15)),
        "cast": rng.uniform(-18, 18, 3).astype(np.float32),  # colour cast (RGB offset)
        "gradient": gradient[None, :, None] * (1.0 + 0.1 * (ys / h - 0.5))[:, :, None],
    }
    return {"index": index + 1, "bg": bg, "horizon": horizon, "lighting": lighting}


# ---------------------------------------------------------------------------------------------
# Planning: which person appears in which frame
# ---------------------------------------------------------------------------------------------
def long_tail_counts(n: int, max_instances: int, exponent: float) -> List[int]:
    """Instances per identity, by frequency rank: ``max(1, round(max_instances * rank^-exponent))``."""
    return [max(1, int(round(max_instances * (r + 1) ** -exponent))) for r in range(n)]


def _pack(rng: np.random.Generator, instances: List[Tuple[int, int]], frames_per_cam: Dict[int, int],
          cap: int) -> Dict[int, List[List[int]]]:
    """Greedily place (pid, camera) instances in the least-filled frame of their camera that does
    not hold the same pid yet. Returns camera -> frames -> pids."""
    frames = {c: [[] for _ in range(n)] for c, n in frames_per_cam.items()}
    for k in rng.permutation(len(instances)):
        pid, cam = instances[k]
        cands = [f for f in frames[cam] if pid not in f and len(f) < cap]
        if not cands:
            raise ValueError(f"synthetic: no room for identity {pid} in camera {cam}: raise the number of "
                             "frames or max_persons_per_frame")
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


def _box_iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _occlude(frame: np.ndarray, box, rng: np.random.Generator, cam: dict) -> None:
    """Draw an object in front of part of a person: a low wall (bottom) or a pole (one side)."""
    x1, y1, x2, y2 = box
    h, w = y2 - y1, x2 - x1
    color = np.clip(cam["bg"][min(frame.shape[0] - 1, int(y2)), :].mean(0) * rng.uniform(0.5, 0.8)
                    + rng.uniform(-25, 25, 3), 0, 255)
    if rng.random() < 0.55:
        top = int(y2 - h * rng.uniform(0.25, 0.45))
        xa, xb = int(x1 - w * rng.uniform(0.2, 1.0)), int(x2 + w * rng.uniform(0.2, 1.0))
        ya, yb = top, int(y2 + 2)
    else:
        pw = w * rng.uniform(0.25, 0.4)
        xa = int(x1 - 0.1 * w) if rng.random() < 0.5 else int(x2 - pw + 0.1 * w)
        xb, ya, yb = int(xa + pw), int(y1 - 0.3 * h), int(y2 + 3)
    ya, yb = max(0, ya), min(frame.shape[0], yb)
    xa, xb = max(0, xa), min(frame.shape[1], xb)
    if yb > ya and xb > xa:
        frame[ya:yb, xa:xb] = color + rng.normal(0, 5, size=(yb - ya, xb - xa, 3))
        frame[ya:ya + 1, xa:xb] *= 0.7


def _clutter(frame: np.ndarray, rng: np.random.Generator, horizon: int, hmax: float) -> None:
    """Background objects of person-like size (bins, poles, signs, bushes): detector negatives."""
    H, W = frame.shape[:2]
    for _ in range(int(rng.integers(0, 4))):
        foot = rng.uniform(horizon + 5, H)
        size = hmax * rng.uniform(0.15, 0.6) * (foot - horizon) / (H - horizon)
        x = rng.uniform(0, W)
        color = tuple(float(v) for v in rng.uniform(20, 230, 3))
        kind = int(rng.integers(3))
        if kind == 0:  # pole with a sign
            cv2.line(frame, _pt(x, foot), _pt(x, foot - 1.8 * size), tuple(c * 0.5 for c in color), max(1, int(size * 0.08)))
            cv2.rectangle(frame, _pt(x - 0.3 * size, foot - 1.8 * size), _pt(x + 0.3 * size, foot - 1.4 * size), color, -1)
        elif kind == 1:  # bin / box
            cv2.rectangle(frame, _pt(x - 0.25 * size, foot - 0.7 * size), _pt(x + 0.25 * size, foot), color, -1)
        else:  # bush / blob
            cv2.ellipse(frame, _pt(x, foot - 0.3 * size), (max(1, int(0.5 * size)), max(1, int(0.3 * size))), 0, 0, 360,
                        color, -1)


def _render_frame(spec: SyntheticSpec, rng: np.random.Generator, cam: dict, people: List[dict]) -> Tuple[np.ndarray, List]:
    """Compose one frame; returns (BGR uint8 image, [(pid, x, y, w, h), ...])."""
    H, W = spec.height, spec.width
    frame = cam["bg"] * rng.uniform(0.93, 1.07) + rng.normal(0, 2, size=(1, 1, 3)).astype(np.float32)
    _clutter(frame, rng, cam["horizon"], spec.person_height[1])
    hmin, hmax = spec.person_height
    horizon = cam["horizon"]
    # Place everyone (rejecting heavy overlaps), then draw from far to near.
    placed: List[Tuple[float, float, float, dict]] = []
    boxes: List[List[float]] = []
    for person in people:
        best = None
        for _ in range(25):
            foot = rng.uniform(horizon + 0.25 * (H - horizon), H + 0.03 * H)
            t = (foot - horizon) / (H - horizon)
            ph = (hmin + (hmax - hmin) * (t - 0.25) / 0.78) * person["app"]["height_factor"] * rng.uniform(0.93, 1.07)
            ph = float(np.clip(ph, 0.8 * hmin, 1.05 * hmax))
            pw = 0.42 * ph
            cx = rng.uniform(0.15 * pw, W - 0.15 * pw)
            b = [cx - pw / 2, foot - ph, cx + pw / 2, foot]
            worst = max([_box_iou(b, o) for o in boxes], default=0.0)
            if best is None or worst < best[0]:
                best = (worst, (foot, ph, cx), b)
            if worst < 0.25:
                break
        boxes.append(best[2])
        placed.append((*best[1], person))
    annos = []
    for foot, ph, cx, person in sorted(placed, key=lambda p: p[0]):
        pose = {"facing": int(rng.choice([-1, 1, 0], p=[0.4, 0.4, 0.2])), "phase": float(rng.uniform(0, 2 * np.pi))}
        img, alpha, ax, ay = render_person(person["app"], pose, ph, rng)
        img *= rng.uniform(0.8, 1.2)  # this person's illumination (sun / shade)
        x0, y0 = int(round(cx)) - ax, int(round(foot)) - ay
        ys, xs = np.nonzero(alpha > 0.5)
        if len(xs) == 0:
            continue
        # The annotated box covers the whole person, also where it is outside the frame.
        bx1, by1, bx2, by2 = x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1, y0 + ys.max() + 1
        fx1, fy1, fx2, fy2 = max(0, x0), max(0, y0), min(W, x0 + img.shape[1]), min(H, y0 + img.shape[0])
        if fx2 <= fx1 or fy2 <= fy1:
            continue
        a = alpha[fy1 - y0:fy2 - y0, fx1 - x0:fx2 - x0, None]
        frame[fy1:fy2, fx1:fx2] = a * img[fy1 - y0:fy2 - y0, fx1 - x0:fx2 - x0] + (1 - a) * frame[fy1:fy2, fx1:fx2]
        if person["occludable"] and rng.random() < spec.occlusion_prob:
            _occlude(frame, (bx1, by1, bx2, by2), rng, cam)
        jitter = rng.uniform(-0.5, 0.5, 4)  # annotators are not pixel-exact
        annos.append((person["pid"], round(bx1 + jitter[0], 2), round(by1 + jitter[1], 2),
                      round(bx2 - bx1 + jitter[2], 2), round(by2 - by1 + jitter[3], 2)))
    light = cam["lighting"]
    frame = frame * light["gain"] * light["gradient"] + light["cast"]
    frame += rng.normal(0, 3, size=frame.shape).astype(np.float32)
    if rng.random() < 0.5:
        frame = cv2.GaussianBlur(frame, (3, 3), rng.uniform(0.5, 1.0))
    bgr = np.clip(frame, 0, 255).astype(np.uint8)[..., ::-1]
    return np.ascontiguousarray(bgr), annos


def generate(out_dir: str, spec: Optional[SyntheticSpec] = None, **overrides) -> dict:
    """Write the synthetic set to ``out_dir`` (created; must not contain files) and return its summary.

    ``overrides`` replace fields of ``spec`` (default: ``PRESETS["default"]``), e.g. ``seed=3``.
    """
    spec = dataclasses.replace(spec or PRESETS["default"], **overrides)
    spec.validate()
    t0 = time.perf_counter()
    rng = np.random.default_rng(spec.seed)
    os.makedirs(os.path.join(out_dir, "frames"), exist_ok=True)
    os.makedirs(os.path.join(out_dir, "annotations"), exist_ok=True)

    cams = [_camera(rng, c, spec.height, spec.width) for c in range(spec.num_cameras)]
    n_ids = spec.num_train_ids + spec.num_test_ids
    apps = _sample_identities(rng, n_ids, min_distance=2)
    raw = rng.permutation(np.arange(1, 3 * n_ids + 1))[:n_ids]
    train_pids = sorted(int(p) for p in raw[:spec.num_train_ids])
    test_pids = sorted(int(p) for p in raw[spec.num_train_ids:])
    app_of = {int(p): a for p, a in zip(raw, apps)}

    # Training: long-tail counts in a random pid order, spread over cameras.
    counts = long_tail_counts(spec.num_train_ids, spec.max_instances, spec.tail_exponent)
    order = [train_pids[i] for i in rng.permutation(len(train_pids))]
    train_instances = [(pid, cam) for pid, n in zip(order, counts)
                       for cam in _camera_cycle(rng, n, spec.num_cameras, 1)]
    test_counts = {pid: int(rng.integers(2, spec.max_test_instances + 1)) for pid in test_pids}
    test_instances = [(pid, cam) for pid in test_pids
                      for cam in _camera_cycle(rng, test_counts[pid], spec.num_cameras, 2)]

    def per_cam(instances):
        return {c: sum(1 for _, k in instances if k == c) for c in range(spec.num_cameras)}

    train_frames = _pack(rng, train_instances, _split_frames(spec.num_train_frames, per_cam(train_instances)),
                         spec.max_persons_per_frame)
    test_frames = _pack(rng, test_instances, _split_frames(spec.num_gallery_frames, per_cam(test_instances)),
                        spec.max_persons_per_frame)
    # One query per test identity: one of its instances, never occluded by an object.
    query_slot = {}
    for pid in test_pids:
        slots = [(c, f) for c, fr in test_frames.items() for f, pids in enumerate(fr) if pid in pids]
        query_slot[pid] = slots[int(rng.integers(len(slots)))]

    summary = {"format_version": FORMAT_VERSION, "spec": dataclasses.asdict(spec), "train_frames": [],
               "gallery_frames": [], "train_pids": train_pids, "test_pids": test_pids,
               "train_counts": {str(p): n for p, n in zip(order, counts)}}
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
                people = [{"pid": pid, "app": app_of[pid],
                           "occludable": query_slot.get(pid) != (cam_idx, f)} for pid in pids]
                for _ in range(n_unl):
                    app = _sample_appearance(rng)
                    while any(_distance(app, a) < 1 for a in apps):
                        app = _sample_appearance(rng)
                    people.append({"pid": -2, "app": app, "occludable": True})
                people = [people[i] for i in rng.permutation(len(people))]
                img, annos = _render_frame(spec, rng, cams[cam_idx], people)
                ok, enc = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, spec.jpeg_quality])
                if not ok:
                    raise RuntimeError(f"synthetic: JPEG encoding failed for {name}")
                with open(os.path.join(out_dir, "frames", name + ".jpg"), "wb") as fh:
                    fh.write(enc.tobytes())
                box_new = np.array(annos, dtype=np.float64).reshape(-1, 5)
                save_mat_deterministic(os.path.join(out_dir, "annotations", name + ".jpg.mat"), {"box_new": box_new})
                names.append(name)
                if split == "gallery":
                    for pid, x, y, w, h in annos:
                        if pid >= 0 and query_slot[pid] == (cam_idx, f):
                            queries.append((pid, x, y, w, h, name))
        summary[f"{split}_frames"] = names
    save_mat_deterministic(os.path.join(out_dir, "frame_train.mat"), {"img_index_train": _cell(summary["train_frames"])})
    save_mat_deterministic(os.path.join(out_dir, "frame_test.mat"), {"img_index_test": _cell(summary["gallery_frames"])})
    save_mat_deterministic(os.path.join(out_dir, "ID_train.mat"),
                           {"ID_train": np.array([train_pids], dtype=np.float64)})
    save_mat_deterministic(os.path.join(out_dir, "ID_test.mat"), {"ID_test": np.array([test_pids], dtype=np.float64)})
    queries.sort(key=lambda q: (q[0], q[5]))
    with open(os.path.join(out_dir, "query_info.txt"), "wb") as fh:  # CRLF, as the real file
        for pid, x, y, w, h, name in queries:
            fh.write(f"{pid} {x:.4f} {y:.4f} {w:.4f} {h:.4f} {name}\r\n".encode())
    summary["num_queries"] = len(queries)
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    with open(os.path.join(out_dir, COMPLETE_MARKER), "w") as fh:
        json.dump({k: v for k, v in summary.items() if k != "seconds"}, fh, indent=1)
    logger.info("synthetic: wrote %d train + %d gallery frames, %d queries to %s in %.1f s",
                len(summary["train_frames"]), len(summary["gallery_frames"]), len(queries), out_dir,
                summary["seconds"])
    return summary


def ensure_generated(root: str, spec: Optional[SyntheticSpec] = None, **overrides) -> str:
    """Generate the set at ``root`` unless it is already complete; safe when processes race.

    The set is written into a temporary sibling directory and renamed onto ``root`` in one step;
    a process that loses the race discards its copy and uses the winner's.
    """
    if os.path.isfile(os.path.join(root, COMPLETE_MARKER)):
        return root
    if os.path.exists(root) and os.listdir(root):
        raise FileExistsError(f"{root}: exists but is not a complete synthetic set (no {COMPLETE_MARKER}); "
                              "remove it to regenerate")
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


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output directory (created; must be empty or absent)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default")
    for field in dataclasses.fields(SyntheticSpec):
        if field.name in ("seed",) or field.type not in ("int", "float"):
            continue
        parser.add_argument("--" + field.name.replace("_", "-"), type=int if field.type == "int" else float,
                            default=None, help=f"override {field.name}")
    args = parser.parse_args(argv)
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(SyntheticSpec)
                 if hasattr(args, f.name) and getattr(args, f.name) is not None and f.name != "seed"}
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if os.path.exists(args.out) and os.listdir(args.out):
        raise SystemExit(f"{args.out}: not empty")
    ensure_generated(args.out, PRESETS[args.preset], seed=args.seed, **overrides)
    with open(os.path.join(args.out, COMPLETE_MARKER)) as fh:
        info = json.load(fh)
    print(f"wrote {args.out}: {len(info['train_frames'])} train frames, {len(info['gallery_frames'])} gallery "
          f"frames, {len(info['train_pids'])} train ids, {len(info['test_pids'])} test ids, "
          f"{info['num_queries']} queries")


if __name__ == "__main__":
    main()
