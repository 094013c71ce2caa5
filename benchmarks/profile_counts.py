"""What one call costs the host and the GPU beyond its seconds: operator calls, host reads,
kernel and CUDA-graph launches, synchronisations and the GPU-busy share, from ``torch.profiler``.

At batch 1 the host is the bottleneck of an R-CNN: every kernel launch costs host time, and every
read of a device value (``.item()``, ``nonzero``, a tensor's truth value) stalls the host until
the GPU has caught up. :func:`profile_counts` profiles one call and returns:

- ``top_level_ops``: operator calls the Python code makes (``aten::`` / ``torchvision::`` events
  without an operator parent), ``host_reads``: ``_local_scalar_dense``, ``nonzero`` and
  ``is_nonzero`` calls; both device-independent (the CPU proxy of
  ``tests/modeling/test_inference_op_count.py``);
- on CUDA also ``kernel_launches`` (``cudaLaunchKernel`` and its variants), ``graph_launches``
  (``cudaGraphLaunch``: a captured CUDA graph replayed as one call), ``syncs``
  (``cudaStreamSynchronize``, ``cudaDeviceSynchronize``, ``cudaEventSynchronize``; less the
  one that ends the profiled call),
  ``memcpy_calls`` (``cudaMemcpy`` / ``cudaMemcpyAsync``, either direction), ``kernels``
  (device-side kernel events) and ``gpu_busy_share``: the union of the kernels' time intervals
  over the profiled call's wall time.

The CUDA part depends on which events the installed torch's profiler reports; if reading them
fails, the error is returned under ``cuda_error`` instead of failing the benchmark.
"""

from __future__ import annotations

import time
from typing import Callable, Dict, List, Tuple

import torch
from torch.profiler import ProfilerActivity, profile

__all__ = ["profile_counts"]

HOST_READS = ("aten::_local_scalar_dense", "aten::nonzero", "aten::is_nonzero")
LAUNCHES = ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernelEx")
SYNCS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")
MEMCPY = ("cudaMemcpy", "cudaMemcpyAsync")


def _is_op(event) -> bool:
    return event.name.startswith(("aten::", "torchvision::"))


def _union_us(intervals: List[Tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def _cuda_counts(events, wall_us: float) -> Dict:
    names = [e.name for e in events]
    kernels = [
        e
        for e in events
        if e.device_type == torch.autograd.DeviceType.CUDA
        and not e.name.startswith(("Memcpy", "Memset"))
    ]
    busy = _union_us([(e.time_range.start, e.time_range.end) for e in kernels])
    return {
        "kernel_launches": sum(names.count(n) for n in LAUNCHES),
        "graph_launches": names.count("cudaGraphLaunch"),
        "syncs": sum(names.count(n) for n in SYNCS) - 1,
        "memcpy_calls": sum(names.count(n) for n in MEMCPY),
        "kernels": len(kernels),
        "gpu_busy_share": busy / wall_us if wall_us > 0 else float("nan"),
    }


def profile_counts(fn: Callable[[], object], device: str) -> Dict:
    """Profile one call of ``fn`` (already warmed up) on ``device``; see the module docstring."""
    cuda = device.startswith("cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    if cuda:
        torch.cuda.synchronize()
    with torch.no_grad(), profile(activities=activities) as prof:
        start = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()  # the call ends when its kernels have: one sync, not counted
        wall_us = (time.perf_counter() - start) * 1e6
    events = prof.events()
    ops = [e for e in events if _is_op(e)]
    out = {
        "top_level_ops": sum(1 for e in ops if e.cpu_parent is None or not _is_op(e.cpu_parent)),
        "host_reads": sum(1 for e in ops if e.name in HOST_READS),
        "wall_ms": wall_us / 1e3,
    }
    if cuda:
        try:
            out.update(_cuda_counts(events, wall_us))
        except Exception as e:  # noqa: BLE001  (a profiler API difference must not fail the run)
            out["cuda_error"] = f"{type(e).__name__}: {e}"
    return out
