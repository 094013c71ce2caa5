"""The only module that knows Detectron2 v0.6 from current main.

Both report ``detectron2.__version__ == "0.6"``, so differences are feature-detected here and
nowhere else:

- ``launch``: both pick NCCL and assert one GPU per process whenever CUDA is available (v0.6
  even without one), whatever device the job asks for. :func:`launch` follows the requested
  device instead: Detectron2's launcher for GPU processes, an equivalent gloo launcher for CPU
  processes. Neither version closes the process group when ``main_func`` returns;
  :func:`launch` does, in every process it starts.
- ``create_ddp_model``: both pass ``device_ids=[local_rank]``, which DDP rejects for CPU modules;
  ``DefaultTrainer.__init__`` calls it (both versions): :func:`cpu_ddp_in_default_trainer`.
- ``SimpleTrainer`` data iterator: v0.6 creates it in ``__init__``, main lazily.
- ``FrozenBatchNorm2d.convert_frozen_batchnorm``: main copies the ``num_batches_tracked`` counter
  of the converted batch norm into the frozen layer's state dict, v0.6 does not.
  :func:`drop_frozen_batchnorm_counters` gives both v0.6's layout (a frozen layer counts nothing).
"""

from __future__ import annotations

import contextlib
import logging
from datetime import timedelta
from typing import Any, Callable, Iterator, Optional, Sequence

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.engine import defaults as d2_defaults
from detectron2.engine import launch as d2_launch
from detectron2.engine.launch import _find_free_port
from detectron2.engine.train_loop import SimpleTrainer
from detectron2.layers import FrozenBatchNorm2d
from detectron2.utils import comm
from torch.nn.parallel import DistributedDataParallel

DEFAULT_TIMEOUT = timedelta(minutes=30)


def launch(
    main_func: Callable,
    num_gpus_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: Optional[str] = None,
    args: Sequence[Any] = (),
    timeout: timedelta = DEFAULT_TIMEOUT,
    device: Optional[str] = None,
) -> None:
    """Detectron2's ``launch``, also for CPU processes (gloo), with or without a GPU present.

    Args:
        num_gpus_per_machine: processes per machine: GPUs, or CPU processes when ``device`` is
            the CPU.
        device: where the processes compute, as ``MODEL.DEVICE`` names it (``"cpu"``,
            ``"cuda"``, ``"cuda:0"``); None: CUDA when it is available, else the CPU. One
            process, or GPU processes, run through Detectron2's launcher; several CPU processes
            through a gloo launcher that never touches CUDA.
        Other arguments: as Detectron2's ``launch``.

    With more than one process, each runs ``main_func`` through :func:`_run_then_close`.
    """
    world_size = num_machines * num_gpus_per_machine
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if world_size > 1:
        main_func, args = _run_then_close, (main_func, *args)
    if world_size <= 1 or torch.device(device).type == "cuda":
        d2_launch(
            main_func,
            num_gpus_per_machine,
            num_machines,
            machine_rank,
            dist_url,
            args=tuple(args),
            timeout=timeout,
        )
        return
    if dist_url == "auto":
        if num_machines != 1:
            raise ValueError("dist_url=auto is not supported in multi-machine jobs")
        dist_url = f"tcp://127.0.0.1:{_find_free_port()}"
    mp.spawn(
        _cpu_worker,
        nprocs=num_gpus_per_machine,
        args=(
            main_func,
            world_size,
            num_gpus_per_machine,
            machine_rank,
            dist_url,
            tuple(args),
            timeout,
        ),
        daemon=False,
    )


def _cpu_worker(
    local_rank: int,
    main_func: Callable,
    world_size: int,
    num_per_machine: int,
    machine_rank: int,
    dist_url: str,
    args: tuple,
    timeout: timedelta,
) -> None:
    global_rank = machine_rank * num_per_machine + local_rank
    try:
        dist.init_process_group(
            backend="gloo",
            init_method=dist_url,
            world_size=world_size,
            rank=global_rank,
            timeout=timeout,
        )
    except Exception:
        logging.getLogger(__name__).error("Process group URL: %s", dist_url)
        raise
    num_machines = world_size // num_per_machine
    for i in range(num_machines):
        ranks = list(range(i * num_per_machine, (i + 1) * num_per_machine))
        group = dist.new_group(ranks)
        if i == machine_rank:
            comm._LOCAL_PROCESS_GROUP = group
    comm.synchronize()
    main_func(*args)


def _run_then_close(main_func: Callable, *args: Any) -> None:
    """``main_func(*args)``, then a barrier, then the process group destroyed (also on error).

    A process that exits with its process group alive leaves the group's C++ threads to the
    interpreter's shutdown: a gloo process can then abort ("terminate called without an active
    exception", SIGABRT) although its work is done. The barrier keeps every process's group alive
    until all have finished; without it a fast process would close its connections while its
    peers still talk to it. After an error there is no barrier (the peers may never reach it).
    """
    try:
        main_func(*args)
        comm.synchronize()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
        comm._LOCAL_PROCESS_GROUP = None


def create_ddp_model(model: torch.nn.Module, **kwargs: Any) -> torch.nn.Module:
    """Wrap ``model`` in DDP when more than one process runs; CPU models get ``device_ids=None``."""
    if comm.get_world_size() == 1:
        return model
    on_cuda = next(model.parameters()).is_cuda
    device_ids = [comm.get_local_rank()] if on_cuda else None
    return DistributedDataParallel(model, device_ids=device_ids, **kwargs)


@contextlib.contextmanager
def cpu_ddp_in_default_trainer() -> Iterator[None]:
    """While open, ``DefaultTrainer.__init__`` wraps the model with :func:`create_ddp_model`.

    Detectron2 (v0.6 and main) calls its own ``create_ddp_model(model, broadcast_buffers=False)``
    from ``DefaultTrainer.__init__``; it passes ``device_ids=[local_rank]``, which DDP rejects
    for a CPU model. The two agree on CUDA models.
    """
    original = d2_defaults.create_ddp_model
    d2_defaults.create_ddp_model = create_ddp_model
    try:
        yield
    finally:
        d2_defaults.create_ddp_model = original


def replace_trainer_data_loader(trainer: SimpleTrainer, data_loader: Any) -> None:
    """Swap the data loader of a ``SimpleTrainer`` (v0.6 builds its iterator eagerly, main
    lazily)."""
    trainer.data_loader = data_loader
    if hasattr(trainer, "_data_loader_iter_obj"):
        trainer._data_loader_iter_obj = None
    else:
        trainer._data_loader_iter = iter(data_loader)


def drop_frozen_batchnorm_counters(module: torch.nn.Module) -> torch.nn.Module:
    """Drop ``num_batches_tracked`` from the state dict of every ``FrozenBatchNorm2d`` (in place).

    On Detectron2 main, layers frozen by ``convert_frozen_batchnorm`` (``FREEZE_AT > 0``) keep
    the counter of the batch norm they replace; v0.6's never have one, nor do frozen layers built
    directly (``norm="FrozenBN"``) or the STL export. A frozen layer never reads it.

    Returns:
        ``module``.
    """
    for layer in module.modules():
        if isinstance(layer, FrozenBatchNorm2d) and "num_batches_tracked" in layer._buffers:
            layer.num_batches_tracked = None  # a None buffer is left out of the state dict
    return module
