#!/usr/bin/env python3
"""Drive every `edgecomp` subcommand with generated arguments, paths and inputs (property-based).

    python scripts/fuzz_cli.py 10000                 # 10,000 invocations, fresh seed, prints findings
    python scripts/fuzz_cli.py 500 --seed 3 --verbose

Each invocation runs in this process (``edgecomp.cli.main``, fast) inside a sandbox of real files:
good and broken models, calibration / input arrays (uint8, NaN, wrong shape, strings, 0-d, garbage),
compiled bundles (host, Cortex-M4, Raspberry Pi, a board) and broken ones (bad JSON, bad fields,
a demo folder), output paths (new, a user's project folder, an old bundle, a file, a path under a
file, /proc, a missing folder) and serial ports (a pseudo-terminal, /dev/null, a file, a folder).
Every invocation must:

* raise nothing (argparse's own exit 2 with its usage message is fine) and print no traceback;
* exit 0, 1 or 2, and when not 0 print one ``edgecomp: error:`` line (argparse: its ``error:``);
* on failure, leave every file as it was (the bundles' ``build/`` caches aside) and no temporary
  folder behind; on success, never touch the inputs.

The CI test (tests/test_fuzz_cli.py) runs a small derandomized budget of the same strategies.
Exit status: 0 when nothing was found, 1 otherwise (each finding is printed with its argv).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import shutil
import sys
import tempfile
import time
import tty
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

#: Entries of the sandbox that commands may change without it being a finding: build caches.
IGNORED_PARTS = {"build"}
#: Temporary folders edgecomp keeps on purpose (a read-only bundle's build cache).
KEPT_TEMP = {"edgecomp-build"}
#: ... and caches of the libraries edgecomp uses (torch's compiler cache when `demo` trains).
KEPT_TEMP_PREFIXES = ("torchinductor_",)


# --------------------------------------------------------------------------- the sandbox
def _onnx_model(path: Path) -> Path:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Flatten", ["r"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "w2", "b2"], ["y"], name="fc", transB=1)]
    inits = [numpy_helper.from_array(rng.standard_normal((4, 1, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal(4).astype(np.float32) * 0.1, "b"),
             numpy_helper.from_array(rng.standard_normal((5, 144)).astype(np.float32) * 0.2, "w2"),
             numpy_helper.from_array(rng.standard_normal(5).astype(np.float32) * 0.1, "b2")]
    g = helper.make_graph(nodes, "net", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 6, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], inits)
    path.write_bytes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString())
    return path


def _tflite_model(path: Path) -> Path:
    """An int8 conv -> fully connected .tflite, written with the tests' flatbuffer builder."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_ec_conftest", ROOT / "tests" / "conftest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rng = np.random.default_rng(1)

    def q(name, shape, scale, zp, **kw):
        return dict(name=name, shape=list(shape), dtype="int8", scale=[scale], zero_point=[zp], **kw)

    tensors = [q("x", (1, 6, 6, 1), 0.05, 3),
               dict(name="w", shape=[4, 3, 3, 1], dtype="int8", data=rng.integers(-127, 128, (4, 3, 3, 1)).astype(np.int8),
                    scale=[0.01] * 4, zero_point=[0] * 4, axis=0),
               dict(name="b", shape=[4], dtype="int32", data=rng.integers(-300, 300, 4).astype(np.int32),
                    scale=[0.0005] * 4, zero_point=[0] * 4),
               q("c", (1, 6, 6, 4), 0.08, -10),
               dict(name="w2", shape=[5, 144], dtype="int8", data=rng.integers(-127, 128, (5, 144)).astype(np.int8),
                    scale=[0.004], zero_point=[0]),
               dict(name="b2", shape=[5], dtype="int32", data=rng.integers(-500, 500, 5).astype(np.int32),
                    scale=[0.00032], zero_point=[0]),
               q("y", (1, 5), 0.2, 2)]
    ops = [dict(op="CONV_2D", inputs=[0, 1, 2], outputs=[3],
                options=("Conv2DOptions", {"Padding": 0, "StrideH": 1, "StrideW": 1, "DilationHFactor": 1,
                                           "DilationWFactor": 1, "FusedActivationFunction": 1})),
           dict(op="FULLY_CONNECTED", inputs=[3, 4, 5], outputs=[6],
                options=("FullyConnectedOptions", {"FusedActivationFunction": 0}))]
    path.write_bytes(mod.build_tflite(tensors, ops, [0], [6]))
    return path


