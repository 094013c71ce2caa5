"""Tiny registered data sets (interfaces.md format) and fake model outputs for evaluator tests."""

from __future__ import annotations

import uuid

import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, BoxMode, Instances

DIM = 8

# (image_id, camera, [(box, identity)]); identity -1 = unlabeled.
PRW_GALLERY = [
    (
        "c1s1_000001.jpg",
        1,
        [([10, 10, 50, 110], 1), ([100, 10, 140, 110], 2), ([200, 10, 240, 110], -1)],
    ),
    ("c2s1_000001.jpg", 2, [([10, 10, 50, 110], 1), ([100, 10, 140, 110], 3)]),
    ("c1s1_000050.jpg", 1, [([30, 20, 70, 120], 2)]),
    ("c3s1_000001.jpg", 3, [([60, 20, 100, 120], 1)]),
    ("c2s1_000090.jpg", 2, [([60, 20, 100, 120], -1)]),
]
# (image index in PRW_GALLERY, identity)
PRW_QUERIES = [(0, 1), (2, 2), (1, 3)]


def identity_embedding(identity: int) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    v[identity if identity >= 0 else DIM - 1] = 1.0
    return v


def _scene(image_id, camera, persons):
    return {
        "file_name": f"/nonexistent/{image_id}",
        "image_id": image_id,
        "height": 480,
        "width": 640,
        "camera_id": camera,
        "annotations": [
            {
                "bbox": [float(v) for v in b],
                "bbox_mode": BoxMode.XYXY_ABS,
                "category_id": 0,
                "person_id": -1,
                "identity": i,
            }
            for b, i in persons
        ],
    }


def register_prw(protocol_meta: bool = True):
    """Register a tiny PRW-format gallery + query split under unique names."""
    tag = uuid.uuid4().hex[:8]
    gname, qname = f"test_prw_gallery_{tag}", f"test_prw_query_{tag}"
    gallery = [_scene(*g) for g in PRW_GALLERY]
    queries = []
    for k, (img, ident) in enumerate(PRW_QUERIES):
        image_id, camera, persons = PRW_GALLERY[img]
        box = next(b for b, i in persons if i == ident)
        queries.append(
            {
                "file_name": f"/nonexistent/{image_id}",
                "image_id": image_id,
                "height": 480,
                "width": 640,
                "camera_id": camera,
                "query_box": [float(v) for v in box],
                "identity": ident,
                "query_index": k,
            }
        )
    DatasetCatalog.register(gname, lambda: gallery)
    DatasetCatalog.register(qname, lambda: queries)
    if protocol_meta:
        MetadataCatalog.get(gname).set(protocol="prw", evaluator_type="person_search")
    return gname, qname, gallery, queries


def register_cuhk():
    """Tiny CUHK-SYSU-format split with two 'gallery sizes' (explicit lists, duplicates kept)."""
    tag = uuid.uuid4().hex[:8]
    gname = f"test_cuhk_gallery_{tag}"
    persons = {
        "s1.jpg": [([10, 10, 50, 110], 1), ([100, 10, 140, 110], 2)],
        "s2.jpg": [([10, 10, 50, 110], 1)],
        "s3.jpg": [([30, 20, 70, 120], 2), ([200, 20, 240, 120], -1)],
        "s4.jpg": [([60, 20, 100, 120], 3)],
    }
    gallery = [_scene(k, -1, v) for k, v in persons.items()]

    def listing(image_id, ident):
        box = next((b for b, i in persons[image_id] if i == ident), None)
        return {"image_id": image_id, "bbox": None if box is None else [float(v) for v in box]}

    def query_set(size):
        # Query 0: identity 1 from s1; its gallery lists s2 (target), s4, and for size 3 s2 again
        # (duplicate).
        # Query 1: identity 2 from s3; gallery: s1 (target) + s4 (+ its own image s3 for size 3).
        lists = {
            2: [["s2.jpg", "s4.jpg"], ["s1.jpg", "s4.jpg"]],
            3: [["s2.jpg", "s4.jpg", "s2.jpg"], ["s1.jpg", "s4.jpg", "s3.jpg"]],
        }[size]
        out = []
        for k, (img, ident) in enumerate([("s1.jpg", 1), ("s3.jpg", 2)]):
            box = next(b for b, i in persons[img] if i == ident)
            out.append(
                {
                    "file_name": f"/nonexistent/{img}",
                    "image_id": img,
                    "height": 480,
                    "width": 640,
                    "camera_id": -1,
                    "query_box": [float(v) for v in box],
                    "identity": ident,
                    "query_index": k,
                    "gallery": [listing(g, ident) for g in lists[k]],
                }
            )
        return out

    DatasetCatalog.register(gname, lambda: gallery)
    names = []
    for size in (2, 3):
        name = f"test_cuhk_query_{tag}_g{size}"
        DatasetCatalog.register(name, lambda size=size: query_set(size))
        names.append(name)
    MetadataCatalog.get(gname).set(protocol="cuhk_sysu")
    return gname, names, gallery


def fake_gallery_outputs(gallery, rng=None, extra=True):
    """One detection per annotated person (score 0.9, its identity's embedding, or a random one
    when ``rng`` is given), plus a false positive (0.6) and a dropped low-score box (0.3) in the
    last image."""
    inputs, outputs = [], []
    for k, d in enumerate(gallery):
        boxes = [a["bbox"] for a in d["annotations"]]
        scores = [0.9] * len(boxes)
        embs = [
            identity_embedding(a["identity"]) if rng is None else rng.normal(size=DIM)
            for a in d["annotations"]
        ]
        if extra and k == len(gallery) - 1:
            boxes += [[500, 300, 540, 400], [400, 300, 440, 400]]
            scores += [0.6, 0.3]
            embs += [identity_embedding(5), identity_embedding(6)]
        inst = Instances((d["height"], d["width"]))
        inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
        inst.scores = torch.tensor(scores, dtype=torch.float32)
        inst.pred_classes = torch.zeros(len(scores), dtype=torch.int64)
        inst.pred_embeddings = torch.tensor(np.array(embs, dtype=np.float32).reshape(-1, DIM))
        inputs.append({"image_id": d["image_id"], "height": d["height"], "width": d["width"]})
        outputs.append({"instances": inst})
    return inputs, outputs


def fake_query_outputs(queries, rng=None):
    inputs = [
        {"image_id": q["image_id"], "query_index": q["query_index"], "identity": q["identity"]}
        for q in queries
    ]
    outputs = [
        {
            "query_embedding": torch.tensor(
                identity_embedding(q["identity"])
                if rng is None
                else rng.normal(size=DIM).astype(np.float32)
            )
        }
        for q in queries
    ]
    return inputs, outputs
