"""The Table 2 runner: its rows (the row configs), their folders, the table (no training)."""

import importlib.util
import json
import os

import pytest
from detectron2.config import get_cfg

from stl_search.config import add_stl_search_config


@pytest.fixture(scope="module")
def table2(repo_root):
    spec = importlib.util.spec_from_file_location(
        "run_table2", os.path.join(repo_root, "projects", "stl_search", "run_table2.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rows_are_the_row_configs_in_table_order(table2):
    rows = table2.table_rows("synthetic", "stl.pth", "")
    assert [(table2.row_slug(r.name), r.config, r.weights) for r in rows] == [
        ("random_init", "configs/synthetic/random_init.yaml", ""),
        ("stl", "configs/synthetic/stl.yaml", "stl.pth"),
        ("stl_plus_mrfp", "configs/synthetic/stl_mrfp.yaml", "stl.pth"),
        ("random_init_plus_mrfp", "configs/synthetic/random_init_mrfp.yaml", ""),
    ]
    prw = table2.table_rows("prw", "stl.pth", "in.pth")
    assert [table2.row_slug(r.name) for r in prw] == [
        "random_init",
        "imagenet",
        "stl",
        "stl_plus_mrfp",
        "random_init_plus_mrfp",
        "imagenet_plus_mrfp",
    ]
    assert [r.weights for r in prw if "ImageNet" in r.name] == ["in.pth", "in.pth"]
    assert not any("ImageNet" in r.name for r in table2.table_rows("prw", "stl.pth", ""))


@pytest.mark.parametrize("dataset", ["synthetic", "prw", "cuhk_sysu"])
def test_each_row_config_sets_the_mrfp_and_initialisation_its_name_says(table2, dataset):
    for row in table2.table_rows(dataset, "stl.pth", "in.pth"):
        cfg = add_stl_search_config(get_cfg())
        cfg.merge_from_file(os.path.join(table2.REPO, row.config), allow_unsafe=False)
        assert cfg.MODEL.MRFP.ENABLED == row.name.endswith("+ MRFP"), row
        assert (cfg.MODEL.WEIGHTS == "") == ("random init" in row.name), row


def test_two_configs_for_one_row_are_refused(table2, tmp_path, monkeypatch):
    for name in ("a", "b"):
        (tmp_path / f"{name}.yaml").write_text('# Table 2, row 3, "Baseline (STL)".\n')
    monkeypatch.setattr(table2, "REPO", str(tmp_path))
    with pytest.raises(ValueError, match="row"):
        table2.row_configs(".")


def test_imagenet_weights_without_imagenet_rows_are_refused(table2, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        table2.main(
            ["--stl-weights", "x.pth", "--output", str(tmp_path), "--imagenet-weights", "i"]
        )
    assert exc.value.code == 2
    assert "no ImageNet row" in capsys.readouterr().err


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
