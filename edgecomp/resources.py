"""Find the data that ships with edgecomp: target files and templates.

In a source checkout they are the top-level ``targets/`` and ``templates/``
folders; in an installed wheel they are the packages ``edgecomp._data.targets`` and
``edgecomp._data.templates`` (see ``[tool.setuptools.package-dir]`` in pyproject.toml).
"""
from __future__ import annotations

import importlib.resources
import importlib.util
from pathlib import Path


def _data_dir(name: str) -> Path:
    # The data folders have no __init__.py: they are namespace packages, for which
    # importlib.resources.files() returns a MultiplexedPath (str() is not a path).
    try:
        spec = importlib.util.find_spec(f"edgecomp._data.{name}")
    except (ModuleNotFoundError, ValueError):
        spec = None
    for loc in (spec.submodule_search_locations or []) if spec is not None else []:
        if Path(loc).is_dir():
            return Path(loc)
    try:
        p = Path(str(importlib.resources.files(f"edgecomp._data.{name}")))
        if p.is_dir():
            return p
    except (ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parent.parent / name


def targets_dir() -> Path:
    return _data_dir("targets")


def templates_dir() -> Path:
    return _data_dir("templates")
