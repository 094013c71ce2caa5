"""The help formatter of every command: descriptions as written, each option's default shown."""

from __future__ import annotations

import argparse
import textwrap

__all__ = ["HelpFormatter"]


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` keeps the line breaks of the description (the module docstrings show commands)
    and ends each option's help with ``(default: ...)``; options without a default (None, an empty
    string, or an off flag) show none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False or action.default == "":
            return action.help
        return super()._get_help_string(action)

    def _split_lines(self, text: str, width: int) -> list:
        """Wrapped at spaces only: a long path in a help text or default stays whole."""
        text = self._whitespace_matcher.sub(" ", text).strip()
        return textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False)
