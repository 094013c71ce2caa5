"""Tiny PRW and CUHK-SYSU copies written in exactly the distributed formats (MATLAB v5 files
via scipy: cells, struct arrays, N x 5 double matrices; CRLF ``query_info.txt``), with the
values every loader test expects."""

from __future__ import annotations

import os
import zlib
from struct import pack as struct_pack
from typing import Dict, List, Sequence

import cv2
import numpy as np
from scipy.io import savemat


def write_image(path: str, height: int, width: int, seed: int = 0) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)
    assert cv2.imwrite(path, img)


def cell(strings: Sequence[str], shape=None) -> np.ndarray:
    """A MATLAB cell of strings, N x 1 by default."""
    out = np.empty(shape or (len(strings), 1), dtype=object)
    for i, s in enumerate(strings):
        out.reshape(-1)[i] = s
    return out


def struct(records: List[Dict], fields: Sequence[str], shape=None) -> np.ndarray:
    """A MATLAB struct array (1 x N by default) with object fields."""
    arr = np.empty(shape or (1, len(records)), dtype=[(f, object) for f in fields])
    flat = arr.reshape(-1)
    for i, r in enumerate(records):
        for f in fields:
            flat[f][i] = r[f]
    return arr


def box(x, y, w, h) -> np.ndarray:
    return np.array([[x, y, w, h]], dtype=np.float64)


EMPTY = np.zeros((0, 0))

# ---------------------------------------------------------------------------------------------
# PRW
# ---------------------------------------------------------------------------------------------
PRW_SIZES = {
    "c1s1_000151": (100, 120),
    "c2s1_000200": (90, 130),
    "c1s2_000300": (100, 120),
    "c3s2_000400": (80, 110),
}
PRW_ANNOTATIONS = {
    # frame: (key, rows [pid, x, y, w, h])
    "c1s1_000151": (
        "box_new",
        [
            [1, 10.5, 20.7, 30.2, 60.9],
            [-2, -3.2, 5.0, 20.0, 40.0],
            [932, 50, 10, 0, 30],
            [5, 60, -4.5, 25.3, 50],
        ],
    ),
    "c2s1_000200": ("anno_file", [[5, 1, 2, 3, 4], [932, 70, 10, 20, 50]]),
    "c1s2_000300": ("anno_previous", [[7, 5, 5, 20, 40], [-2, 40, 5, 20, 40], [1, 70, 5, 20, -3]]),
    "c3s2_000400": ("box_new", [[7, 10, 10, 30, 60], [8, 50.9, 0, 30, 60]]),
}
PRW_QUERY_LINES = [
    "7 -1.7030 5.0000 21.5000 40.2000 c1s2_000300",
    "8 50.9 0.0 30.0 60.0 c3s2_000400",
]

# Expected parse (XYXY after the protocol's rules), per frame: [(bbox, person_id, identity)].
PRW_EXPECTED_TRAIN = {
    "c1s1_000151.jpg": (
        1,
        [([10, 20, 40, 81], 0, 1), ([0, 5, 20, 45], -1, -1), ([60, 0, 85, 50], 1, 5)],
    ),
    "c2s1_000200.jpg": (2, [([1, 2, 4, 6], 1, 5), ([70, 10, 90, 60], 2, 932)]),
}
PRW_EXPECTED_GALLERY = {
    "c1s2_000300.jpg": (1, [([5, 5, 25, 45], -1, 7), ([40, 5, 60, 45], -1, -1)]),
    "c3s2_000400.jpg": (3, [([10, 10, 40, 70], -1, 7), ([50, 0, 80, 60], -1, 8)]),
}
PRW_EXPECTED_QUERIES = [
    ("c1s2_000300.jpg", 1, [0, 5, 19, 45], 7),
    ("c3s2_000400.jpg", 3, [50, 0, 80, 60], 8),
]


def write_prw(root: str) -> str:
    for i, (name, (h, w)) in enumerate(PRW_SIZES.items()):
        write_image(os.path.join(root, "frames", name + ".jpg"), h, w, seed=i)
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    for name, (key, rows) in PRW_ANNOTATIONS.items():
        savemat(
            os.path.join(root, "annotations", name + ".jpg.mat"),
            {key: np.array(rows, dtype=np.float64)},
        )
    savemat(
        os.path.join(root, "frame_train.mat"),
        {"img_index_train": cell(["c1s1_000151", "c2s1_000200"])},
    )
    savemat(
        os.path.join(root, "frame_test.mat"),
        {"img_index_test": cell(["c1s2_000300", "c3s2_000400"])},
    )
    savemat(
        os.path.join(root, "ID_train.mat"), {"ID_train": np.array([[1, 5, 932]], dtype=np.float64)}
    )
    savemat(os.path.join(root, "ID_test.mat"), {"ID_test2": np.array([[7, 8]], dtype=np.float64)})
    with open(os.path.join(root, "query_info.txt"), "wb") as f:
        f.write("".join(line + "\r\n" for line in PRW_QUERY_LINES).encode())
    return root


