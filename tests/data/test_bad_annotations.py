"""Broken copies of the real-format PRW / CUHK-SYSU fixtures: every bad number, string or encoding
is an error at load time naming the file, the record and the field; a PRW box entirely outside
its frame is dropped and counted; an oversized or unreadable image is named."""

from __future__ import annotations

import logging
import os
import shutil

import numpy as np
import pytest
from scipy.io import loadmat, savemat

from stl_search.data.datasets.common import DatasetFormatError, image_size, person_id
from stl_search.data.datasets.cuhk_sysu import load_cuhk_sysu_queries, load_cuhk_sysu_scenes
from stl_search.data.datasets.prw import load_prw_queries, load_prw_scenes, read_prw_id_list

from . import fixtures as fx

FRAME = "c1s1_000151"  # a training frame, 120 x 100


def _prw_copy(tmp_path, prw_root, rows=None) -> str:
    """A copy of the PRW fixture; ``rows`` replaces FRAME's annotation matrix."""
    root = str(shutil.copytree(prw_root, tmp_path / "prw"))
    if rows is not None:
        savemat(_annotation_path(root), {"box_new": rows})
    return root


def _annotation_path(root: str) -> str:
    return os.path.join(root, "annotations", FRAME + ".jpg.mat")


def _good_rows() -> np.ndarray:
    return np.array(fx.PRW_ANNOTATIONS[FRAME][1], dtype=np.float64)


@pytest.mark.parametrize(
    "row, col, value, message",
    [
        (1, 1, np.nan, r"row 2, field x: nan is not a finite number"),
        (0, 4, np.inf, r"row 1, field h: inf is not a finite number"),
        (3, 0, np.nan, r"row 4, field pid: nan is not a finite number"),
        (0, 0, 1.5, r"row 1, field pid: person id 1.5 is not an integer"),
        (0, 0, 1e19, r"row 1, field pid: person id 10000000000000000000 is outside the int64"),
    ],
)
def test_prw_bad_annotation_number_names_file_row_field(
    tmp_path, prw_root, row, col, value, message
):
    rows = _good_rows()
    rows[row, col] = value
    root = _prw_copy(tmp_path, prw_root, rows)
    with pytest.raises(DatasetFormatError, match=message) as e:
        load_prw_scenes(root, "train")
    assert str(e.value).startswith(_annotation_path(root) + ": ")


def test_prw_string_annotation_names_file(tmp_path, prw_root):
    root = _prw_copy(tmp_path, prw_root, np.array(["1 10 20 30 60"]))
    with pytest.raises(DatasetFormatError, match=r"expected an N x 5 numeric array") as e:
        load_prw_scenes(root, "train")
    assert _annotation_path(root) in str(e.value)


def test_prw_box_outside_its_frame_is_dropped_and_counted(tmp_path, prw_root, caplog):
    rows = np.concatenate(
        [
            _good_rows(),
            [
                [1, -500, -300, 30, 60],  # left of and above the frame: was [0, 0, 30, 60]
                [5, 130, 10, 20, 40],  # right of the 120-pixel-wide frame
                [932, 10, 100, 20, 40],  # below the 100-pixel-high frame
            ],
        ]
    )
    root = _prw_copy(tmp_path, prw_root, rows)
    with caplog.at_level(logging.WARNING):
        dicts = load_prw_scenes(root, "train")
    expected = fx.PRW_EXPECTED_TRAIN[FRAME + ".jpg"][1]
    got = [(a["bbox"], a["person_id"], a["identity"]) for a in dicts[0]["annotations"]]
    assert got == [(list(map(float, b)), p, i) for b, p, i in expected]
    assert "dropped 3 boxes (entirely outside the frame)" in caplog.text


def test_prw_query_info_bad_lines_name_file_line_field(tmp_path, prw_root):
    root = _prw_copy(tmp_path, prw_root)
    path = os.path.join(root, "query_info.txt")
    good = "".join(line + "\r\n" for line in fx.PRW_QUERY_LINES).encode()
    cases = [
        (b"9 nan 2 30 40 c1s2_000300", r"query_info.txt:3: field x: expected a finite number"),
        (b"9 1 2 inf 40 c1s2_000300", r"query_info.txt:3: field w: expected a finite number"),
        (b"9 1 2 abc 40 c1s2_000300", r"query_info.txt:3: field w: expected a number, got 'abc'"),
        (b"nan 1 2 30 40 c1s2_000300", r"query_info.txt:3: field pid: expected a finite number"),
        (b"9.5 1 2 30 40 c1s2_000300", r"query_info.txt:3: field pid: person id 9.5 is not an"),
        (
            b"99999999999999999999 1 2 30 40 c1s2_000300",
            r"query_info.txt:3: field pid: person id 99999999999999999999 is outside the int64",
        ),
        (b"9 1 2 30 40 c1s2_\xff00300", r"query_info.txt:3: not UTF-8 text \(byte 0xff at col"),
        (b"9 500 2 30 40 c1s2_000300", r"query_info.txt:3: query box .* entirely outside its fr"),
    ]
    for line, message in cases:
        with open(path, "wb") as f:
            f.write(good + line + b"\r\n")
        with pytest.raises(DatasetFormatError, match=message):
            load_prw_queries(root)
    with open(path, "wb") as f:  # the good file still loads: the checks reject only bad lines
        f.write(good + b"9.0 1 2 30 40 c1s2_000300\r\n")
    assert [q["identity"] for q in load_prw_queries(root)] == [7, 8, 9]


