"""The documentation stays a newcomer's: a short README that names every command, and no text
that only made sense while the project was being built (dated diaries, tracker references).

Pure file reads, no model: these run in well under a second."""

import os
import re
import subprocess

import pytest

from .helpers import python_m_modules, scripts

README_MAX_LINES = 250

# Built from parts so that this file does not match itself.
DIARY = re.compile(
    "|".join(
        [
            "this " + "session",
            "earlier " + "session",
            "was " + "lent",
            r"issue [0-9#]",
        ]
    ),
    re.IGNORECASE,
)


def _read(repo_root, *parts):
    with open(os.path.join(repo_root, *parts), encoding="utf-8") as f:
        return f.read()


def test_readme_is_short(repo_root):
    lines = _read(repo_root, "README.md").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines (at most {README_MAX_LINES})"


def test_readme_names_every_command(repo_root):
    readme = _read(repo_root, "README.md")
    modules = python_m_modules(repo_root)
    assert "stl_search.index" in modules and "stl_search.search" in modules, modules
    missing = [m for m in modules if f"python -m {m} " not in readme]
    commands = scripts(("projects/stl_search", "examples"), repo_root)
    missing += [s for s in commands if f"`{s} " not in readme and f"({s} " not in readme]
    setup = _read(repo_root, "setup.py")
    console = re.findall(r'"([\w-]+)=[\w.]+:\w+"', setup)
    assert console, "no console_scripts found in setup.py"
    missing += [c for c in console if f"`{c}`" not in readme]
    for target in ("make demo", "make test", "make bench", "make env"):
        if f"`{target}" not in readme:
            missing.append(target)
    assert not missing, f"README.md's command table lacks: {missing}"


def test_benchmarks_readme_names_every_benchmark(repo_root):
    text = _read(repo_root, "benchmarks", "README.md")
    names = [os.path.basename(s)[:-3] for s in scripts(("benchmarks",), repo_root)[1:]]
    assert "inference_speed" in names, names
    missing = [n for n in names if f"{n}.py" not in text and f"`{n}`" not in text]
    assert not missing, f"benchmarks/README.md does not describe: {missing}"


def test_no_diary_words_in_tracked_files(repo_root):
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z"], cwd=repo_root, capture_output=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    hits = []
    for rel in listed.decode().split("\0"):
        path = os.path.join(repo_root, rel)
        if not rel or not os.path.isfile(path):
            continue
        with open(path, "rb") as f:
            data = f.read()
        if b"\0" in data[:8192]:
            continue  # binary
        for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            if DIARY.search(line):
                hits.append(f"{rel}:{number}: {line.strip()[:80]}")
    assert not hits, "text about how the project was built, not what it is:\n" + "\n".join(hits)
