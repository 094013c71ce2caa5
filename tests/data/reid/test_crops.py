"""Re-ID crop records of registered splits and the lazy / cached crop data set."""

from __future__ import annotations

import os
import pickle

import cv2
import numpy as np

from stl_search.data import register_prw
from stl_search.data.reid.crops import (
    ReIDCropDataset,
    build_reid_records,
    build_reid_test_records,
)

from .. import fixtures as fx


def test_reid_records_labeled_only(prw_root, unique_prefix):
    train, gallery, query = register_prw(unique_prefix, prw_root)
    records = build_reid_records(train)
    expected = [
        (img, list(map(float, b)), p, i, cam)
        for img, (cam, annos) in fx.PRW_EXPECTED_TRAIN.items()
        for b, p, i in annos
        if p >= 0
    ]
    assert [
        (r["image_id"], r["bbox"], r["person_id"], r["identity"], r["camera_id"]) for r in records
    ] == expected
    q, g = build_reid_test_records(query, gallery)
    assert [(r["identity"], r["camera_id"], r["bbox"]) for r in q] == [
        (i, c, list(map(float, b))) for _, c, b, i in fx.PRW_EXPECTED_QUERIES
    ]
    assert [(r["image_id"], r["identity"]) for r in g] == [
        (img, i)
        for img, (_, annos) in fx.PRW_EXPECTED_GALLERY.items()
        for _, _, i in annos
        if i >= 0
    ]
    assert all(r["person_id"] == -1 for r in q + g)


def test_crop_dataset_lazy_and_cached(prw_root, unique_prefix, tmp_path):
    records = build_reid_records(register_prw(unique_prefix, prw_root)[0])
    ds = ReIDCropDataset(records, (32, 16))
    item = ds[0]
    assert item["image"].shape == (32, 16, 3) and item["image"].dtype == np.uint8
    assert (item["person_id"], item["identity"], item["camera_id"], item["index"]) == (0, 1, 1, 0)
    # The crop is the box [10, 20, 40, 81] of the BGR frame, resized.
    frame = cv2.imread(records[0]["file_name"])
    assert np.array_equal(
        item["image"], cv2.resize(frame[20:81, 10:40], (16, 32), interpolation=cv2.INTER_LINEAR)
    )
    rgb = ReIDCropDataset(records, (32, 16), image_format="RGB")[0]["image"]
    assert np.array_equal(rgb, item["image"][..., ::-1])
    cached = ReIDCropDataset(records, (32, 16), cache_file=str(tmp_path / "crops.npy"))
    assert all(np.array_equal(cached[i]["image"], ds[i]["image"]) for i in range(len(ds)))
    mtime = os.path.getmtime(tmp_path / "crops.npy")
    ReIDCropDataset(
        records, (32, 16), cache_file=str(tmp_path / "crops.npy")
    )  # reused, not rewritten
    assert os.path.getmtime(tmp_path / "crops.npy") == mtime
    clone = pickle.loads(pickle.dumps(cached))  # as sent to a DataLoader worker
    assert np.array_equal(clone[1]["image"], ds[1]["image"])
