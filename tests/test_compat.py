"""stl_search.compat: the launcher follows the requested device (not whether CUDA exists), the
device falls back to the CPU without a GPU, and frozen batch norms have one state-dict layout on
Detectron2 v0.6 and main."""

import logging

import pytest
import torch
from detectron2.layers import FrozenBatchNorm2d
from detectron2.modeling import build_model
from torch import nn

from stl_search import compat
from stl_search.engine import setup as engine_setup
from stl_search.engine.setup import load_config, resolve_device
from stl_search.index.builder import config_of

from .tiny_configs import tiny_person_search_cfg


def _main(*args):
    raise AssertionError("the launcher is replaced in these tests: main_func never runs")


@pytest.fixture
def one_gpu_machine(monkeypatch):
    """CUDA reported available with one device; any real CUDA call would be a test failure."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    calls = {"spawn": [], "d2_launch": []}
    monkeypatch.setattr(
        compat.mp, "spawn", lambda fn, nprocs, args, daemon: calls["spawn"].append((fn, nprocs))
    )
    monkeypatch.setattr(
        compat, "d2_launch", lambda fn, n, *a, **k: calls["d2_launch"].append((fn, n))
    )
    return calls


@pytest.mark.parametrize("device", ["cpu", "cpu:0"])
def test_cpu_processes_use_gloo_although_a_gpu_is_present(one_gpu_machine, device):
    was_initialized = torch.cuda.is_initialized()
    compat.launch(_main, 2, dist_url="auto", device=device)
    assert one_gpu_machine["d2_launch"] == []  # Detectron2's would assert 2 <= 1 GPU, NCCL
    assert one_gpu_machine["spawn"] == [(compat._cpu_worker, 2)]
    assert torch.cuda.is_initialized() == was_initialized


def test_gpu_processes_and_the_default_device_use_detectron2s_launcher(one_gpu_machine):
    compat.launch(_main, 1, device="cuda")
    compat.launch(_main, 2, device="cuda:0", dist_url="tcp://127.0.0.1:1")
    compat.launch(_main, 2, dist_url="tcp://127.0.0.1:1")  # None: CUDA, since it is available
    closing = compat._run_then_close  # closes the process group when _main returns
    assert one_gpu_machine["d2_launch"] == [(_main, 1), (closing, 2), (closing, 2)]
    assert one_gpu_machine["spawn"] == []


def test_cuda_falls_back_to_the_cpu_without_a_gpu_and_says_so(monkeypatch, caplog):
    monkeypatch.setattr(engine_setup, "_FALLBACK_SAID", set())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with caplog.at_level(logging.WARNING, logger="stl_search"):
        assert load_config().MODEL.DEVICE == "cpu"  # Detectron2's default is "cuda"
    assert [r.getMessage() for r in caplog.records] == [
        "MODEL.DEVICE is 'cuda' but torch sees no GPU: running on the CPU"
    ]
    assert resolve_device("cuda:1") == "cpu" and resolve_device("cpu") == "cpu"
    caplog.clear()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert load_config().MODEL.DEVICE == "cuda" and resolve_device("cuda:1") == "cuda:1"
    assert load_config(opts=["MODEL.DEVICE", "cpu"]).MODEL.DEVICE == "cpu"
    assert not caplog.records
    with pytest.raises(ValueError, match="MODEL.DEVICE 'gpu0' is not a torch device"):
        load_config(opts=["MODEL.DEVICE", "gpu0"])


def test_the_fallback_is_said_once_and_only_for_the_device_resolved(monkeypatch, caplog):
    """A stored config (an index's) or an override naming the CPU: no word about the defaults'
    "cuda"; a config loaded twice in one process (train_net.py, index add): said once."""
    monkeypatch.setattr(engine_setup, "_FALLBACK_SAID", set())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    on_cpu = load_config(opts=["MODEL.DEVICE", "cpu"])
    with caplog.at_level(logging.WARNING, logger="stl_search"):
        assert config_of({"config": on_cpu.dump()}).MODEL.DEVICE == "cpu"
        assert not caplog.records
        for _ in range(2):
            assert config_of({"config": load_config().dump()}).MODEL.DEVICE == "cpu"
    assert [r.getMessage() for r in caplog.records] == [
        "MODEL.DEVICE is 'cuda' but torch sees no GPU: running on the CPU"
    ]


def _frozen_layers(module):
    return {n: m for n, m in module.named_modules() if isinstance(m, FrozenBatchNorm2d)}


def test_frozen_batchnorm_counter_dropped_as_on_v0_6():
    """Detectron2 main's ``convert_frozen_batchnorm`` keeps the batch norm's counter; simulated
    here by registering it the same way, so the test checks the shim on v0.6 too."""
    frozen = FrozenBatchNorm2d.convert_frozen_batchnorm(nn.Sequential(nn.BatchNorm2d(4)))
    frozen[0].register_buffer("num_batches_tracked", torch.tensor(3))  # main's layout
    assert "0.num_batches_tracked" in frozen.state_dict()
    assert compat.drop_frozen_batchnorm_counters(frozen) is frozen
    assert set(frozen.state_dict()) == {f"0.{k}" for k in FrozenBatchNorm2d(4).state_dict()}
    assert set(FrozenBatchNorm2d(4).state_dict()) == {
        "weight",
        "bias",
        "running_mean",
        "running_var",
    }
    trainable = nn.BatchNorm2d(4)  # only frozen layers lose the counter
    assert "num_batches_tracked" in compat.drop_frozen_batchnorm_counters(trainable).state_dict()


def test_frozen_backbone_has_no_counters_on_frozen_layers():
    model = build_model(tiny_person_search_cfg(mrfp=False, freeze_at=2))
    frozen = _frozen_layers(model.backbone)
    assert frozen, "FREEZE_AT 2 freezes the stem and res2"
    counters = [k for k in model.state_dict() if k.endswith("num_batches_tracked")]
    assert not [k for k in counters if k.startswith(("backbone.stem.", "backbone.res2."))]
    assert any(k.startswith("backbone.res3.") for k in counters)  # trainable layers keep theirs