@dataclass
class Sandbox:
    root: Path
    inputs: Path
    outputs: Path
    pristine: Path  # a copy of outputs, restored after each invocation
    tmp: Path
    pty: tuple[int, int] | None = None
    paths: dict[str, str] = field(default_factory=dict)

    def p(self, key: str) -> str:
        return self.paths[key]


def make_sandbox(root: Path, *, boards: bool = True) -> Sandbox:
    """Build the files every invocation draws from (a few compiles: about a minute)."""
    from edgecomp import api
    from edgecomp.bundle import write_manifest

    root = Path(root)
    inp, out, tmp = root / "in", root / "out", root / "tmp"
    for d in (inp, out, tmp):
        d.mkdir(parents=True, exist_ok=True)
    paths: dict[str, str] = {}

    def add(key, path):
        paths[key] = str(path)
        return Path(path)

    # models
    net = _onnx_model(add("net.onnx", inp / "net.onnx"))
    _tflite_model(add("net.tflite", inp / "net.tflite"))
    rng = np.random.default_rng(2)
    calib = rng.uniform(0, 1, (64, 1, 6, 6)).astype(np.float32)
    from edgecomp.compress.quantize import quantize_onnx
    quantize_onnx(net, calib, add("qdq.onnx", inp / "qdq.onnx"), progress=False)
    add("empty.onnx", inp / "empty.onnx").write_bytes(b"")
    add("garbage.tflite", inp / "garbage.tflite").write_bytes(b"TFL3" + bytes(range(256)) * 4)
    add("notes.txt", inp / "notes.txt").write_text("not a model\n")
    add("dir.onnx", inp / "dir.onnx").mkdir()
    # arrays
    np.save(add("calib.npy", inp / "calib.npy"), calib)
    np.save(add("calib_u8.npy", inp / "calib_u8.npy"), (calib * 255).astype(np.uint8))
    bad = calib.copy()
    bad[3, 0, 1, 1] = np.nan
    np.save(add("calib_nan.npy", inp / "calib_nan.npy"), bad)
    bad[5, 0, 2, 2] = np.inf
    np.save(add("calib_inf.npy", inp / "calib_inf.npy"), bad)
    np.save(add("calib_shape.npy", inp / "calib_shape.npy"), calib[:, :, :5, :])
    np.savez(add("calib.npz", inp / "calib.npz"), x=calib[:20])
    np.save(add("scalar.npy", inp / "scalar.npy"), np.float32(3.0))
    np.save(add("strings.npy", inp / "strings.npy"), np.array(["a", "b"]))
    np.save(add("objects.npy", inp / "objects.npy"), np.array([{"a": 1}], dtype=object), allow_pickle=True)
    add("garbage.npy", inp / "garbage.npy").write_bytes(b"\x93NUMPY garbage")
    np.save(add("labels.npy", inp / "labels.npy"), rng.integers(0, 5, 64))
    np.save(add("labels_2d.npy", inp / "labels_2d.npy"), rng.uniform(0, 1, (3, 4)).astype(np.float32) + 0.5)
    np.save(add("x_nchw.npy", inp / "x_nchw.npy"), calib[:3])
    np.save(add("x_one.npy", inp / "x_one.npy"), calib[0])
    np.save(add("x_int8.npy", inp / "x_int8.npy"), rng.integers(-128, 128, (2, 6, 6, 1)).astype(np.int8))
    add("afile.txt", inp / "afile.txt").write_text("a file\n")
    # bundles
    api.compile_model(net, "host", add("b_host", inp / "b_host"), precision="float32")
    api.compile_model(net, "cortex-m4", add("b_m4", inp / "b_m4"), calib=calib)
    api.compile_model(net, "rpi4", add("b_rpi", inp / "b_rpi"), precision="float32")
    if boards:
        api.compile_model(net, "nucleo-l4r5zi", add("b_board", inp / "b_board"), calib=calib)
    for key, text in (("b_badjson", "{"), ("b_badfields", '{"tool": "edgecomp", "target": 3, "files": {}}'),
                      ("b_demo", None)):
        d = add(key, inp / key)
        d.mkdir()
        if text is None:
            (d / "summary.json").write_text("{}\n")
            write_manifest(d, {"kind": "demo"})
        else:
            (d / "manifest.json").write_text(text)
    nm = add("b_nomanifest", inp / "b_nomanifest")
    nm.mkdir()
    (nm / "model.c").write_text("int x;\n")
    # outputs: what may be written, restored after each invocation
    proj = add("project", out / "project")
    (proj / "src").mkdir(parents=True)
    (proj / "src" / "main.c").write_text("int main(void) { return 0; }\n")
    (proj / "NOTES.md").write_text("notes\n")
    shutil.copytree(inp / "b_host", add("old_bundle", out / "old_bundle"))
    add("empty_dir", out / "empty_dir").mkdir()
    add("out_file", out / "file.bin").write_bytes(b"keep")
    for key, rel in (("new", "new"), ("new_deep", "new/deeper/b"), ("new_space", "with space/b"),
                     ("new_unicode", "unicod\u00e9"), ("y.npy", "y.npy"), ("plot.png", "plot.png"),
                     ("y_noext", "y")):
        add(key, out / rel)
    for key, p in (("proc", "/proc/nope"), ("sys", "/sys/nope"), ("missing_dir", out / "missing" / "dir" / "x.png"),
                   ("under_file", inp / "afile.txt" / "sub"), ("empty", ""), ("missing", inp / "missing.onnx")):
        paths[key] = str(p)
    pristine = root / "pristine"
    shutil.copytree(out, pristine, symlinks=True)
    master, slave = os.openpty()
    tty.setraw(slave)
    paths["pty"] = os.ttyname(slave)
    return Sandbox(root, inp, out, pristine, tmp, (master, slave), paths)