def test_prw_id_list_nan_is_named(tmp_path, prw_root):
    root = _prw_copy(tmp_path, prw_root)
    savemat(os.path.join(root, "ID_train.mat"), {"ID_train": np.array([[1, np.nan, 932]])})
    with pytest.raises(DatasetFormatError, match=r"ID_train.mat: value nan at index 1 is not a"):
        read_prw_id_list(root, "train")


def _cuhk_copy(tmp_path, cuhk_root) -> str:
    return str(shutil.copytree(cuhk_root, tmp_path / "cuhk"))


@pytest.mark.parametrize(
    "value, message",
    [
        (fx.box(10, np.nan, 30, 60), r"Img\[0\].box\[1\].idlocate: value nan at index 1 is not"),
        (fx.box(10, 20, np.inf, 60), r"Img\[0\].box\[1\].idlocate: value inf at index 2 is not"),
        (np.array(["10 20 30 60"]), r"Img\[0\].box\[1\].idlocate: expected a numeric array"),
    ],
)
def test_cuhk_bad_image_box_names_file_record_field(tmp_path, cuhk_root, value, message):
    root = _cuhk_copy(tmp_path, cuhk_root)
    path = os.path.join(root, "annotation", "Images.mat")
    imgs = loadmat(path)["Img"]
    imgs[0, 0]["box"][0, 1]["idlocate"] = value
    savemat(path, {"Img": imgs})
    with pytest.raises(DatasetFormatError, match=message) as e:
        load_cuhk_sysu_scenes(root, "train")
    assert str(e.value).startswith(path + ":Img[0]")


def test_cuhk_identity_beyond_int64_is_named(tmp_path, cuhk_root):
    root = _cuhk_copy(tmp_path, cuhk_root)
    path = os.path.join(root, "annotation", "test", "train_test", "TestG50.mat")
    entries = [list(e) for e in fx.CUHK_EXPECTED_G50]
    entries[1][0] = 10**20
    savemat(path, {"TestG50": fx._protocol(entries)})
    with pytest.raises(
        DatasetFormatError,
        match=r"TestG50.mat:TestG50\[1\].Query.idname: person id 10{20} is outside the int64",
    ):
        load_cuhk_sysu_queries(root, 50)
    path = os.path.join(root, "annotation", "test", "train_test", "Train.mat")
    train = loadmat(path)["Train"]
    train[1, 0][0, 0]["idname"] = np.array(["p99999999999999999999"])
    savemat(path, {"Train": train})
    with pytest.raises(DatasetFormatError, match=r"Train.mat:Train\{1\}.idname: person id 9+ is"):
        load_cuhk_sysu_scenes(root, "train")


def test_person_id_accepts_integral_values_only():
    assert [person_id(v, "w") for v in (5, 5.0, "5", " -2 ", np.float64(932))] == [5, 5, 5, -2, 932]
    assert person_id(str(2**63 - 1), "w") == 2**63 - 1
    for bad in ("5.5", "p5", None, np.nan, -np.inf, 2**63, "-9223372036854775809"):
        with pytest.raises(DatasetFormatError, match="^w: "):
            person_id(bad, "w")


def test_huge_and_unreadable_images_are_named(tmp_path):
    huge = str(tmp_path / "huge.png")
    fx.write_png_header_only(huge, 16384, 16384)  # 256 MP: PIL refuses it at open
    with pytest.raises(DatasetFormatError, match=r"huge.png: image too large to decode safely"):
        image_size(huge)
    fx.write_png_header_only(huge, 640, 480)
    assert image_size(huge) == (480, 640)
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not an image at all")
    with pytest.raises(DatasetFormatError, match=r"junk.jpg: cannot be read as an image"):
        image_size(str(junk))
