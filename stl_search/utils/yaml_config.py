"""Merging a YAML config file into a Detectron2 config without running code from it.

Detectron2's ``CfgNode.merge_from_file`` defaults to ``allow_unsafe=True``: a file that plain
YAML cannot read (a ``!!python/object/apply:os.system [...]`` tag, in the file or in any of its
``_BASE_`` files) is then read again with ``yaml.unsafe_load``, which calls what the tag names.
:func:`merge_yaml_config` is the one way this project merges a config file: always
``allow_unsafe=False`` (``yaml.safe_load``, for the file and every ``_BASE_`` file), with errors
that name the file at fault. LazyConfig ``.py`` files are Python code: they are refused here, and
what ``LazyConfig.load`` runs is up to whoever trusts them.
"""

from __future__ import annotations

import os

import yaml
from detectron2.config import CfgNode

__all__ = ["ConfigFileError", "UnsafeConfigError", "merge_yaml_config"]


class ConfigFileError(ValueError):
    """A config file is no YAML mapping (a syntax error, a Python file, a list...)."""


class UnsafeConfigError(ConfigFileError):
    """A config file holds a YAML tag that plain YAML does not define (it could run code)."""


def _where(error: yaml.MarkedYAMLError, config_file: str) -> str:
    """``file, line N`` of a YAML error, and through which config it was reached."""
    mark = error.problem_mark or error.context_mark
    name = getattr(mark, "name", None) or config_file
    where = f"{name}, line {mark.line + 1}" if mark is not None else name
    if os.path.abspath(name) != os.path.abspath(config_file):
        where += f" (a _BASE_ of {config_file})"
    return where


def merge_yaml_config(cfg: CfgNode, config_file: str) -> None:
    """``cfg.merge_from_file(config_file, allow_unsafe=False)`` (its ``_BASE_`` files included),
    with errors that name the file.

    Raises:
        FileNotFoundError: ``config_file`` does not exist.
        UnsafeConfigError: the file or a ``_BASE_`` file holds a tag such as ``!!python/...``;
            nothing of it ran.
        ConfigFileError: a ``.py`` file (LazyConfig), a YAML syntax error, or a file that is not
            a mapping of keys.
        KeyError: from Detectron2, a key the config does not have.
    """
    if not os.path.isfile(config_file):
        raise FileNotFoundError(f"config file {config_file} does not exist")
    if config_file.endswith(".py"):
        raise ConfigFileError(
            f"{config_file} is a Python file (a LazyConfig, i.e. code), but a YAML config is "
            "expected here (e.g. configs/synthetic/person_search.yaml). LazyConfig files are "
            "for Detectron2's tools/lazyconfig_train_net.py."
        )
    try:
        cfg.merge_from_file(config_file, allow_unsafe=False)
    except yaml.constructor.ConstructorError as e:
        raise UnsafeConfigError(
            f"{_where(e, config_file)}: refused to load the config: {e.problem}. Config files "
            "may hold plain YAML only (mappings, lists, strings, numbers); a Python tag could "
            "run code, so nothing of the file was used."
        ) from None
    except yaml.YAMLError as e:
        where = _where(e, config_file) if isinstance(e, yaml.MarkedYAMLError) else config_file
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigFileError(f"{where}: not a valid YAML config: {problem}") from None
    except (AttributeError, TypeError) as e:  # a list or a scalar at the top of a file
        raise ConfigFileError(
            f"{config_file} (or one of its _BASE_ files) is not a YAML mapping of config keys: {e}"
        ) from None
