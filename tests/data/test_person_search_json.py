"""The person-search JSON format: PRW / CUHK-SYSU fixtures converted to JSON load back to exactly
the native dicts, metadata and metrics; registration, the Re-ID crop records and the optional
fields of an own data set; a file changed after registration is checked again."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from stl_search.data import register_cuhk_sysu, register_person_search_json, register_prw
from stl_search.data.convert import convert
from stl_search.data.convert import main as convert_main
from stl_search.data.datasets.common import DatasetFormatError
from stl_search.data.datasets.person_search_json import dicts_to_json
from stl_search.data.reid import build_reid_records, build_reid_test_records
from stl_search.evaluation import PersonSearchEvaluator

from ..evaluation.fixtures import fake_gallery_outputs, fake_query_outputs
from .own_data import FRAMES, QUERIES, write_own_data

SPLITS = ("train", "gallery", "query")
META_KEYS = ("thing_classes", "evaluator_type", "protocol", "split", "query_name", "gallery_name")


def _evaluate(gallery_name: str, query_name: str) -> dict:
    gallery, queries = DatasetCatalog.get(gallery_name), DatasetCatalog.get(query_name)
    ev = PersonSearchEvaluator(gallery_name, query_name, distributed=False)
    ev.reset()
    ev.process(*fake_gallery_outputs(gallery, np.random.default_rng(0)))
    ev.process_queries(*fake_query_outputs(queries, np.random.default_rng(1)))
    return ev.evaluate()


def _assert_same_as_native(native_prefix: str, json_prefix: str) -> None:
    for split in SPLITS:
        native = DatasetCatalog.get(f"{native_prefix}_{split}")
        assert native, split  # the comparison below is not vacuous
        assert DatasetCatalog.get(f"{json_prefix}_{split}") == native, split
        n_meta, j_meta = (
            MetadataCatalog.get(f"{native_prefix}_{split}"),
            MetadataCatalog.get(f"{json_prefix}_{split}"),
        )
        for key in META_KEYS:
            if hasattr(n_meta, key):
                expected = (
                    getattr(n_meta, key).replace(native_prefix, json_prefix, 1)
                    if key.endswith("_name")
                    else getattr(n_meta, key)
                )
                assert getattr(j_meta, key) == expected, (split, key)
    n_train, j_train = (
        MetadataCatalog.get(f"{native_prefix}_train"),
        MetadataCatalog.get(f"{json_prefix}_train"),
    )
    assert j_train.num_identities == n_train.num_identities > 0
    assert j_train.identity_to_person_id == n_train.identity_to_person_id


def test_prw_round_trip_dicts_metadata_metrics(prw_root, unique_prefix, tmp_path):
    register_prw(unique_prefix + "_native", prw_root)
    out = str(tmp_path / "json" / "prw.json")
    assert convert_main(["prw", prw_root, out]) == {"train": 2, "gallery": 2, "query": 2}
    names = register_person_search_json(unique_prefix + "_json", out)
    assert names == [f"{unique_prefix}_json_{s}" for s in SPLITS]
    _assert_same_as_native(unique_prefix + "_native", unique_prefix + "_json")
    assert MetadataCatalog.get(names[1]).protocol == "prw"

    native = _evaluate(f"{unique_prefix}_native_gallery", f"{unique_prefix}_native_query")
    from_json = _evaluate(f"{unique_prefix}_json_gallery", f"{unique_prefix}_json_query")
    assert set(native) == {"search", "search_multi_view", "detection"}
    assert from_json == native


@pytest.mark.parametrize("gallery_size", [100, 50])
def test_cuhk_round_trip_dicts_metadata_metrics(cuhk_root, unique_prefix, tmp_path, gallery_size):
    register_cuhk_sysu(unique_prefix + "_native", cuhk_root)
    out = str(tmp_path / "cuhk.json")
    convert("cuhk_sysu", cuhk_root, out, gallery_size=gallery_size)
    register_person_search_json(unique_prefix + "_json", out)
    native_query = f"{unique_prefix}_native_query_g{gallery_size}"
    for split in ("train", "gallery"):
        assert DatasetCatalog.get(f"{unique_prefix}_json_{split}") == DatasetCatalog.get(
            f"{unique_prefix}_native_{split}"
        )
    queries = DatasetCatalog.get(f"{unique_prefix}_json_query")
    assert queries == DatasetCatalog.get(native_query) and all("gallery" in q for q in queries)
    assert MetadataCatalog.get(f"{unique_prefix}_json_gallery").protocol == "cuhk_sysu"
    meta = MetadataCatalog.get(f"{unique_prefix}_json_train")
    assert (
        meta.identity_to_person_id
        == MetadataCatalog.get(f"{unique_prefix}_native_train").identity_to_person_id
    )

    # Metrics: the same numbers. The evaluator labels a query split without a "_g<N>" suffix by
    # the length of its lists (4 here; N in the real TestG<N> files), as the native cuhk_sysu_query.
    native = _evaluate(f"{unique_prefix}_native_gallery", native_query)
    from_json = _evaluate(f"{unique_prefix}_json_gallery", f"{unique_prefix}_json_query")
    assert from_json["search"] == native["search"] and from_json["detection"] == native["detection"]
    if gallery_size == 100:
        assert from_json == _evaluate(
            f"{unique_prefix}_native_gallery", f"{unique_prefix}_native_query"
        )


def test_converter_writes_one_record_per_line_relative_image_root(prw_root, tmp_path):
    out = tmp_path / "sub" / "prw.json"
    convert("prw", prw_root, str(out))
    data = json.loads(out.read_text())
    assert data["image_root"] == os.path.relpath(os.path.join(prw_root, "frames"), str(out.parent))
    # 15 records; braces, 3 list openings and closings, image_root and info: 10 lines
    assert out.read_text().count("\n") == 4 + 9 + 2 + 10
    assert data["queries"][0] == {"id": 0, "image_id": 2, "bbox": [0, 5, 19, 40], "person_id": 7}
    assert not [f for f in os.listdir(out.parent) if f.endswith(".tmp")]


def test_own_data_dicts_optional_fields_and_reid_records(tmp_path, unique_prefix):
    path = write_own_data(str(tmp_path))
    train, gallery, query = register_person_search_json(unique_prefix, path)
    tdicts, gdicts, qdicts = (DatasetCatalog.get(n) for n in (train, gallery, query))
    assert [d["image_id"] for d in tdicts + gdicts] == [f[0] for f in FRAMES if f[1] != "query"]
    d = tdicts[1]
    assert d["file_name"] == os.path.join(str(tmp_path), "images", "cam1", "000002.jpg")
    assert (d["camera_id"], d["frame"], d["timestamp"]) == (1, 2, 2 / 25)
    # identities 3, 8, 11 are the training ones: labels 0, 1, 2 in identity order
    assert [(a["bbox"], a["person_id"], a["identity"]) for a in d["annotations"]] == [
        ([30.0, 15.0, 54.0, 81.0], 0, 3),
        ([100.0, 20.0, 120.0, 80.0], 2, 11),
    ]
    assert MetadataCatalog.get(train).identity_to_person_id == {3: 0, 8: 1, 11: 2}
    assert all(a["person_id"] == -1 for g in gdicts for a in g["annotations"])
    assert [(q["image_id"], q["identity"], q["query_index"]) for q in qdicts] == [
        (FRAMES[i][0], FRAMES[i][3][j][4], k) for k, (i, j) in enumerate(QUERIES)
    ]
    assert qdicts[0]["camera_id"] == -1 and "frame" not in qdicts[0] and "gallery" not in qdicts[0]
    assert MetadataCatalog.get(gallery).protocol == "prw"

    # STL step 1 reads the same registration: labeled boxes of the training split ...
    records = build_reid_records(train)
    assert len(records) == sum(1 for f in FRAMES[:4] for p in f[3] if p[4] >= 0) == 9
    assert {r["person_id"] for r in records} == {0, 1, 2}
    # ... and query / gallery crops for its test.
    q_recs, g_recs = build_reid_test_records(query, gallery)
    assert len(q_recs) == 3 and len(g_recs) == 6
    # registering the same file again is a no-op; other images under the same name are refused
    assert register_person_search_json(unique_prefix, path) == [train, gallery, query]
    copy = shutil.copytree(str(tmp_path / "images"), str(tmp_path / "copy"))
    with pytest.raises(ValueError, match="already registered"):
        register_person_search_json(unique_prefix, path, image_root=copy)


def test_file_changed_after_registration_is_checked_again(tmp_path, unique_prefix):
    path = write_own_data(str(tmp_path))
    _, gallery, _ = register_person_search_json(unique_prefix, path)
    assert len(DatasetCatalog.get(gallery)) == 3
    data = json.loads(open(path).read())
    data["annotations"][0]["bbox"] = [10, 20, 0, 60]
    with open(path, "w") as f:
        json.dump(data, f)
        f.write(" " * 16)  # another size: a new version even where mtime has a coarse resolution
    with pytest.raises(DatasetFormatError, match=r"annotations\[0\] .*zero-size box"):
        DatasetCatalog.get(gallery)


def test_registration_refuses_a_broken_file(tmp_path, unique_prefix):
    path = write_own_data(str(tmp_path))
    data = json.loads(open(path).read())
    data["images"][2]["split"] = "val"
    with open(path, "w") as f:
        json.dump(data, f)
    with pytest.raises(
        DatasetFormatError,
        match=r"images\[2\] \(file \"cam2/000001.jpg\"\), field 'split': unknown split",
    ):
        register_person_search_json(unique_prefix, path)
    assert f"{unique_prefix}_train" not in DatasetCatalog.list()
    with open(path, "w") as f:
        f.write('{"images": [}')
    with pytest.raises(DatasetFormatError, match=r"own.json:1:\d+: not valid JSON"):
        register_person_search_json(unique_prefix, path)


def test_dicts_to_json_refuses_what_it_cannot_write_back(tmp_path):
    scene = {"file_name": str(tmp_path / "a" / "x.jpg"), "image_id": "x.jpg", "height": 10,
             "width": 10, "camera_id": -1, "annotations": []}  # fmt: skip
    with pytest.raises(DatasetFormatError, match=r"'x.jpg'.* is not <image_root>/<image_id>"):
        dicts_to_json([scene], [], [], str(tmp_path))
    query = dict(scene, query_box=[1, 1, 5, 5], identity=3, query_index=0,
                 gallery=[{"image_id": "elsewhere.jpg", "bbox": None}])  # fmt: skip
    with pytest.raises(DatasetFormatError, match=r"query 0 gallery\[0\]: image 'elsewhere.jpg'"):
        dicts_to_json([], [], [query], str(tmp_path / "a"))