# --------------------------------------------------------------------------- generated invocations
def _opt(flag: str, values) -> st.SearchStrategy:
    """Nothing (two times in three) or [flag, value] (list a value twice to draw it twice as often)."""
    return st.one_of(st.just([]), st.just([]), st.sampled_from(values).map(lambda v: [flag, v]))


def _flag(flag: str) -> st.SearchStrategy:
    return st.sampled_from([[], [flag]])


def invocations(sb: Sandbox) -> st.SearchStrategy:
    """Argument lists for every subcommand (see the module doc)."""
    p = sb.p
    # valid values are listed more than once: a fair share of invocations get through to the work
    models = [p(k) for k in ("net.onnx", "net.onnx", "net.onnx", "net.tflite", "net.tflite", "qdq.onnx",
                             "empty.onnx", "garbage.tflite", "notes.txt", "dir.onnx", "missing", "empty")]
    cheap_targets = ["host", "host", "host", "rpi4", "nope", "", "cortex-m0", "../targets/x.toml", p("afile.txt")]
    arrays = [p(k) for k in ("calib.npy", "calib.npy", "calib.npy", "calib_u8.npy", "calib_nan.npy", "calib_inf.npy",
                             "calib_shape.npy", "calib.npz", "scalar.npy", "strings.npy", "objects.npy", "garbage.npy",
                             "labels.npy", "x_nchw.npy", "missing", "dir.onnx", "empty")]
    out_dirs = [p(k) for k in ("new", "new", "new_deep", "new_space", "new_unicode", "project", "old_bundle",
                               "old_bundle", "empty_dir", "out_file", "proc", "sys", "under_file", "empty")]
    out_files = [p(k) for k in ("y.npy", "plot.png", "y_noext", "project", "out_file", "proc", "missing_dir",
                                "under_file", "empty")]
    bundles = [p(k) for k in ("b_host", "b_host", "b_m4", "b_m4", "b_rpi", "b_badjson", "b_badfields", "b_demo",
                              "b_nomanifest", "afile.txt", "missing", "empty")] + \
        ([p("b_board")] if "b_board" in sb.paths else [])
    floats = ["120e6", "0", "-1", "nan", "inf", "abc", "1e30"]

    compile_ = st.tuples(
        st.just(["compile"]), st.sampled_from(models).map(lambda m: [m]),
        st.one_of(st.sampled_from(cheap_targets).map(lambda t: ["-t", t]), st.sampled_from(cheap_targets).map(
            lambda t: ["-t", t]), st.just([])),  # no -t: cortex-m4 (a build and QEMU: slower, drawn less)
        st.sampled_from(out_dirs).map(lambda o: ["-o", o]),
        st.one_of(st.sampled_from(arrays).map(lambda c: ["--calib", c]), st.just([])),
        _opt("--precision", ["int8", "int16", "float32", "float32", "int4"]),
        st.sampled_from([[], ["--no-quantize"], ["--per-tensor"]]),
        _opt("--calibrate-method", ["minmax", "entropy", "median"]), _opt("--keep-float", ["conv", "fc", "nope", ""]),
        _opt("--kernels", ["auto", "reference", "dsp", "fast"]), _opt("--optimize", ["balanced", "speed"]),
        _flag("--json"), _flag("--force"), _opt("--validate", arrays), _opt("--labels", arrays))
    run = st.tuples(
        st.just(["run"]), st.sampled_from(bundles).map(lambda b: [b]), _flag("--host"),
        _opt("--input", arrays + [p("x_one.npy"), p("x_int8.npy"), p("x_nchw.npy")] * 2),
        _opt("--count", ["1", "2", "2", "0", "-3", "100001", "x"]),
        _opt("--output", out_files), _opt("--plot", out_files), _opt("--clock-hz", floats), _flag("--json"))
    info = st.tuples(st.just(["info"]), st.sampled_from(models).map(lambda m: [m]), _flag("--json"))
    report = st.tuples(st.just(["report"]), st.sampled_from(bundles).map(lambda b: [b]), _flag("--json"))
    probe = st.tuples(
        st.just(["probe"]),
        st.sampled_from(["pty", "/dev/null", p("afile.txt"), p("b_host"), "/dev/ttyNOPE", ""]).map(
            lambda port: ["--port", sb.paths.get(port, port)]),
        st.sampled_from(["0.05", "0.2", "0", "-1", "nan", "1e9", "x"]).map(lambda t: ["--timeout", t]),
        _opt("--baud", ["115200", "0", "-9", "x"]), _opt("--bundle", bundles), _opt("--clock-hz", floats),
        _flag("--json"), _opt("--plot", out_files))
    flash = st.tuples(st.just(["flash"]), st.sampled_from(bundles).map(lambda b: [b]), _opt("--probe", ["0001", ""]))
    deploy = st.tuples(
        st.just(["deploy"]), st.sampled_from(bundles).map(lambda b: [b]),
        st.sampled_from(["pi@127.0.0.1", "127.0.0.1", "", "-oProxyCommand=x", "a b", "h/x", "user@"]).map(
            lambda h: ["--host", h]),
        st.sampled_from(["1", "0", "70000", "-5", "x"]).map(lambda n: ["--port", n]),
        _opt("--identity", [p("afile.txt"), p("missing")]), _opt("--known-hosts", [p("afile.txt"), p("missing")]),
        _flag("--no-venv"), _opt("--runs", ["1", "0", "-1"]), _opt("--threads", ["1,2", "x", "0", ""]), _flag("--json"))
    # compress and demo train for minutes when every argument is valid: one argument is always bad
    # (each of these is refused before any training)
    compress_bad = st.sampled_from([["--flash", "-1"], ["--flash", "abc"], ["--ram", "0"], ["--latency", "-5"],
                                    ["--workers", "0"], ["--example", "cifar"], ["--target", "nope"],
                                    ["-o", p("project")], ["-o", p("out_file")], ["-o", p("proc")],
                                    ["-o", p("under_file")], ["--seed", "x"], ["--executor", "slurm"]])
    # (no --force: it would make the project folder a valid output)
    compress = st.tuples(st.just(["compress"]), _opt("--flash", ["32KiB", "1M"]),
                         _opt("--max-accuracy-drop", ["1", "-1", "nan"]), _flag("--quick"), _flag("--estimate"),
                         compress_bad)  # last: an option given twice takes the last value
    demo_bad = st.sampled_from([["--target", "nope"], ["--target", ""], ["-o", p("project")], ["-o", p("out_file")],
                                ["-o", p("proc")], ["-o", p("under_file")], ["-o", p("sys")]])
    demo = st.tuples(st.just(["demo"]), _flag("--quick"), demo_bad)
    junk = st.lists(st.one_of(st.sampled_from(["compile", "run", "-o", "--json", "--", "-h", "--version", "x",
                                               "--no-such-option"]),
                              st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                                      max_size=8)), max_size=5)

    def flat(parts) -> list[str]:
        return [a for part in parts for a in part]

    return st.one_of(
        compile_.map(flat), run.map(flat), info.map(flat), report.map(flat), probe.map(flat), flash.map(flat),
        deploy.map(flat), compress.map(flat), demo.map(flat), junk)


