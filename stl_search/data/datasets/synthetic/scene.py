"""Scenes of the synthetic set: camera backgrounds with their lighting (:func:`camera`) and the
composition of one frame (:func:`render_frame`): placement of the persons, background clutter,
occluders, illumination, noise and blur, with the annotated box of every person.

Everything draws from the given ``numpy.random.Generator`` in a fixed order: the same generator
state gives the same frame.
"""

from __future__ import annotations

from typing import List, Tuple

import cv2
import numpy as np

from .render import pixel, render_person


def camera(rng: np.random.Generator, index: int, h: int, w: int) -> dict:
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
                bg[y0 : y0 + 9, x0 : x0 + 11] = rng.uniform(30, 80, 3)
        bg[horizon:] = rng.uniform(100, 150) + rng.uniform(-8, 8, 3)
        for y0 in range(horizon, h, 14):
            bg[y0 : y0 + 1, :] *= 0.8
    elif style == 1:  # park: trees, grass, a path
        bg[:horizon] = (150, 190, 225) + rng.uniform(-20, 20, 3)
        for _ in range(int(rng.integers(5, 10))):
            c = (int(rng.uniform(0, w)), horizon)
            cv2.circle(
                bg,
                c,
                int(rng.uniform(10, 30)),
                tuple(float(v) for v in rng.uniform([20, 70, 20], [60, 120, 60])),
                -1,
            )
        bg[horizon:] = (70, 130, 60) + rng.uniform(-15, 15, 3)
        path = np.array(
            [
                [int(w * 0.2), h],
                [int(w * 0.45), horizon],
                [int(w * 0.6), horizon],
                [int(w * 0.95), h],
            ],
            np.int32,
        )
        cv2.fillPoly(bg, [path], tuple(float(v) for v in (190, 170, 130) + rng.uniform(-15, 15, 3)))
    else:  # hall: wall with posters, tiled floor
        bg[:horizon] = rng.uniform(170, 220, 3)
        for _ in range(int(rng.integers(3, 6))):
            x0, y0 = int(rng.uniform(0, w - 20)), int(rng.uniform(2, max(3, horizon - 25)))
            bg[y0 : y0 + int(rng.uniform(12, 22)), x0 : x0 + int(rng.uniform(10, 24))] = (
                rng.uniform(30, 230, 3)
            )
        tile = rng.uniform(120, 200, 3)
        yy, xx = np.mgrid[0 : h - horizon, 0:w]
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


def _occlude(frame: np.ndarray, box, rng: np.random.Generator, cam: dict) -> None:
    """Draw an object in front of part of a person: a low wall (bottom) or a pole (one side)."""
    x1, y1, x2, y2 = box
    h, w = y2 - y1, x2 - x1
    color = np.clip(
        cam["bg"][min(frame.shape[0] - 1, int(y2)), :].mean(0) * rng.uniform(0.5, 0.8)
        + rng.uniform(-25, 25, 3),
        0,
        255,
    )
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
        frame[ya : ya + 1, xa:xb] *= 0.7


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
            cv2.line(
                frame,
                pixel(x, foot),
                pixel(x, foot - 1.8 * size),
                tuple(c * 0.5 for c in color),
                max(1, int(size * 0.08)),
            )
            cv2.rectangle(
                frame,
                pixel(x - 0.3 * size, foot - 1.8 * size),
                pixel(x + 0.3 * size, foot - 1.4 * size),
                color,
                -1,
            )
        elif kind == 1:  # bin / box
            cv2.rectangle(
                frame,
                pixel(x - 0.25 * size, foot - 0.7 * size),
                pixel(x + 0.25 * size, foot),
                color,
                -1,
            )
        else:  # bush / blob
            cv2.ellipse(
                frame,
                pixel(x, foot - 0.3 * size),
                (max(1, int(0.5 * size)), max(1, int(0.3 * size))),
                0,
                0,
                360,
                color,
                -1,
            )


def _box_iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def render_frame(
    rng: np.random.Generator,
    cam: dict,
    people: List[dict],
    size: Tuple[int, int],
    person_height: Tuple[int, int],
    occlusion_prob: float,
) -> Tuple[np.ndarray, List]:
    """Compose one frame of ``size`` = (height, width) seen by ``cam`` (from :func:`camera`);
    ``people`` are ``{"pid", "app", "occludable"}``, ``person_height`` the person height (px) at
    the horizon / the bottom, ``occlusion_prob`` the probability that an object occludes an
    occludable person. Returns (BGR uint8 image, [(pid, x, y, w, h), ...])."""
    H, W = size
    frame = cam["bg"] * rng.uniform(0.93, 1.07) + rng.normal(0, 2, size=(1, 1, 3)).astype(
        np.float32
    )
    _clutter(frame, rng, cam["horizon"], person_height[1])
    hmin, hmax = person_height
    horizon = cam["horizon"]
    # Place everyone (rejecting heavy overlaps), then draw from far to near.
    placed: List[Tuple[float, float, float, dict]] = []
    boxes: List[List[float]] = []
    for person in people:
        best = None
        for _ in range(25):
            foot = rng.uniform(horizon + 0.25 * (H - horizon), H + 0.03 * H)
            t = (foot - horizon) / (H - horizon)
            ph = (
                (hmin + (hmax - hmin) * (t - 0.25) / 0.78)
                * person["app"]["height_factor"]
                * rng.uniform(0.93, 1.07)
            )
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
        pose = {
            "facing": int(rng.choice([-1, 1, 0], p=[0.4, 0.4, 0.2])),
            "phase": float(rng.uniform(0, 2 * np.pi)),
        }
        img, alpha, ax, ay = render_person(person["app"], pose, ph, rng)
        img *= rng.uniform(0.8, 1.2)  # this person's illumination (sun / shade)
        x0, y0 = int(round(cx)) - ax, int(round(foot)) - ay
        ys, xs = np.nonzero(alpha > 0.5)
        if len(xs) == 0:
            continue
        # The annotated box covers the whole person, also where it is outside the frame.
        bx1, by1, bx2, by2 = x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1, y0 + ys.max() + 1
        fx1, fy1, fx2, fy2 = (
            max(0, x0),
            max(0, y0),
            min(W, x0 + img.shape[1]),
            min(H, y0 + img.shape[0]),
        )
        if fx2 <= fx1 or fy2 <= fy1:
            continue
        a = alpha[fy1 - y0 : fy2 - y0, fx1 - x0 : fx2 - x0, None]
        frame[fy1:fy2, fx1:fx2] = (
            a * img[fy1 - y0 : fy2 - y0, fx1 - x0 : fx2 - x0] + (1 - a) * frame[fy1:fy2, fx1:fx2]
        )
        if person["occludable"] and rng.random() < occlusion_prob:
            _occlude(frame, (bx1, by1, bx2, by2), rng, cam)
        jitter = rng.uniform(-0.5, 0.5, 4)  # annotators are not pixel-exact
        annos.append(
            (
                person["pid"],
                round(bx1 + jitter[0], 2),
                round(by1 + jitter[1], 2),
                round(bx2 - bx1 + jitter[2], 2),
                round(by2 - by1 + jitter[3], 2),
            )
        )
    light = cam["lighting"]
    frame = frame * light["gain"] * light["gradient"] + light["cast"]
    frame += rng.normal(0, 3, size=frame.shape).astype(np.float32)
    if rng.random() < 0.5:
        frame = cv2.GaussianBlur(frame, (3, 3), rng.uniform(0.5, 1.0))
    bgr = np.clip(frame, 0, 255).astype(np.uint8)[..., ::-1]
    return np.ascontiguousarray(bgr), annos
