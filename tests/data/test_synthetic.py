"""Synthetic generator: determinism, long tail, PRW-format round trip, safe first-use generation."""

from __future__ import annotations

import filecmp
import json
import os
import threading
from collections import Counter

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from stl_search.data import num_training_identities, register_synthetic
from stl_search.data.datasets.synthetic import (
    COMPLETE_MARKER,
    PRESETS,
    SyntheticSpec,
    ensure_generated,
    generate,
    long_tail_counts,
)
from stl_search.data.datasets.synthetic.__main__ import main


def _files(root):
    return sorted(
        os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs
    )


def test_same_seed_same_bytes_other_seed_differs(tmp_path, synthetic_root):
    again = str(tmp_path / "again")
    generate(again, PRESETS["tiny"])
    files = _files(synthetic_root)
    assert files == _files(again) and len(files) > 20
    match, mismatch, errors = filecmp.cmpfiles(synthetic_root, again, files, shallow=False)
    assert not mismatch and not errors
    other = str(tmp_path / "other")
    generate(other, PRESETS["tiny"], seed=1)
    frames = [f for f in files if f.startswith("frames") and os.path.exists(os.path.join(other, f))]
    assert frames and any(
        not filecmp.cmp(os.path.join(synthetic_root, f), os.path.join(other, f), shallow=False)
        for f in frames
    )


def test_long_tail_counts_shape():
    counts = long_tail_counts(100, 80, 0.9)
    assert counts == sorted(counts, reverse=True) and counts[0] == 80
    assert (
        sum(c == 1 for c in counts) >= 10 and sum(c == 2 for c in counts) >= 20
    )  # many seen once or twice
    assert sum(counts[:10]) > 0.4 * sum(counts)  # a few identities hold much of the data


def test_round_trip_through_prw_loader(synthetic_root, unique_prefix):
    names = register_synthetic(unique_prefix, synthetic_root)
    train, gallery, queries = (DatasetCatalog.get(n) for n in names)
    info = json.load(open(os.path.join(synthetic_root, COMPLETE_MARKER)))
    spec = SyntheticSpec(**{**info["spec"], "person_height": tuple(info["spec"]["person_height"])})
    assert spec == PRESETS["tiny"]
    assert len(train) == spec.num_train_frames and len(gallery) == spec.num_gallery_frames
    # Training identities: exactly the long-tail counts (the loader sees every instance).
    per_id = Counter(a["identity"] for d in train for a in d["annotations"] if a["identity"] >= 0)
    assert sorted(per_id.values(), reverse=True) == long_tail_counts(
        spec.num_train_ids, spec.max_instances, spec.tail_exponent
    )
    assert {str(k): v for k, v in per_id.items()} == info["train_counts"]
    assert num_training_identities(names[0]) == spec.num_train_ids
    assert MetadataCatalog.get(names[0]).identity_to_person_id == {
        p: i for i, p in enumerate(info["train_pids"])
    }
    assert any(a["identity"] == -1 for d in train + gallery for a in d["annotations"])  # passers-by
    assert all((d["height"], d["width"]) == (spec.height, spec.width) for d in train + gallery)
    assert {d["camera_id"] for d in train} == set(range(1, spec.num_cameras + 1))
    # Queries: one per test identity, found in other gallery frames of other cameras too.
    assert sorted(q["identity"] for q in queries) == info["test_pids"]
    for q in queries:
        others = [
            d
            for d in gallery
            if d["image_id"] != q["image_id"]
            and any(a["identity"] == q["identity"] for a in d["annotations"])
        ]
        assert others and any(d["camera_id"] != q["camera_id"] for d in others)
        own = next(d for d in gallery if d["image_id"] == q["image_id"])
        assert any(a["identity"] == q["identity"] for a in own["annotations"])
    assert not set(info["train_pids"]) & set(info["test_pids"])
    raw = open(os.path.join(synthetic_root, "query_info.txt"), "rb").read()
    assert raw.count(b"\r\n") == len(queries)


def test_person_sizes_and_negative_coordinates_clipped(synthetic_root, unique_prefix):
    train = DatasetCatalog.get(register_synthetic(unique_prefix, synthetic_root)[0])
    spec = PRESETS["tiny"]
    heights = [a["bbox"][3] - a["bbox"][1] for d in train for a in d["annotations"]]
    assert (
        min(heights) >= 0.6 * spec.person_height[0] and max(heights) <= 1.3 * spec.person_height[1]
    )
    assert min(a["bbox"][0] for d in train for a in d["annotations"]) >= 0


def test_racing_first_use_generation(tmp_path):
    root = str(tmp_path / "data" / "synthetic_prw")
    spec = SyntheticSpec(
        height=64,
        width=96,
        num_train_frames=4,
        num_train_ids=3,
        num_test_ids=2,
        num_gallery_frames=4,
        max_instances=3,
        max_test_instances=2,
        person_height=(24, 40),
    )
    errors = []

    def run():
        try:
            ensure_generated(root, spec)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert os.path.isfile(os.path.join(root, COMPLETE_MARKER))
    assert sorted(os.listdir(tmp_path / "data")) == ["synthetic_prw"]  # no temporary leftovers


def test_incomplete_root_is_refused(tmp_path):
    root = tmp_path / "partial"
    root.mkdir()
    (root / "frames").mkdir()
    with pytest.raises(FileExistsError, match="not a complete synthetic set"):
        ensure_generated(str(root), PRESETS["tiny"])


def test_cli(tmp_path):
    out = str(tmp_path / "cli")
    main(["--out", out, "--preset", "tiny", "--seed", "3", "--num-train-frames", "8"])
    info = json.load(open(os.path.join(out, COMPLETE_MARKER)))
    assert info["spec"]["seed"] == 3 and len(info["train_frames"]) == 8
