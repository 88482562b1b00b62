"""Find the data that ships with edgecomp: target files and templates.

In a source checkout they are the top-level ``targets/`` and ``templates/``
folders; in an installed wheel they are the packages ``edgecomp._data.targets`` and
``edgecomp._data.templates`` (see ``[tool.setuptools.package-dir]`` in pyproject.toml).
"""
from __future__ import annotations

import functools
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


@functools.lru_cache(maxsize=None)
def template_env(folder: str, **options):
    """The one Jinja environment of ``templates/<folder>`` (StrictUndefined, trailing newlines kept,
    no autoescape: the templates write C, Makefiles and Markdown whose model-derived strings are
    escaped by the caller).  Cached: Jinja compiles each template once per process, not once per
    bundle (1.1 s of a host compile), and reloads a template whose file changed."""
    import jinja2
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates_dir() / folder)),
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False,
                              **options)
