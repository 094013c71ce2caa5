"""Helpers of the top-level tests: the repository's commands, found by reading the files (so a
new command is checked by the help and documentation tests without being listed twice)."""

from __future__ import annotations

import ast
import os
from typing import List

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT_FOLDERS = ("projects/stl_search", "examples", "benchmarks")


def has_main_guard(path: str) -> bool:
    """Whether the file runs as a script: a top-level ``if __name__ == "__main__":``."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    for node in tree.body:
        if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
            return True
    return False


def python_m_modules(repo_root: str = REPO_ROOT) -> List[str]:
    """Every ``python -m stl_search...`` entry point: modules with a main guard and packages with a
    ``__main__.py`` (a package's ``cli`` module is reached through its package name)."""
    modules = []
    for folder, _, files in os.walk(os.path.join(repo_root, "stl_search")):
        package = os.path.relpath(folder, repo_root).replace(os.sep, ".")
        if "__main__.py" in files:
            modules.append(package)
        for name in files:
            if not name.endswith(".py") or name in ("__main__.py", "__init__.py"):
                continue
            if name == "cli.py" and "__main__.py" in files:
                continue
            if has_main_guard(os.path.join(folder, name)):
                modules.append(f"{package}.{name[:-3]}")
    return sorted(modules)


def scripts(folders=SCRIPT_FOLDERS, repo_root: str = REPO_ROOT) -> List[str]:
    """``train_net.py`` and every Python script (a file with a main guard) of ``folders``."""
    found = ["train_net.py"]
    for folder in folders:
        for name in sorted(os.listdir(os.path.join(repo_root, folder))):
            path = os.path.join(repo_root, folder, name)
            if name.endswith(".py") and has_main_guard(path):
                found.append(f"{folder}/{name}")
    return found
