"""Appearance of the synthetic identities: the attributes a person is drawn from, sampled so that
identities are told apart by combinations of attributes, not by single colours.

An appearance is a dict of attribute indices into the tables below (shirt colour + pattern and
sleeve length, trouser colour + type, hair colour + length, skin, shoes, hat, bag) plus body
proportions. Any two labeled identities differ in at least two of :data:`KEY_ATTRS`.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np

RGB = Tuple[int, int, int]
SHIRT_COLORS: List[RGB] = [
    (200, 35, 35),
    (230, 125, 25),
    (225, 200, 45),
    (45, 150, 65),
    (25, 140, 150),
    (45, 75, 195),
    (125, 55, 155),
    (230, 125, 170),
    (232, 232, 226),
    (128, 128, 130),
    (32, 32, 36),
]
ACCENT_COLORS: List[RGB] = [
    (245, 245, 240),
    (25, 25, 28),
    (210, 40, 40),
    (40, 70, 190),
    (230, 200, 40),
]
SHIRT_PATTERNS = ("solid", "hstripes", "vstripes", "checks", "logo")
TROUSER_COLORS: List[RGB] = [
    (28, 28, 32),
    (32, 42, 92),
    (62, 92, 142),
    (112, 112, 118),
    (192, 172, 132),
    (112, 72, 42),
    (92, 102, 52),
    (222, 222, 216),
]
TROUSER_TYPES = ("long", "shorts", "skirt")
HAIR_COLORS: List[RGB] = [
    (22, 18, 16),
    (75, 48, 28),
    (205, 170, 95),
    (160, 160, 160),
    (140, 60, 30),
]
SKIN_TONES: List[RGB] = [(240, 200, 170), (210, 160, 120), (160, 110, 75), (100, 65, 45)]
SHOE_COLORS: List[RGB] = [(20, 20, 20), (235, 235, 235), (100, 60, 35)]
HATS = ("none", "cap", "beanie")
HAT_COLORS: List[RGB] = [(200, 30, 30), (30, 30, 35), (40, 70, 190), (235, 235, 235), (60, 120, 60)]
BAGS = ("none", "backpack", "shoulder", "handbag")
BAG_COLORS: List[RGB] = [(25, 25, 25), (110, 65, 35), (190, 40, 40), (40, 60, 150), (180, 160, 110)]
# The attributes that make an identity (two labeled identities differ in >= 2 of them).
KEY_ATTRS = ("shirt", "pattern", "sleeves", "trousers", "trouser_type", "hair", "hat", "bag")


def sample_appearance(rng: np.random.Generator) -> dict:
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


def appearance_distance(a: dict, b: dict) -> int:
    return sum(a[k] != b[k] for k in KEY_ATTRS)


def sample_identities(
    rng: np.random.Generator,
    n: int,
    min_distance: int,
    others: Sequence[dict] = (),
    max_tries: int = 20000,
) -> List[dict]:
    out: List[dict] = []
    for _ in range(max_tries):
        if len(out) == n:
            break
        cand = sample_appearance(rng)
        if all(appearance_distance(cand, o) >= min_distance for o in list(others) + out):
            out.append(cand)
    if len(out) < n:
        raise ValueError(f"could not draw {n} identities {min_distance} attributes apart")
    return out