# --------------------------------------------------------------------------- one invocation, checked
def _snapshot(root: Path) -> dict[str, tuple]:
    out = {}
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in IGNORED_PARTS]
        for name in dirs + files:
            full = os.path.join(dirpath, name)
            st_ = os.lstat(full)
            out[os.path.relpath(full, root)] = (st_.st_mode, st_.st_size if not os.path.isdir(full) else 0,
                                                st_.st_mtime_ns if not os.path.isdir(full) else 0)
    return out


@dataclass
class Stats:
    invocations: int = 0
    by_command: dict = field(default_factory=dict)
    by_code: dict = field(default_factory=dict)
    findings: list = field(default_factory=list)
    seconds: float = 0.0

    def line(self) -> str:
        cmds = ", ".join(f"{k} {v}" for k, v in sorted(self.by_command.items()))
        codes = ", ".join(f"exit {k}: {v}" for k, v in sorted(self.by_code.items()))
        return (f"{self.invocations} invocations in {self.seconds:.0f} s ({cmds}; {codes}); "
                f"{len(self.findings)} finding(s)")


STATS = Stats()


def run_one(sb: Sandbox, argv: list[str]) -> tuple[int, str, str, list[str]]:
    """Run ``edgecomp argv`` in this process; return (exit code, stdout, stderr, problems)."""
    from edgecomp import cli

    problems: list[str] = []
    before_in = _snapshot(sb.inputs)
    before_out = _snapshot(sb.outputs)
    out, err = io.StringIO(), io.StringIO()
    old_tmp = tempfile.tempdir
    tempfile.tempdir = str(sb.tmp)
    os.environ["TMPDIR"] = str(sb.tmp)
    cwd = os.getcwd()
    t0 = time.monotonic()
    try:
        os.chdir(sb.outputs)  # default outputs (bundle, compress-out, out/digits) land where they are checked
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = cli.main(list(argv))
            except SystemExit as e:  # argparse: usage errors (2), --help / --version (0)
                rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
                if rc not in (0, 2):
                    problems.append(f"argparse exit {rc}")
    except BaseException as e:  # anything escaping cli.main is a finding
        rc = -1
        problems.append(f"exception escaped: {type(e).__name__}: {e}")
    finally:
        os.chdir(cwd)
        tempfile.tempdir = old_tmp
    dt = time.monotonic() - t0
    so, se = out.getvalue(), err.getvalue()
    cmd = argv[0] if argv and argv[0] in ("compile", "run", "info", "report", "probe", "flash", "deploy",
                                          "compress", "demo") else "other"
    STATS.invocations += 1
    STATS.by_command[cmd] = STATS.by_command.get(cmd, 0) + 1
    STATS.by_code[rc] = STATS.by_code.get(rc, 0) + 1
    if "Traceback" in se or "Traceback" in so:
        problems.append("a traceback was printed")
    if "internal error" in se:
        problems.append("internal error")
    if rc not in (0, 1, 2):
        problems.append(f"exit code {rc}")
    if rc != 0:  # one error message (progress lines before it are fine; argparse prints its usage)
        errors = [l for l in se.splitlines() if l.startswith("edgecomp: error:") or
                  (cmd == "other" or "usage:" in se) and ": error:" in l]
        if not errors:
            problems.append("failed without an error message")
        elif len(errors) > 1:
            problems.append("more than one error message")
    after_in = _snapshot(sb.inputs)
    if after_in != before_in:
        changed = sorted(set(after_in.items()) ^ set(before_in.items()))[:5]
        problems.append(f"inputs changed: {changed}")
    if rc != 0 and _snapshot(sb.outputs) != before_out:
        after = _snapshot(sb.outputs)
        changed = sorted({k for k in set(after) | set(before_out) if after.get(k) != before_out.get(k)})[:5]
        problems.append(f"a failed command wrote: {changed}")
    left = [n for n in os.listdir(sb.tmp) if n not in KEPT_TEMP and not n.startswith(KEPT_TEMP_PREFIXES)]
    if left:
        problems.append(f"temporary files left: {left[:5]}")
        for n in left:
            shutil.rmtree(sb.tmp / n, ignore_errors=True) if (sb.tmp / n).is_dir() else (sb.tmp / n).unlink()
    if _snapshot(sb.outputs) != _snapshot(sb.pristine):  # restore the outputs for the next invocation
        shutil.rmtree(sb.outputs)
        shutil.copytree(sb.pristine, sb.outputs, symlinks=True)
    if problems:
        STATS.findings.append({"argv": argv, "exit": rc, "problems": problems, "stderr": se[-1500:],
                               "seconds": round(dt, 1)})
    return rc, so, se, problems


