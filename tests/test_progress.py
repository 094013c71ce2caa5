"""Progress lines: rate and ETA redrawn on a terminal, a periodic log line otherwise, nothing
when quiet."""

from __future__ import annotations

import io
import logging

from stl_search.utils.progress import Progress, format_eta


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_terminal_line_has_rate_and_eta():
    clock, stream = _Clock(), _Terminal()
    progress = Progress(100, "images", stream=stream, clock=clock)
    clock.now = 10.0
    progress.update(25)
    assert "\rimages: 25/100 (25%), 2.50/s, ETA 30s" in stream.getvalue()
    clock.now = 40.0
    progress.update(75)
    progress.close()
    assert stream.getvalue().endswith("\n") and "images: 100/100 in 40s" in stream.getvalue()


def test_log_lines_every_interval_when_not_a_terminal(caplog):
    clock, stream = _Clock(), io.StringIO()
    progress = Progress(1000, "boxes", interval=10.0, stream=stream, clock=clock)
    with caplog.at_level(logging.INFO, logger="stl_search.progress"):
        for second in range(1, 31):
            clock.now = float(second)
            progress.update(10)
        progress.close()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "boxes: 100/1000 (10%), 10.00/s, ETA 1m30s"
    assert len(lines) == 4 and lines[-1] == "boxes: 300/1000 in 30s"
    assert stream.getvalue() == ""  # no carriage returns in a log


def test_quiet_prints_nothing(caplog):
    stream = _Terminal()
    progress = Progress(3, "x", quiet=True, stream=stream, interval=0)
    with caplog.at_level(logging.INFO, logger="stl_search.progress"):
        progress.update(3)
        progress.close()
    assert stream.getvalue() == "" and not caplog.records
    assert format_eta(3725) == "1h02m" and format_eta(float("inf")) == "?"
