"""Progress of a long step: count, rate and ETA, on one redrawn line on a terminal and as a plain
log line every ``interval`` seconds otherwise (a log file or CI gets no carriage returns).

    progress = Progress(len(images), "gallery images", quiet=args.quiet)
    for batch in batches:
        ...
        progress.update(len(batch))
    progress.close()
"""

from __future__ import annotations

import logging
import sys
import time
from typing import IO, Optional

__all__ = ["Progress", "format_eta"]

logger = logging.getLogger("stl_search.progress")


def format_eta(seconds: float) -> str:
    """``1h02m``, ``3m05s`` or ``12s``; ``?`` when unknown."""
    if not seconds >= 0 or seconds == float("inf"):
        return "?"
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class Progress:
    """Counts ``total`` units of work named ``what``.

    Args:
        stream: where a terminal line is drawn (default stderr); when it is not a terminal,
            ``logger.info`` gets a line every ``interval`` seconds instead.
        quiet: nothing at all.
    """

    def __init__(
        self,
        total: int,
        what: str,
        quiet: bool = False,
        interval: float = 10.0,
        stream: Optional[IO] = None,
        clock=time.monotonic,
    ):
        self.total, self.what, self.quiet, self.interval = int(total), what, quiet, interval
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.clock = clock
        self.start = self.last = clock()
        self.done = 0

    def line(self) -> str:
        """``what: done/total (pct), rate/s, ETA``."""
        elapsed = max(self.clock() - self.start, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        pct = 100.0 * self.done / self.total if self.total else 100.0
        return (
            f"{self.what}: {self.done}/{self.total} ({pct:.0f}%), {rate:.2f}/s, "
            f"ETA {format_eta(eta)}"
        )

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.quiet:
            return
        now = self.clock()
        if self.tty:
            if now - self.last >= 0.2 or self.done >= self.total:
                self.stream.write("\r" + self.line() + " " * 4)
                self.stream.flush()
                self.last = now
        elif now - self.last >= self.interval:
            logger.info(self.line())
            self.last = now

    def close(self) -> None:
        """The final count (a newline on a terminal, one log line otherwise)."""
        if self.quiet:
            return
        elapsed = self.clock() - self.start
        text = f"{self.what}: {self.done}/{self.total} in {format_eta(elapsed)}"
        if self.tty:
            self.stream.write("\r" + text + " " * 30 + "\n")
            self.stream.flush()
        else:
            logger.info(text)
