"""Config files are data: a ``!!python/...`` YAML tag, in a file or in a ``_BASE_`` file, is
refused with an error naming that file, and its command never runs; every shipped YAML still
loads (Detectron2's ``_BASE_`` handling with ``allow_unsafe=False``); a LazyConfig ``.py`` file is
refused as a YAML config; no ``merge_from_file`` call in the repository reads YAML unsafely."""

import glob
import os
import re
import subprocess
import sys

import pytest
from detectron2.config import get_cfg

from stl_search.config import add_stl_search_config
from stl_search.engine.setup import load_config
from stl_search.engine.trainer import check_lr_steps
from stl_search.utils.yaml_config import ConfigFileError, UnsafeConfigError, merge_yaml_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tagged_configs(tmp_path):
    """``evil.yaml`` whose tag would create ``marker``, and ``child.yaml`` with it as _BASE_."""
    marker = tmp_path / "marker"
    evil = tmp_path / "evil.yaml"
    evil.write_text(
        f"SEED: !!python/object/apply:os.system [\"touch '{marker}'\"]\nMODEL:\n  DEVICE: cpu\n"
    )
    child = tmp_path / "child.yaml"
    child.write_text("_BASE_: evil.yaml\nSOLVER:\n  MAX_ITER: 3\n")
    return str(marker), str(evil), str(child)


@pytest.mark.parametrize("via_base", [False, True])
def test_a_python_tag_is_refused_naming_the_file_and_nothing_runs(tmp_path, via_base):
    marker, evil, child = _tagged_configs(tmp_path)
    with pytest.raises(UnsafeConfigError) as error:
        load_config(child if via_base else evil)
    assert not os.path.exists(marker)
    message = str(error.value)
    assert f"{evil}, line 1" in message and "python/object/apply:os.system" in message
    assert (f"a _BASE_ of {child}" in message) == via_base


def test_train_net_refuses_a_tagged_base_config_and_runs_nothing(tmp_path):
    marker, evil, child = _tagged_configs(tmp_path)
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "train_net.py"), "--config-file", child],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert proc.returncode != 0
    assert not os.path.exists(marker)
    assert f"UnsafeConfigError: {evil}, line 1" in proc.stderr
    assert "unsafe_load" not in proc.stderr  # fvcore's fallback never ran


def test_every_shipped_yaml_config_loads():
    paths = sorted(glob.glob(os.path.join(REPO, "configs", "**", "*.yaml"), recursive=True))
    assert len(paths) >= 30
    for path in paths:
        cfg = add_stl_search_config(get_cfg())
        merge_yaml_config(cfg, path)  # _BASE_ files included, allow_unsafe=False
        check_lr_steps(cfg)  # each learning-rate drop before the last iteration
    cfg = load_config(os.path.join(REPO, "configs", "PRW", "stl_mrfp.yaml"))
    assert cfg.MODEL.MRFP.ENABLED and cfg.MODEL.META_ARCHITECTURE == "PersonSearchRCNN"


def test_a_lazy_config_or_broken_yaml_is_refused_naming_the_file(tmp_path):
    lazy = os.path.join(REPO, "configs", "lazy", "mrfp_synthetic.py")
    with pytest.raises(ConfigFileError, match=re.escape(lazy) + ".*Python file.*LazyConfig"):
        load_config(lazy)
    broken = tmp_path / "broken.yaml"
    broken.write_text("MODEL: [unclosed\n")
    with pytest.raises(ConfigFileError, match=re.escape(str(broken)) + ", line 2"):
        load_config(str(broken))
    a_list = tmp_path / "list.yaml"
    a_list.write_text("- MODEL\n")
    with pytest.raises(ConfigFileError, match=re.escape(str(a_list)) + ".*not a YAML mapping"):
        load_config(str(a_list))


def test_no_merge_from_file_call_reads_yaml_unsafely():
    """Every ``merge_from_file(`` call in the repository passes ``allow_unsafe=False``."""
    calls = []
    for folder in ("stl_search", "projects", "examples", "benchmarks", "tests", "."):
        pattern = "*.py" if folder == "." else os.path.join("**", "*.py")
        for path in glob.glob(os.path.join(REPO, folder, pattern), recursive=True):
            if ".venv" in path:
                continue
            with open(path) as f:
                calls += [(path, m) for m in re.findall(r"merge_from_file\((.*)\)", f.read())]
    assert calls
    unsafe = [(p, args) for p, args in calls if "allow_unsafe=False" not in args]
    assert not unsafe, unsafe
