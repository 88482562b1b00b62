"""The structure the code promises (docs/internals.md): one direction of imports, small modules,
the pipeline's passes as documented, every catalogue kernel a real C function, the IR checked
after every pass and dumped with --dump-ir."""
from __future__ import annotations

import ast
import doctest
import importlib
import re
from pathlib import Path

import pytest

from edgecomp import ir, pipeline
from edgecomp.backends.c import emit  # noqa: F401  (fills the catalogue)
from edgecomp.backends.c.kernels.catalogue import CATALOGUE, KERNEL_GROUPS, PORTABLE_GROUPS, candidates
from edgecomp.errors import ModelError
from edgecomp.passes import Pass, run_passes
from edgecomp.resources import templates_dir

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "edgecomp"
MAX_LINES = 600


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, mod: str) -> set[str]:
    """Every edgecomp module ``path`` imports, at module level or inside functions."""
    tree = ast.parse(path.read_text())
    pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("edgecomp")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("edgecomp"):
                continue
            out.add(target)
            for a in node.names:  # `from . import x` imports the submodule x
                sub = f"{target}.{a.name}"
                if (PKG.parent / (sub.replace(".", "/") + ".py")).exists() or \
                        (PKG.parent / sub.replace(".", "/") / "__init__.py").exists():
                    out.add(sub)
    return out


def _graph() -> dict[str, set[str]]:
    mods = {_module_name(p): p for p in PKG.rglob("*.py")}
    g = {}
    for m, p in mods.items():
        deps = set()
        for t in _imports(p, m):
            while t and t not in mods:  # a name imported from a module: the module
                t = t.rsplit(".", 1)[0] if "." in t else ""
            if t and t != m and not m.startswith(t + "."):  # (a package's own __init__ is not a cycle)
                deps.add(t)
        g[m] = deps
    return g


def test_no_import_cycles():
    """No module imports (even lazily, inside a function) a module that imports it back."""
    g = _graph()
    cycles = []
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for d in sorted(g.get(m, ())):
            if state.get(d) == 1:
                cycles.append(" -> ".join(stack[stack.index(d):] + [d]))
            elif d not in state:
                visit(d, stack + [d])
        state[m] = 2
    for m in sorted(g):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_frontends_know_nothing_of_backends():
    g = _graph()
    for m, deps in g.items():
        if m.startswith("edgecomp.frontends") or m.startswith("edgecomp.passes"):
            assert not any(d.startswith("edgecomp.backends") for d in deps), (m, deps)


def test_modules_are_small():
    big = {str(p.relative_to(ROOT)): n for p in PKG.rglob("*.py")
           if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines: {big}"


def test_test_modules_import_no_other_test_module():
    """Shared test helpers live in helper modules (c_harness, graph_builders, op_check, ...): a test
    module that imports another runs that module's setup and ties two files' helpers together."""
    found = []
    for path in sorted((ROOT / "tests").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):  # from test_x import ..., from tests / . import test_x
                names = [node.module or ""] + ([a.name for a in node.names] if node.module in (None, "tests") else [])
            else:
                continue
            found += [f"{path.name}:{node.lineno} imports {n}" for n in names
                      if n.split(".")[-1].startswith("test_")]
    assert not found, "\n".join(found)


def test_internals_lists_every_pass():
    text = (ROOT / "docs" / "internals.md").read_text()
    missing = [n for n in pipeline.pass_names() if f"`{n}`" not in text]
    assert not missing, f"docs/internals.md does not describe the passes {missing}"


def test_every_catalogue_kernel_is_a_c_function():
    """Each record names a function declared in one of its groups' headers (or is an alias)."""
    kdir = templates_dir() / "cortex_m" / "kernels"
    for k in CATALOGUE:
        if k.name.startswith("("):
            continue
        headers = [f for grp in k.groups for f in KERNEL_GROUPS[grp] if f.endswith(".h")]
        text = "".join((kdir / h).read_text() for h in headers)
        assert re.search(rf"\b{k.name}\s*\(", text), f"{k.name} is not declared in {headers}"


def test_every_op_has_a_reference_kernel():
    """Optimized kernels sit beside a reference kernel that takes every layer of their op and type."""
    for op, dtype in {(k.op, k.dtype) for k in CATALOGUE}:
        ks = candidates(op, dtype)
        assert set(ks[-1].groups) <= PORTABLE_GROUPS, (op, dtype, [k.name for k in ks])


@pytest.mark.parametrize("module", ["edgecomp.backends.c.literals", "edgecomp.backends.c.kernels.catalogue",
                                    "edgecomp.backends.c.emitter", "edgecomp.backends.c.emit.attention"])
def test_doctests(module):
    r = doctest.testmod(importlib.import_module(module))
    assert r.attempted > 0 and r.failed == 0


def _tiny() -> ir.Graph:
    x = ir.Tensor("x", (1, 4), "float32")
    y = ir.Tensor("y", (1, 4), "float32")
    return ir.Graph("g", {"x": x, "y": y}, [ir.Node("c", "clamp", ["x"], ["y"], {"act": (0.0, 6.0)})], ["x"], ["y"])


def test_a_pass_that_breaks_the_graph_is_named(tmp_path):
    def bad(g, ctx):
        g.nodes[0].inputs = ["nowhere"]
        return g
    with pytest.raises(ModelError, match="after the bad_pass pass"):
        run_passes(_tiny(), [Pass("bad_pass", bad)])


def test_dump_ir_writes_the_graph_after_every_pass(tmp_path):
    run_passes(_tiny(), [Pass("first", lambda g, c: g), Pass("second", lambda g, c: g)], dump=tmp_path, first_index=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["03_first.txt", "04_second.txt"]
    text = (tmp_path / "04_second.txt").read_text()
    assert "c: clamp(x) -> y" in text and "act = (0.0, 6.0)" in text


def test_every_package_is_installed():
    """Every folder of edgecomp with an ``__init__.py`` is a package pyproject.toml installs: a
    package left out is missing from the wheel, and ``edgecomp`` fails to import once installed
    (the tests that import the checkout would not notice)."""
    import tomllib
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {_module_name(p) for p in PKG.rglob("__init__.py")}
    assert not found - listed, f"add these packages to [tool.setuptools] packages: {sorted(found - listed)}"
