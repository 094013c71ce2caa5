"""Timing and peak memory of one call, on the CPU or CUDA: the measuring tools the benchmarks
share (``inference_speed.py``, ``export_speed.py``, ``roi_align_speed.py``).

Wall time is what a user waits; process CPU time (all threads) is returned beside it because it
is less sensitive to other processes taking the cores. On CUDA every measurement synchronises
before and after the call. Rows compared with each other are timed in *interleaved* rounds
(:func:`interleaved`), so that a change of load hits them alike.
"""

from __future__ import annotations

import resource
import time
from typing import Callable, Dict, List, Tuple

import torch
from torch.utils.flop_counter import FlopCounterMode

__all__ = [
    "gmacs",
    "interleaved",
    "measure",
    "parse_size",
    "peak_mib",
    "peak_of",
    "reset_peak",
    "sync",
]


def parse_size(s: str) -> Tuple[int, int]:
    """``"960x640"`` (WIDTHxHEIGHT) as ``(960, 640)``."""
    w, h = s.lower().split("x")
    return int(w), int(h)


def sync(device: str) -> None:
    """Wait for the device's queued work (CUDA); nothing on the CPU."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        return
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_mib(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(fn: Callable[[], object], device: str) -> Tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    sync(device)
    w, c = time.perf_counter(), time.process_time()
    fn()
    sync(device)
    return time.perf_counter() - w, time.process_time() - c


def interleaved(fns: Dict[str, Callable[[], object]], device: str, warmup: int, rounds: int):
    """Per-key lists of (wall, cpu) from ``rounds`` rounds that run every fn once, order rotated."""
    keys = list(fns)
    out: Dict[str, List[Tuple[float, float]]] = {k: [] for k in keys}
    with torch.no_grad():
        for k in keys:
            for _ in range(warmup):
                fns[k]()
        for r in range(rounds):
            order = keys[r % len(keys) :] + keys[: r % len(keys)]
            for k in order:
                out[k].append(measure(fns[k], device))
    return out


def gmacs(fn: Callable[[], object]) -> float:
    """Multiply-accumulates (10^9) of one call, as counted by ``torch.utils.flop_counter``."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 2e9


def peak_of(fn: Callable[[], object], device: str) -> float:
    reset_peak(device)
    with torch.no_grad():
        fn()
    return peak_mib(device)
