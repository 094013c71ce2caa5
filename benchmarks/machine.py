"""The machine a benchmark ran on: every figure is reported with it."""

from __future__ import annotations

import os
import platform


def cpu_name() -> str:
    """CPU model name from /proc/cpuinfo (or the platform's processor string)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(
                line.split(":", 1)[1].strip() for line in f if line.startswith("model name")
            )
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def cpu_line() -> str:
    """``<cpu model>, <n> cores``."""
    return f"{cpu_name()}, {os.cpu_count()} cores"