def run_many(sb: Sandbox, examples: int, *, seed: int | None = None, derandomize: bool = False,
             verbose: bool = False, deadline_s: float | None = None) -> Stats:
    """``examples`` generated invocations (hypothesis); findings are collected, not raised."""
    t0 = time.monotonic()

    @settings(max_examples=examples, deadline=None, database=None, derandomize=derandomize,
              suppress_health_check=list(HealthCheck), phases=[__import__("hypothesis").Phase.generate])
    @given(invocations(sb))
    def drive(argv):
        if deadline_s is not None and time.monotonic() - t0 > deadline_s:
            return
        t1 = time.monotonic()
        rc, so, se, problems = run_one(sb, argv)
        if verbose or problems:
            status = "FINDING " + "; ".join(problems) if problems else "ok"
            print(f"[{STATS.invocations}] {time.monotonic() - t1:.2f}s exit {rc} {status}: "
                  f"edgecomp {' '.join(map(repr, argv))}",
                  file=sys.__stderr__, flush=True)
            if problems:
                print("   " + se.strip().replace("\n", "\n   ")[-1200:], file=sys.__stderr__, flush=True)

    if seed is not None:
        drive = __import__("hypothesis").seed(seed)(drive)
    drive()
    STATS.seconds += time.monotonic() - t0
    return STATS


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("invocations", type=int, nargs="?", default=10000)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--batch", type=int, default=500, help="invocations per hypothesis run (fresh seed each)")
    ap.add_argument("--workdir", help="sandbox folder (default: a temporary one)")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args(argv)
    os.environ.setdefault("MPLBACKEND", "Agg")
    work = Path(a.workdir) if a.workdir else Path(tempfile.mkdtemp(prefix="edgecomp-fuzz-cli-"))
    print(f"building the sandbox in {work} ...", file=sys.stderr, flush=True)
    sb = make_sandbox(work / "sandbox")
    rng = np.random.default_rng(a.seed)
    while STATS.invocations < a.invocations:
        n = min(a.batch, a.invocations - STATS.invocations)
        run_many(sb, n, seed=int(rng.integers(2**31)), verbose=a.verbose)
        print(f"  {STATS.line()}", file=sys.stderr, flush=True)
    print(STATS.line())
    for f in STATS.findings:
        print(f"FINDING: edgecomp {' '.join(map(repr, f['argv']))}\n  exit {f['exit']}: {'; '.join(f['problems'])}\n"
              f"  {f['stderr'].strip()[-600:]}")
    if not a.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if STATS.findings else 0


if __name__ == "__main__":
    sys.exit(main())
