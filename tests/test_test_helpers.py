"""A test module imports shared helpers from its folder's ``helpers.py`` (or a fixtures module),
never from another test module or a ``conftest.py``: those are pytest's, and their private names
change with the tests that own them."""

import os
import re

_TEST_IMPORT = re.compile(
    r"^[ \t]*from\s+(?:tests\.|\.+)(?:[\w.]*\.)?(?:test_\w+|conftest)\s+import\s", re.MULTILINE
)


def test_no_test_module_imports_another(repo_root):
    offenders = []
    for folder, _, files in os.walk(os.path.join(repo_root, "tests")):
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as f:
                    for match in _TEST_IMPORT.finditer(f.read()):
                        offenders.append(f"{os.path.relpath(path, repo_root)}: {match.group(0)}")
    assert not offenders, "import these from a helpers.py instead: " + "; ".join(offenders)
