"""``python -m stl_search.data.validate``: each kind of problem, made in a broken copy of a valid
file, is reported with its record and field and makes the command fail; a valid file gets a
summary and exit status 0."""

from __future__ import annotations

import json
import math
import os

import pytest

from stl_search.data.datasets.common import DatasetFormatError
from stl_search.data.datasets.person_search_json import load_person_search_json
from stl_search.data.datasets.person_search_json_checks import check_person_search_json
from stl_search.data.validate import main as validate_main
from stl_search.data.validate import validate

from .own_data import draw_frame, write_own_data


@pytest.fixture(scope="module")
def own_json(tmp_path_factory) -> str:
    return write_own_data(str(tmp_path_factory.mktemp("own")))


def _set(path, value):
    """A mutation that sets ``data[path[0]][path[1]]...`` to ``value``."""

    def mutate(data):
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def _delete_image_file(data):
    data["images"][1]["file_name"] = "cam1/missing.jpg"


# (mutation, kind, fragments of the same problem line: record and field)
BROKEN = {
    "missing image file": (
        _delete_image_file,
        "missing image file",
        ['images[1] (file "cam1/missing.jpg")', "field 'file_name'", "cam1/missing.jpg not found"],
    ),
    "box outside the image": (
        _set(["annotations", 4, "bbox"], [170, 20, 20, 60]),
        "box outside the image",
        ['annotations[4] (image "cam1/000002.jpg", box 1)', "field 'bbox'", "160 x 96"],
    ),
    "zero-size box": (
        _set(["annotations", 2, "bbox"], [120, 30, 0, 50]),
        "zero-size box",
        ['annotations[2] (image "cam1/000001.jpg", box 2)', "field 'bbox'"],
    ),
    "unknown split": (
        _set(["images", 5, "split"], "test"),
        "unknown split",
        ['images[5] (file "cam2/000100.jpg")', "field 'split'", "'test'"],
    ),
    "query identity absent": (
        _set(["queries", 1, "person_id"], 11),  # 11 is a training identity only
        "query identity absent from the gallery",
        ['queries[1] (image "cam1/000100.jpg")', "field 'person_id'", "person_id 11"],
    ),
    "duplicate image ids": (
        _set(["images", 3, "id"], "img0"),
        "duplicate image id",
        ['images[3] (file "cam2/000002.jpg")', "field 'id'", "'img0' is also images[0]"],
    ),
    "person_id of the wrong type": (
        _set(["annotations", 0, "person_id"], "p3"),
        "wrong type",
        ['annotations[0] (image "cam1/000001.jpg", box 0)', "field 'person_id'", "str 'p3'"],
    ),
    "person_id as a float": (
        _set(["queries", 0, "person_id"], 42.0),
        "wrong type",
        ['queries[0] (image "probe/042.jpg")', "field 'person_id'", "float 42.0"],
    ),
    "non-finite number": (
        _set(["annotations", 5, "bbox"], [15, 25, math.inf, 56]),
        "non-finite number",
        ['annotations[5] (image "cam2/000001.jpg", box 0)', "field 'bbox'", "inf"],
    ),
    "non-finite timestamp": (
        _set(["images", 0, "timestamp"], math.nan),
        "non-finite number",
        ['images[0] (file "cam1/000001.jpg")', "field 'timestamp'", "nan"],
    ),
    "image size mismatch": (
        _set(["images", 6, "width"], 200),
        "image size mismatch",
        ['images[6] (file "cam2/000101.jpg")', "200 (height x width)", "is 96 x 160"],
    ),
    "unknown image id": (
        _set(["annotations", 7, "image_id"], "img99"),
        "unknown image id",
        ["annotations[7]", "field 'image_id'", "'img99'"],
    ),
    "identity beyond int64": (
        _set(["annotations", 3, "person_id"], 2**63),
        "invalid value",
        ["annotations[3]", "field 'person_id'", "9223372036854775808 is outside the 64-bit"],
    ),
    "camera id beyond int64": (
        _set(["images", 2, "camera_id"], -(2**64)),
        "invalid value",
        ["images[2]", "field 'camera_id'", "outside the 64-bit integer range"],
    ),
    "missing field": (
        _set(["queries", 2], {"image_id": "img5", "person_id": 8}),
        "missing field",
        ['queries[2] (image "cam2/000100.jpg")', "field 'bbox'"],
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_each_problem_is_named_with_its_record(own_json, tmp_path, capsys, case):
    mutate, kind, fragments = BROKEN[case]
    data = json.loads(open(own_json).read())
    mutate(data)
    data["image_root"] = os.path.join(os.path.dirname(own_json), "images")
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(data))  # NaN / Infinity written as JSON's common extension

    assert validate_main([str(broken)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert "problem(s)" in lines[0]
    matching = [line for line in lines if f": {kind}: " in line]
    assert matching, lines
    assert any(all(f in line for f in fragments) for line in matching), matching


def test_valid_file_summary_and_exit_status(own_json, capsys):
    assert validate_main([own_json]) == 0
    out = capsys.readouterr().out
    assert "OK (images under" in out and "protocol prw" in out
    # train: 10 boxes, 9 labeled of 3 identities (3: 4 times, 8: 3, 11: 2); gallery and queries
    assert "train (train split)\n  images: 4\n  boxes: 10\n  labeled boxes: 9\n" in out
    assert "tail: 0 identities seen once, 1 twice, 2 3-9 times" in out
    assert "gallery (gallery split)\n  images: 3\n  boxes: 7\n" in out
    assert "query (query split)\n  images: 3\n  queries: 3\n" in out


def test_several_problems_are_all_listed_and_notes_are_not_problems(own_json):
    data = json.loads(open(own_json).read())
    data["annotations"][0]["bbox"] = [-5, 20, 22, 60]  # past the border: a note, not a problem
    data["annotations"][1]["person_id"] = None
    data["queries"][0]["gallery"] = []  # one query with a list, the others without
    data["images"][7]["split"] = "train"  # a query on a training image
    result = check_person_search_json(data, os.path.join(os.path.dirname(own_json), "images"))
    kinds = [(p.record.split(" ")[0], p.kind) for p in result.problems]
    assert kinds == [
        ("annotations[1]", "wrong type"),
        ("queries[0]", "query on a training image"),
        ("queries[1]", "mixed gallery lists"),
        ("queries[2]", "mixed gallery lists"),
    ], result.problems
    assert result.notes == ["1 boxes extend past the image border (kept; training clips them)"]


def test_unreadable_file_is_one_problem(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [1, 2,]}')
    ok, lines = validate(str(bad))
    assert not ok and "bad.json:1:" in lines[1] and "not valid JSON" in lines[1]
    ok, lines = validate(str(tmp_path / "absent.json"))
    assert not ok and "not found" in lines[1]


def test_huge_ids_and_deep_nesting_are_refused_by_the_loader_naming_the_file(own_json, tmp_path):
    """The loader (training, evaluation) refuses what the validator reports, before inference."""
    data = json.loads(open(own_json).read())
    data["image_root"] = os.path.join(os.path.dirname(own_json), "images")
    data["queries"][0]["person_id"] = 2**64
    huge = tmp_path / "huge.json"
    huge.write_text(json.dumps(data))
    with pytest.raises(DatasetFormatError) as error:
        load_person_search_json(str(huge), "query")
    assert str(huge) in str(error.value)
    assert "queries[0]" in str(error.value) and "'person_id'" in str(error.value)

    deep = tmp_path / "deep.json"
    deep.write_text('{"images": ' + "[" * 100000 + "]" * 100000 + "}")
    with pytest.raises(DatasetFormatError, match=f"{deep}: nested too deeply"):
        load_person_search_json(str(deep), "train")
    ok, lines = validate(str(deep))
    assert not ok and "nested too deeply" in lines[1]


def test_documented_example_is_valid(repo_root, tmp_path):
    with open(os.path.join(repo_root, "docs", "own-data.md")) as f:
        text = f.read()
    example = json.loads(text.split("```json\n", 1)[1].split("```", 1)[0])
    for img in example["images"]:
        draw_frame(
            str(tmp_path / example["image_root"] / img["file_name"]),
            [],
            seed=0,
            size=(img["height"], img["width"]),
        )
    path = tmp_path / "example.json"
    path.write_text(json.dumps(example))
    ok, lines = validate(str(path))
    assert ok, lines
    assert "train (train split)\n  images: 1\n  boxes: 2\n  labeled boxes: 1" in "\n".join(lines)
