"""Every command's ``--help`` gives each option a meaning and its default, and no command prints
library warnings a user cannot act on (importing it, or the model's first forward).

The commands run in one fresh Python process (warnings are printed once per process, and torch's
``meshgrid`` one once per process at the first forward): :func:`probe` runs each with ``--help``,
stopping at its parser (``parse_known_args``), and prints what it found as JSON."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import runpy
import subprocess
import sys
import warnings

import pytest

from tests.helpers import python_m_modules, scripts

MODULES = python_m_modules()
SCRIPTS = scripts()


class _Parsed(Exception):
    def __init__(self, parser: argparse.ArgumentParser):
        self.parser = parser


def _stop_at_parse(self, args=None, namespace=None):
    raise _Parsed(self)


def _problems(parser: argparse.ArgumentParser, name: str) -> list:
    """Options without help text, and defaults the rendered help does not show."""
    found = []
    shown = " ".join(parser.format_help().split())
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        option = "/".join(action.option_strings) or action.dest
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                found += _problems(sub, f"{name} {sub_name}")
            continue
        if not action.help or action.help == argparse.SUPPRESS:
            found.append(f"{name} {option}: no help text")
        default = action.default
        shows_none = default is None or default is False or default in ("", argparse.SUPPRESS)
        if not shows_none and f"default: {default}" not in shown:
            found.append(f"{name} {option}: default {default!r} not shown")
    return found


def probe() -> None:
    """Run every command with ``--help`` up to its parser, then one forward of a tiny model."""
    argparse.ArgumentParser.parse_known_args = _stop_at_parse
    # An artefact of running many commands in one process (the real command imports it once).
    warnings.filterwarnings("ignore", message=".* found in sys.modules after import of package")
    report = {}
    for name, run in [(m, runpy.run_module) for m in MODULES] + [
        (s, runpy.run_path) for s in SCRIPTS
    ]:
        sys.argv = [name, "--help"]
        sys.path.insert(0, os.path.dirname(os.path.abspath(name)))  # as for `python SCRIPT`
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                run(name, run_name="__main__")
        except _Parsed as parsed:
            report[name] = _problems(parsed.parser, name)
        else:
            report[name] = [f"{name}: no argparse parser reached"]
        finally:
            sys.path.pop(0)
    import torch  # noqa: PLC0415  (after the commands: each is imported as its own first import)
    from detectron2.modeling import build_model  # noqa: PLC0415

    from tests.tiny_configs import tiny_person_search_cfg  # noqa: PLC0415

    with torch.no_grad():
        build_model(tiny_person_search_cfg()).eval()([{"image": torch.zeros(3, 64, 48)}])
    print(json.dumps(report))


@pytest.fixture(scope="module")
def probed(repo_root):
    proc = subprocess.run(
        [sys.executable, "-c", "from tests.test_cli_help import probe; probe()"],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def test_every_option_has_help_and_shows_its_default(probed):
    report, _ = probed
    assert sorted(report) == sorted(MODULES + SCRIPTS)
    assert [p for problems in report.values() for p in problems] == []


def _warning_lines(stderr: str) -> list:
    return [line for line in stderr.splitlines() if "Warning:" in line]


def test_no_library_warnings_on_import_or_first_forward(probed):
    assert _warning_lines(probed[1]) == []


def test_a_script_importing_detectron2_first_prints_no_library_warning(repo_root):
    """``make demo``'s script, as a user runs it: a process of its own."""
    proc = subprocess.run(
        [sys.executable, "projects/stl_search/run_pipeline.py", "--help"],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "(default: prw)" in proc.stdout
    assert _warning_lines(proc.stderr) == []
