"""An export folder is written whole or not at all, and its graphs are checked at load."""

from __future__ import annotations

import errno
import os
import shutil

import onnxruntime
import pytest
import torch
from detectron2.modeling import build_model

from stl_search.export import ExportedPersonSearch, export_person_search
from stl_search.export import exporter as exporter_module
from stl_search.utils.io import atomic_open as atomic_open

from .helpers import tiny_export_cfg


def _files(folder):
    names = sorted(os.listdir(folder))
    return {n: open(os.path.join(folder, n), "rb").read() for n in names}


def test_a_killed_export_leaves_the_previous_export_whole(exported, tmp_path, monkeypatch):
    cfg, _, export_a = exported(False, "torchscript")
    out = tmp_path / "export"
    shutil.copytree(export_a, out)
    torch.manual_seed(1)
    model_b = build_model(tiny_export_cfg(False)).eval()
    write_graph = exporter_module._write_graph

    def killed_at_the_query_graph(graph, args, fmt, name, path):
        if name == "query":
            raise KeyboardInterrupt  # the gallery graph of B is written by now
        write_graph(graph, args, fmt, name, path)

    monkeypatch.setattr(exporter_module, "_write_graph", killed_at_the_query_graph)
    with pytest.raises(KeyboardInterrupt):
        export_person_search(model_b, cfg, str(out), "torchscript")
    assert _files(out) == _files(export_a)  # all of A, nothing of B
    assert os.listdir(tmp_path) == ["export"]  # no staging folder left behind
    ExportedPersonSearch(str(out))

    monkeypatch.setattr(exporter_module, "_write_graph", write_graph)
    export_person_search(model_b, cfg, str(out), "torchscript")  # replaces A whole
    assert _files(out)["gallery.ts"] != _files(export_a)["gallery.ts"]
    assert sorted(os.listdir(tmp_path)) == ["export"]
    ExportedPersonSearch(str(out))


def test_a_graph_of_another_export_is_refused_at_load(exported, tmp_path):
    _, _, export_a = exported(False, "torchscript")
    _, _, export_b = exported(True, "torchscript")
    mixed = tmp_path / "mixed"
    shutil.copytree(export_a, mixed)
    shutil.copy(os.path.join(export_b, "gallery.ts"), mixed / "gallery.ts")
    with pytest.raises(ValueError, match=r"gallery\.ts is not the gallery graph that export\.json"):
        ExportedPersonSearch(str(mixed))
    os.remove(mixed / "query.ts")
    shutil.copy(os.path.join(export_a, "gallery.ts"), mixed / "gallery.ts")
    with pytest.raises(ValueError, match=r"query\.ts is not the query graph .*missing file"):
        ExportedPersonSearch(str(mixed))


def test_export_refuses_a_folder_holding_other_files(exported, tmp_path):
    cfg, model, _ = exported(False, "torchscript")
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="notes.txt"):
        export_person_search(model, cfg, str(tmp_path), "torchscript")
    assert os.listdir(tmp_path) == ["notes.txt"]


def test_a_failed_export_names_its_out_folder_not_the_staging_one(exported, tmp_path, monkeypatch):
    cfg, model, export_a = exported(False, "torchscript")
    out = "/proc/stl-search-export"  # no folder can be made there
    with pytest.raises(OSError, match=f"^\\[Errno \\d+\\] cannot write {out}: ") as caught:
        export_person_search(model, cfg, out, "torchscript")
    assert ".partial-" not in str(caught.value)

    target = tmp_path / "export"  # a full disk while a graph is written
    shutil.copytree(export_a, target)

    def disk_full(graph, args, fmt, name, path):
        with atomic_open(path, "wb") as f:
            f.write(b"x")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(exporter_module, "_write_graph", disk_full)
    with pytest.raises(OSError) as caught:
        export_person_search(model, cfg, str(target), "torchscript")
    assert str(caught.value) == (
        f"[Errno {errno.ENOSPC}] cannot write {target}: the disk is full (no space left on device)"
    )
    assert _files(target) == _files(export_a)
    assert os.listdir(tmp_path) == ["export"]


def test_an_onnxruntime_provider_is_chosen_and_a_missing_one_is_named(exported):
    """The providers run the graphs in order of preference; one this onnxruntime build lacks
    (the CUDA one, on a CPU wheel) is refused by name, with the ones it has."""
    _, _, out = exported(True, "onnx")
    runtime = ExportedPersonSearch(out, providers=["CPUExecutionProvider"])
    assert runtime._gallery.session.get_providers() == ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    with pytest.raises(ValueError, match="has no CUDAExecutionProvider .*available: .*CPU"):
        ExportedPersonSearch(out, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
