"""Weights files: none runs code when loaded, whatever its name or the path that loads it;
``last_checkpoint`` names only files inside OUTPUT_DIR; ``--resume`` falls back to the newest
complete checkpoint when the last one is truncated."""

import logging
import os
import pickle
import subprocess
import sys
from collections import OrderedDict

import numpy as np
import pytest
import torch

from stl_search.engine.model import classifier_size_in_weights
from stl_search.reid.stl_init import load_model_state_dict
from stl_search.tools.convert_imagenet import main as convert_main
from stl_search.tools.visualize_features import load_base_nets
from stl_search.utils.checkpoint import (
    AtomicCheckpointer,
    UnreadableWeightsError,
    newest_complete_checkpoint,
    read_weights_file,
)
from stl_search.utils.safe_pickle import ForbiddenPickleGlobal, safe_pickle_load

from ..tiny_configs import tiny_person_search_cfg
from .helpers import evil_files


@pytest.mark.parametrize("ext", ["pkl", "pth", "pt"])
def test_a_weights_file_with_code_is_refused_and_its_code_never_runs(tmp_path, ext):
    marker, files = evil_files(tmp_path)
    model = torch.nn.Linear(3, 2)
    with pytest.raises(pickle.UnpicklingError) as error:
        AtomicCheckpointer(model).resume_or_load(files[ext], resume=False)
    assert files[ext] in str(error.value)
    if ext == "pkl":  # the forbidden global is named
        assert "io.open" in str(error.value) or "builtins.open" in str(error.value)
    assert not os.path.exists(marker)


def test_last_checkpoint_may_name_only_a_file_inside_output_dir(tmp_path):
    marker, files = evil_files(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    model = torch.nn.Linear(3, 2)
    for name in (files["pkl"], "../evil.pkl"):
        (out / "last_checkpoint").write_text(name)
        with pytest.raises(ValueError, match="may only name a checkpoint file inside"):
            AtomicCheckpointer(model, save_dir=str(out)).resume_or_load("", resume=True)
    assert not os.path.exists(marker)


def test_every_other_load_path_refuses_code(tmp_path):
    marker, files = evil_files(tmp_path)
    for path in files.values():
        with pytest.raises(pickle.UnpicklingError):
            load_model_state_dict(path)  # STL export CLI
        with pytest.raises(pickle.UnpicklingError):
            classifier_size_in_weights(path)  # inference model sizing (--eval-only, search)
        with pytest.raises(pickle.UnpicklingError):
            convert_main([path, str(tmp_path / "converted.pth")])  # ImageNet conversion
        with pytest.raises(pickle.UnpicklingError):
            load_base_nets(tiny_person_search_cfg(), path, ["res2"])  # Fig. 6 tool
    assert not os.path.exists(marker)


def test_model_zoo_pickles_of_numpy_arrays_still_load(tmp_path):
    weight = np.arange(6, dtype=np.float32).reshape(2, 3)
    bias = np.array([0.5, -1.0], dtype=np.float32)
    # Detectron2 model-zoo format (protocol 2, as the released files), exact key names.
    with open(tmp_path / "d2.pkl", "wb") as f:
        pickle.dump(
            {"model": OrderedDict(weight=weight, bias=bias), "__author__": "zoo", "n": 1}, f, 2
        )
    model = torch.nn.Linear(3, 2)
    AtomicCheckpointer(model).resume_or_load(str(tmp_path / "d2.pkl"), resume=False)
    assert torch.equal(model.weight.detach(), torch.from_numpy(weight))
    assert torch.equal(model.bias.detach(), torch.from_numpy(bias))
    # NumPy scalars, dtypes and protocol-5 buffers are plain data too.
    data = {"a": np.float32(2.5), "d": np.dtype("int64"), "x": np.zeros(3), "l": [1, (2.0, "s")]}
    with open(tmp_path / "plain.pkl", "wb") as f:
        pickle.dump(data, f, protocol=5)
    loaded = safe_pickle_load(str(tmp_path / "plain.pkl"))
    assert (
        loaded["a"] == 2.5 and loaded["d"] == np.dtype("int64") and loaded["l"] == [1, (2.0, "s")]
    )
    # Anything else is refused, naming the file and the global (here: a pickled torch tensor).
    with open(tmp_path / "tensor.pkl", "wb") as f:
        pickle.dump({"w": torch.ones(1)}, f)
    with pytest.raises(ForbiddenPickleGlobal, match="tensor.pkl: .*torch._utils"):
        safe_pickle_load(str(tmp_path / "tensor.pkl"))


def test_the_malicious_pickle_test_can_fail(tmp_path):
    """What the tests above guard against: plain unpickling (Detectron2's ``.pkl`` loader) runs
    the payload (in a child process)."""
    marker, files = evil_files(tmp_path)
    code = f"import pickle; pickle.load(open({files['pkl']!r}, 'rb'))"
    subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), check=False)
    assert os.path.exists(marker)


