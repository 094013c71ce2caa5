"""Drawing of one synthetic person (:func:`render_person`) from its appearance and pose.

The person is drawn at ``SS`` x resolution with OpenCV primitives (limbs as lines, torso and
bags as polygons, head and shoes as ellipses, the shirt pattern as a mask), shaded as a lit
cylinder, given texture noise and downsampled (anti-aliasing). Noise draws from the given
``numpy.random.Generator``: the same generator state gives the same pixels.
"""

from __future__ import annotations

import math
from typing import Tuple

import cv2
import numpy as np

from .appearance import (
    ACCENT_COLORS,
    BAG_COLORS,
    BAGS,
    HAIR_COLORS,
    HAT_COLORS,
    HATS,
    RGB,
    SHIRT_COLORS,
    SHIRT_PATTERNS,
    SHOE_COLORS,
    SKIN_TONES,
    TROUSER_COLORS,
    TROUSER_TYPES,
)

SS = 2  # people are drawn at SS x resolution, then downsampled (anti-aliasing)


def pixel(x: float, y: float) -> Tuple[int, int]:
    return int(round(x)), int(round(y))


def _line(canvas: np.ndarray, mask: np.ndarray, p0, p1, color: RGB, thickness: float) -> None:
    t = max(1, int(round(thickness)))
    cv2.line(canvas, pixel(*p0), pixel(*p1), color, t, cv2.LINE_8)
    cv2.line(mask, pixel(*p0), pixel(*p1), 255, t, cv2.LINE_8)


def _poly(canvas: np.ndarray, mask: np.ndarray, pts, color: RGB) -> None:
    arr = np.array([pixel(*p) for p in pts], dtype=np.int32)
    cv2.fillPoly(canvas, [arr], color)
    cv2.fillPoly(mask, [arr], 255)


def _ellipse(
    canvas: np.ndarray, mask: np.ndarray, c, axes, color: RGB, start: float = 0, end: float = 360
) -> None:
    ax = (max(1, int(round(axes[0]))), max(1, int(round(axes[1]))))
    cv2.ellipse(canvas, pixel(*c), ax, 0, start, end, color, -1)
    cv2.ellipse(mask, pixel(*c), ax, 0, start, end, 255, -1)


def _torso(canvas: np.ndarray, mask: np.ndarray, pts, app: dict, height: float) -> None:
    """The torso polygon filled with the shirt colour and its pattern."""
    part = np.zeros(mask.shape, np.uint8)
    arr = np.array([pixel(*p) for p in pts], dtype=np.int32)
    cv2.fillPoly(part, [arr], 255)
    base = np.array(SHIRT_COLORS[app["shirt"]], np.uint8)
    accent = np.array(ACCENT_COLORS[app["accent"]], np.uint8)
    if (
        accent.astype(int) - base
    ).__abs__().sum() < 90:  # accent too close to the shirt: use black/white
        accent = np.array((25, 25, 28) if base.mean() > 128 else (245, 245, 240), np.uint8)
    ys, xs = np.mgrid[0 : mask.shape[0], 0 : mask.shape[1]]
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


