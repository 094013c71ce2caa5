"""The Table 2 runner: which rows it trains, their folders, how the table is printed (no training)."""

import importlib.util
import json
import os

import pytest


@pytest.fixture(scope="module")
def table2(repo_root):
    spec = importlib.util.spec_from_file_location(
        "run_table2", os.path.join(repo_root, "projects", "stl_search", "run_table2.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rows_and_their_folders(table2):
    rows = table2.table_rows("stl.pth", "")
    assert [table2.row_slug(name) for name, _, _ in rows] == [
        "random_init",
        "stl",
        "stl_plus_mrfp",
        "random_init_plus_mrfp",
    ]
    assert [(w, m) for _, w, m in rows] == [
        ("", False),
        ("stl.pth", False),
        ("stl.pth", True),
        ("", True),
    ]
    with_imagenet = [table2.row_slug(n) for n, _, _ in table2.table_rows("stl.pth", "in.pth")]
    assert with_imagenet[1] == "imagenet" and with_imagenet[-1] == "imagenet_plus_mrfp"


def test_unknown_row_is_named_before_anything_runs(table2, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        table2.main(
            ["--stl-weights", "x.pth", "--output", str(tmp_path), "--rows", "stl", "imagenet"]
        )
    assert exc.value.code == 2
    assert "'imagenet'" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def test_selected_rows_read_back_as_mean_and_std(table2, tmp_path):
    for seed, (m_ap, top1) in enumerate([(60.0, 70.0), (64.0, 74.0)]):
        row = tmp_path / f"stl_seed{seed}"
        row.mkdir()
        metrics = {"search": {"mAP": m_ap, "top1": top1}, "detection": {"AP": 90.0, "recall": 91.0}}
        (row / "eval_metrics.json").write_text(json.dumps({"metrics": metrics}))
    table = table2.main(
        ["--stl-weights", "x.pth", "--output", str(tmp_path), "--rows", "stl", "--seeds", "0", "1"]
    )
    lines = table.splitlines()
    assert len(lines) == 3  # header, rule, the one selected row
    assert lines[2] == "| Baseline (STL) | 62.0 ± 2.8 | 72.0 ± 2.8 | 90.0 ± 0.0 | 91.0 ± 0.0 |"
    assert (tmp_path / "table2.md").read_text().strip() == table