def _save(ckpt, name, iteration):
    ckpt.save(name, iteration=iteration)


def test_resume_falls_back_to_the_newest_complete_checkpoint(tmp_path, caplog):
    model = torch.nn.Linear(3, 2)
    ckpt = AtomicCheckpointer(model, save_dir=str(tmp_path))
    for it in (0, 1):
        with torch.no_grad():
            model.weight.fill_(it)
        _save(ckpt, f"model_{it:07d}", it)
    with torch.no_grad():
        model.weight.fill_(2)
    _save(ckpt, "model_final", 2)
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"
    final = tmp_path / "model_final.pth"
    final.write_bytes(final.read_bytes()[: final.stat().st_size // 2])  # truncated

    other = torch.nn.Linear(3, 2)
    with caplog.at_level(logging.WARNING):
        loaded = AtomicCheckpointer(other, save_dir=str(tmp_path)).resume_or_load("", resume=True)
    assert loaded["iteration"] == 1 and torch.all(other.weight == 1)
    assert "newest complete checkpoint" in caplog.text and "model_0000001.pth" in caplog.text
    # The pointer now names what the run continues from, not the damaged file.
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"
    final.write_bytes(b"")  # still damaged: the pointer must not lead back to it

    # Nothing complete left: a clear error, not a zip-archive traceback.
    for name in ("model_0000000.pth", "model_0000001.pth"):
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="no other complete checkpoint"):
        newest_complete_checkpoint(str(tmp_path))


@pytest.mark.parametrize("ext", ["pth", "pkl"])
def test_an_empty_or_text_weights_file_is_named_as_such(tmp_path, ext):
    """Not ``KeyError: 101`` / ``EOFError`` / "Memo value not found": the file and what it is."""
    model = torch.nn.Linear(3, 2)
    empty = tmp_path / f"empty.{ext}"
    empty.write_bytes(b"")
    text = tmp_path / f"page.{ext}"
    text.write_text("<html>404 Not Found</html>\n")
    with pytest.raises(UnreadableWeightsError, match=f"{empty}: empty \\(0 bytes\\)"):
        AtomicCheckpointer(model).resume_or_load(str(empty), resume=False)
    with pytest.raises(UnreadableWeightsError, match=f"{text}: not a readable"):
        AtomicCheckpointer(model).resume_or_load(str(text), resume=False)


def test_code_refusal_names_the_global_without_torchs_unsafe_advice(tmp_path):
    marker, files = evil_files(tmp_path)
    with pytest.raises(pickle.UnpicklingError) as error:
        read_weights_file(files["pth"])
    message = str(error.value)
    assert (
        message.startswith(f"{files['pth']}: refused to load") and "Unsupported global" in message
    )
    assert "weights_only=False" not in message and "weights_only` set to `False" not in message
    assert not os.path.exists(marker)