def render_person(
    app: dict, pose: dict, height_px: float, rng: np.random.Generator
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
        return (sx, y_sh + 0.02 * H), (
            sx + arm_len * math.sin(ang),
            y_sh + 0.02 * H + arm_len * math.cos(ang),
        )

    def draw_arm(sign: float) -> None:
        p0, p1 = arm_points(sign)
        _line(canvas, mask, p0, p1, skin, arm_w)
        frac = 1.0 if app["sleeves"] else 0.42
        _line(
            canvas,
            mask,
            p0,
            (p0[0] + frac * (p1[0] - p0[0]), p0[1] + frac * (p1[1] - p0[1])),
            shirt,
            arm_w * 1.1,
        )
        _ellipse(canvas, mask, p1, (arm_w * 0.55, arm_w * 0.6), skin)
        if bag == "handbag" and sign == (facing if side else 1):
            _poly(
                canvas,
                mask,
                [
                    (p1[0] - 0.06 * H, p1[1]),
                    (p1[0] + 0.06 * H, p1[1]),
                    (p1[0] + 0.07 * H, p1[1] + 0.1 * H),
                    (p1[0] - 0.07 * H, p1[1] + 0.1 * H),
                ],
                bag_color,
            )

    def draw_leg(sign: float) -> None:
        p0, p1 = leg_points(sign)
        ttype = TROUSER_TYPES[app["trouser_type"]]
        _line(canvas, mask, p0, p1, skin if ttype != "long" else trousers, leg_w)
        if ttype == "shorts":
            _line(
                canvas,
                mask,
                p0,
                (p0[0] + 0.5 * (p1[0] - p0[0]), p0[1] + 0.5 * (p1[1] - p0[1])),
                trousers,
                leg_w * 1.1,
            )
        dx = 0.03 * H * (facing if side else 0)
        _ellipse(
            canvas,
            mask,
            (p1[0] + dx, p1[1] + 0.01 * H),
            (0.055 * H if side else 0.04 * H, 0.028 * H),
            SHOE_COLORS[app["shoes"]],
        )

    back, front = (-facing, facing) if side else (-1, 1)
    # Behind the body: the far arm, a backpack (side view), long hair.
    draw_arm(back)
    if bag == "backpack" and side:
        bx = cx - facing * 0.5 * sw
        _poly(
            canvas,
            mask,
            [
                (bx - 0.09 * H, y_sh + 0.03 * H),
                (bx + 0.09 * H, y_sh + 0.03 * H),
                (bx + 0.1 * H, y_sh + 0.3 * H),
                (bx - 0.1 * H, y_sh + 0.3 * H),
            ],
            bag_color,
        )
    head_c = (cx + 0.01 * H * facing, top + 0.07 * H)
    r = 0.068 * H
    if app["long_hair"]:
        _poly(
            canvas,
            mask,
            [
                (head_c[0] - 1.05 * r, head_c[1]),
                (head_c[0] + 1.05 * r, head_c[1]),
                (head_c[0] + 1.1 * r - facing * 0.5 * r, y_sh + 0.08 * H),
                (head_c[0] - 1.1 * r - facing * 0.5 * r, y_sh + 0.08 * H),
            ],
            hair,
        )
    draw_leg(back)
    draw_leg(front)
    if TROUSER_TYPES[app["trouser_type"]] == "skirt":
        _poly(
            canvas,
            mask,
            [
                (cx - hip_w / 2, y_hip - 0.02 * H),
                (cx + hip_w / 2, y_hip - 0.02 * H),
                (cx + 0.75 * sw, y_hip + 0.22 * H),
                (cx - 0.75 * sw, y_hip + 0.22 * H),
            ],
            trousers,
        )
    else:
        _poly(
            canvas,
            mask,
            [
                (cx - hip_w / 2, y_hip - 0.03 * H),
                (cx + hip_w / 2, y_hip - 0.03 * H),
                (cx + hip_w / 2, y_hip + 0.06 * H),
                (cx - hip_w / 2, y_hip + 0.06 * H),
            ],
            trousers,
        )
    _torso(
        canvas,
        mask,
        [
            (cx - sw / 2, y_sh),
            (cx + sw / 2, y_sh),
            (cx + hip_w / 2, y_hip),
            (cx - hip_w / 2, y_hip),
        ],
        app,
        H,
    )
    # Bags over the torso.
    if bag == "backpack" and not side:
        for s in (-1, 1):
            _line(
                canvas,
                mask,
                (cx + s * 0.3 * sw, y_sh),
                (cx + s * 0.32 * sw, y_sh + 0.2 * H),
                bag_color,
                0.03 * H,
            )
    if bag == "shoulder":
        s = facing if side else 1
        _line(
            canvas,
            mask,
            (cx - s * 0.35 * sw, y_sh),
            (cx + s * 0.45 * sw, y_hip - 0.02 * H),
            bag_color,
            0.025 * H,
        )
        bx = cx + s * 0.5 * sw
        _poly(
            canvas,
            mask,
            [
                (bx - 0.07 * H, y_hip - 0.06 * H),
                (bx + 0.07 * H, y_hip - 0.06 * H),
                (bx + 0.07 * H, y_hip + 0.06 * H),
                (bx - 0.07 * H, y_hip + 0.06 * H),
            ],
            bag_color,
        )
    # Neck, head, hair, hat.
    _line(canvas, mask, (cx, top + 0.12 * H), (cx, y_sh + 0.01 * H), skin, 0.06 * H)
    _ellipse(canvas, mask, head_c, (r * 0.92, r), skin)
    _ellipse(
        canvas,
        mask,
        (head_c[0] - facing * 0.15 * r, head_c[1] - 0.15 * r),
        (r * 0.98, r * 0.85),
        hair,
        180,
        360,
    )
    hat = HATS[app["hat"]]
    if hat == "cap":
        hc = HAT_COLORS[app["hat_color"]]
        _ellipse(canvas, mask, (head_c[0], head_c[1] - 0.3 * r), (r * 1.0, r * 0.8), hc, 180, 360)
        d = facing if side else 0
        _line(
            canvas,
            mask,
            (head_c[0] + d * 0.3 * r - (0 if side else 0.9 * r), head_c[1] - 0.3 * r),
            (head_c[0] + d * 1.6 * r + (0 if side else 0.9 * r), head_c[1] - 0.3 * r),
            hc,
            0.2 * r + 1,
        )
    elif hat == "beanie":
        _ellipse(
            canvas,
            mask,
            (head_c[0], head_c[1] - 0.2 * r),
            (r * 1.02, r * 1.05),
            HAT_COLORS[app["hat_color"]],
            180,
            360,
        )
    draw_arm(front)

    img = canvas.astype(np.float32)
    # Cloth / body shading (a lit cylinder) and texture noise, then anti-aliasing by downsampling.
    xs = (np.arange(cw, dtype=np.float32) - cx) / max(1.0, 0.75 * sw)
    shade = 0.8 + 0.2 * np.cos(np.clip(xs, -1, 1) * np.pi / 2)
    img *= (
        shade[None, :, None]
        * (1.04 - 0.08 * np.linspace(0, 1, ch, dtype=np.float32))[:, None, None]
    )
    img += rng.normal(0, 7, size=img.shape).astype(np.float32)
    out_w, out_h = max(1, int(round(cw / SS))), max(1, int(round(ch / SS)))
    img = cv2.resize(img, (out_w, out_h), interpolation=cv2.INTER_AREA)
    alpha = cv2.resize(
        mask.astype(np.float32) / 255.0, (out_w, out_h), interpolation=cv2.INTER_AREA
    )
    return img, alpha, int(round(cx / SS)), int(round(foot_y / SS))