# ---------------------------------------------------------------------------------------------
# CUHK-SYSU
# ---------------------------------------------------------------------------------------------
CUHK_SIZES = {"s1.jpg": (100, 120), "s2.jpg": (90, 100), "s3.jpg": (100, 110), "s4.jpg": (80, 90)}
CUHK_IMAGE_BOXES = {
    "s1.jpg": [(10, 20, 30, 60), (50, 10, 20, 40), (70, 5, 0, 30)],
    "s2.jpg": [(5, 5, 25, 50), (40, 10, 30, 60)],
    "s3.jpg": [(10, 10, 20, 40), (60, 20, 25, 50)],
    "s4.jpg": [(30, 10, 20, 45)],
}
CUHK_EXPECTED_TRAIN = {  # person_id: p3 -> 0, p20 -> 1 (sorted identities)
    "s1.jpg": [([10, 20, 40, 80], 1, 20), ([50, 10, 70, 50], 0, 3)],
    "s2.jpg": [([5, 5, 30, 55], -1, -1), ([40, 10, 70, 70], 1, 20)],
}
CUHK_EXPECTED_GALLERY = {
    "s3.jpg": [([10, 10, 30, 50], -1, 100), ([60, 20, 85, 70], -1, 200)],
    "s4.jpg": [([30, 10, 50, 55], -1, 100)],
}
# TestG50: query identity, image, query box (XYXY), gallery [(image, XYXY or None)] in file order.
CUHK_EXPECTED_G50 = [
    (
        100,
        "s3.jpg",
        [10, 10, 30, 50],
        [("s4.jpg", [30, 10, 50, 55]), ("s3.jpg", None), ("s4.jpg", None)],
    ),
    (200, "s3.jpg", [60, 20, 85, 70], [("s4.jpg", None), ("s4.jpg", None)]),
]
CUHK_EXPECTED_G100 = [
    (
        100,
        "s3.jpg",
        [10, 10, 30, 50],
        [("s4.jpg", [30, 10, 50, 55]), ("s1.jpg", None), ("s2.jpg", None), ("s3.jpg", None)],
    ),
    (200, "s3.jpg", [60, 20, 85, 70], [("s4.jpg", None), ("s1.jpg", None)]),
]


def _protocol(entries) -> np.ndarray:
    recs = []
    for identity, imname, q, gallery in entries:
        x1, y1, x2, y2 = q
        query = struct(
            [
                {
                    "imname": imname,
                    "idlocate": box(x1, y1, x2 - x1, y2 - y1),
                    "ishard": np.array([[0.0]]),
                    "idname": f"p{identity}",
                }
            ],
            ["imname", "idlocate", "ishard", "idname"],
            shape=(1, 1),
        )
        gal = struct(
            [
                {
                    "imname": n,
                    "idlocate": EMPTY if b is None else box(b[0], b[1], b[2] - b[0], b[3] - b[1]),
                    "ishard": np.array([[0.0]]),
                }
                for n, b in gallery
            ],
            ["imname", "idlocate", "ishard"],
        )
        recs.append({"Query": query, "Gallery": gal})
    return struct(recs, ["Query", "Gallery"])


def write_images_mat(ann: str, image_boxes) -> None:
    """``ann/Images.mat`` (``Img``: name, count, boxes per image) as CUHK-SYSU stores it."""
    imgs = [
        {
            "imname": n,
            "nAppear": np.array([[float(len(b))]]),
            "box": struct([{"idlocate": box(*bb)} for bb in b], ["idlocate"]),
        }
        for n, b in image_boxes.items()
    ]
    savemat(os.path.join(ann, "Images.mat"), {"Img": struct(imgs, ["imname", "nAppear", "box"])})


def write_cuhk_sysu(root: str) -> str:
    for i, (name, (h, w)) in enumerate(CUHK_SIZES.items()):
        write_image(os.path.join(root, "Image", "SSM", name), h, w, seed=10 + i)
    ann = os.path.join(root, "annotation")
    tt = os.path.join(ann, "test", "train_test")
    os.makedirs(tt, exist_ok=True)
    write_images_mat(ann, CUHK_IMAGE_BOXES)
    savemat(os.path.join(ann, "pool.mat"), {"pool": cell(["s3.jpg", "s4.jpg"])})
    scene_fields = ["imname", "idlocate", "ishard"]
    train = np.empty((2, 1), dtype=object)
    train[0, 0] = struct(
        [
            {
                "idname": "p20",
                "nAppear": np.array([[2.0]]),
                "scene": struct(
                    [
                        {
                            "imname": "s1.jpg",
                            "idlocate": box(10, 20, 30, 60),
                            "ishard": np.array([[0.0]]),
                        },
                        {
                            "imname": "s2.jpg",
                            "idlocate": box(40, 10, 30, 60),
                            "ishard": np.array([[0.0]]),
                        },
                    ],
                    scene_fields,
                ),
            }
        ],
        ["idname", "nAppear", "scene"],
        shape=(1, 1),
    )
    train[1, 0] = struct(
        [
            {
                "idname": "p3",
                "nAppear": np.array([[1.0]]),
                "scene": struct(
                    [
                        {
                            "imname": "s1.jpg",
                            "idlocate": box(50, 10, 20, 40),
                            "ishard": np.array([[1.0]]),
                        }
                    ],
                    scene_fields,
                ),
            }
        ],
        ["idname", "nAppear", "scene"],
        shape=(1, 1),
    )
    savemat(os.path.join(tt, "Train.mat"), {"Train": train})
    savemat(os.path.join(tt, "TestG50.mat"), {"TestG50": _protocol(CUHK_EXPECTED_G50)})
    savemat(os.path.join(tt, "TestG100.mat"), {"TestG100": _protocol(CUHK_EXPECTED_G100)})
    return root


def write_png_header_only(path: str, width: int, height: int) -> None:
    """A PNG whose header announces ``width x height`` RGB pixels but holds no pixel data: what a
    loader reading only headers sees of a huge image (a 16384 x 16384 one is 256 MP)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct_pack(">I", len(data)) + kind + data + struct_pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct_pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(
            b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")
        )


def write_truncated_copy(src: str, dst: str, keep: float = 0.5) -> None:
    """``dst``: the first ``keep`` fraction of the bytes of ``src`` (a JPEG cut mid-scan)."""
    with open(src, "rb") as f:
        data = f.read()
    with open(dst, "wb") as f:
        f.write(data[: int(len(data) * keep)])
