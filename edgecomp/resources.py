"""Find the data that ships with edgecomp: target files and templates.

In a source checkout they are the top-level ``targets/`` and ``templates/``
folders; in an installed wheel they are the packages ``edgecomp._data.targets`` and
``edgecomp._data.templates`` (see ``[tool.setuptools.package-dir]`` in pyproject.toml).
"""
from __future__ import annotations

import importlib.resources
from pathlib import Path


def _data_dir(name: str) -> Path:
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
