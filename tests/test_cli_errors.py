"""Internal errors a new user met (issue 18): each is now one clear line, or a quiet exit for a closed pipe."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import tty
from pathlib import Path

import numpy as np
import pytest

from edgecomp import cli

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _onnx(path: Path) -> Path:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Flatten", ["r"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "w2", "b2"], ["y"], name="fc", transB=1)]
    inits = [numpy_helper.from_array(rng.standard_normal((4, 1, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b"),
             numpy_helper.from_array(rng.standard_normal((5, 128)).astype(np.float32), "w2"),
             numpy_helper.from_array(rng.standard_normal(5).astype(np.float32), "b2")]
    g = helper.make_graph(nodes, "small", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], inits)
    path.write_bytes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString())
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return _onnx(tmp_path_factory.mktemp("m") / "small.onnx")


@pytest.fixture(scope="module")
def host_bundle(tmp_path_factory, model) -> Path:
    out = tmp_path_factory.mktemp("b") / "bundle"
    assert cli.main(["compile", str(model), "-t", "host", "--precision", "float32", "-o", str(out)]) == 0
    return out


def _one_line_error(rc: int, err: str, code: int = 2) -> None:
    assert rc == code, err
    assert err.startswith("edgecomp: error:") and len(err.strip().splitlines()) == 1, err
    assert "internal error" not in err and "Traceback" not in err


@pytest.mark.parametrize("argv", [["info", "{model}", "--json"], ["info", "{model}"]])
def test_closed_pipe_exits_quietly(model, argv):
    """`edgecomp info model.onnx --json | head`: no 'internal error: BrokenPipeError', no message at all."""
    p = subprocess.Popen([sys.executable, "-m", "edgecomp.cli", *[a.format(model=model) for a in argv]],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    p.stdout.close()  # the reader went away before edgecomp wrote
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 141 and err == "", err


def test_report_on_a_file_or_a_missing_folder(model, tmp_path, capsys):
    for path, what in ((model, "is a file, not a bundle folder"), (tmp_path / "nope", "does not exist"),
                       (tmp_path, "not an edgecomp bundle (no manifest.json)")):
        rc = cli.main(["report", str(path)])
        err = capsys.readouterr().err
        _one_line_error(rc, err)
        assert what in err


@pytest.mark.parametrize("text", ['{"tool": "edgecomp", "target": 3}', "[1, 2]", "{bad json", '{"tool": "edgecomp"}',
                                  '{"tool": "edgecomp", "kind": "demo", "files": {}}'])
def test_report_and_run_on_a_malformed_manifest(tmp_path, capsys, text):
    (tmp_path / "manifest.json").write_text(text)
    for cmd in ("report", "run"):
        rc = cli.main([cmd, str(tmp_path)])
        _one_line_error(rc, capsys.readouterr().err)


@pytest.mark.toolchain
def test_run_checks_its_outputs_before_running(host_bundle, tmp_path, capsys):
    bad_input = tmp_path / "x.npy"
    bad_input.write_bytes(b"not numpy")  # read before the run: the --plot error must come first
    for opt in ("--plot", "--output"):
        rc = cli.main(["run", str(host_bundle), "--host", "--input", str(bad_input), opt, "/no/such/dir/x.png"])
        err = capsys.readouterr().err
        _one_line_error(rc, err)
        assert f"the folder of {opt} /no/such/dir/x.png does not exist" in err
    rc = cli.main(["run", str(host_bundle), "--host", "--plot", str(tmp_path)])
    _one_line_error(rc, capsys.readouterr().err)
    rc = cli.main(["run", str(host_bundle), "--host", "--plot", str(tmp_path / "layers.png")])
    assert rc == 0 and (tmp_path / "layers.png").read_bytes()[:4] == b"\x89PNG"


def _probe(text: bytes, *extra: str) -> subprocess.CompletedProcess:
    """`edgecomp probe` on a pseudo-terminal fed with ``text`` (a board's serial output)."""
    master, slave = os.openpty()
    tty.setraw(slave)

    def feed():
        time.sleep(1.0)
        try:
            os.write(master, text)
        except OSError:  # edgecomp refused its arguments and the terminal is closed already
            pass

    threading.Thread(target=feed, daemon=True).start()
    try:
        return subprocess.run([sys.executable, "-m", "edgecomp.cli", "probe", "--port", os.ttyname(slave),
                               "--timeout", "4", *extra], capture_output=True, text=True, env=ENV, timeout=120)
    finally:
        os.close(master)
        os.close(slave)


BLOCK = b"boot\r\n@ec begin model=m layers=2 unit=cycles\n@ec layer 0 10\n@ec layer 1 20\n@ec total 30\n"


def test_probe_block_without_end_line_is_an_error():
    r = _probe(BLOCK)
    _one_line_error(r.returncode, r.stderr, code=1)
    assert "no end line (@ec end)" in r.stderr
    r = _probe(BLOCK + b"@ec end\n", "--json")
    assert r.returncode == 0 and '"total_ticks": 30' in r.stdout, r.stderr


def test_probe_checks_plot_and_bundle_first(tmp_path):
    r = _probe(BLOCK + b"@ec end\n", "--plot", "/no/such/dir/p.png")
    _one_line_error(r.returncode, r.stderr)
    r = _probe(BLOCK + b"@ec end\n", "--bundle", str(tmp_path))
    _one_line_error(r.returncode, r.stderr)


def test_info_shows_an_onnx_model_in_its_own_layout(model, capsys):
    assert cli.main(["info", str(model)]) == 0
    out = capsys.readouterr().out
    assert "input  x: float32 [1, 1, 8, 4] (NCHW)" in out
    assert cli.main(["info", str(model), "--json"]) == 0
    import json
    info = json.loads(capsys.readouterr().out)
    assert info["inputs"][0]["shape"] == [1, 1, 8, 4] and info["inputs"][0]["layout"] == "NCHW"


@pytest.mark.qemu
def test_fits_line_and_ram_bytes_are_one_number(model, tmp_path, capsys):
    out = tmp_path / "b"
    assert cli.main(["compile", str(model), "-t", "cortex-m4", "--precision", "float32", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    from edgecomp.bundle import read_manifest
    man = read_manifest(out)
    ram = man["ram"]
    assert man["ram_bytes"] == ram["arena_bytes"] + ram["static_bytes"] + ram["stack_peak_bytes"]
    assert man["fits"]["ram"].startswith(f"{man['ram_bytes']:,} of ")
    assert f"RAM: {man['ram_bytes']:,} B" in text and f"fits ram: {man['ram_bytes']:,} of" in text


# -- found by scripts/fuzz_cli.py ---------------------------------------------------------------
def test_info_json_failure_also_says_so_on_stderr(tmp_path, capsys):
    rc = cli.main(["info", str(tmp_path / "missing.onnx"), "--json"])
    cap = capsys.readouterr()
    assert rc == 2 and '"supported": false' in cap.out
    _one_line_error(rc, cap.err)


def test_flash_report_and_probe_on_a_demo_folder(tmp_path, capsys):
    from edgecomp.bundle import write_manifest
    (tmp_path / "summary.json").write_text("{}\n")
    write_manifest(tmp_path, {"kind": "demo"})
    for argv in (["flash", str(tmp_path)], ["report", str(tmp_path)], ["run", str(tmp_path)]):
        rc = cli.main(argv)
        err = capsys.readouterr().err
        _one_line_error(rc, err)
        assert "results of `edgecomp demo`, not a bundle" in err


@pytest.mark.parametrize("argv", [["demo", "--target", "nope"], ["compress", "--target", "nope"],
                                  ["compress", "--example", "cifar"]])
def test_demo_and_compress_check_their_arguments_before_training(tmp_path, capsys, argv):
    t0 = time.monotonic()
    rc = cli.main(argv + ["-o", str(tmp_path / "out")])
    _one_line_error(rc, capsys.readouterr().err)
    assert time.monotonic() - t0 < 20 and not (tmp_path / "out").exists()


@pytest.mark.parametrize("opt", [["--port", "0"], ["--port", "70000"], ["--runs", "0"]])
def test_deploy_checks_port_and_runs_before_ssh(tmp_path, capsys, opt):
    rc = cli.main(["deploy", str(tmp_path), "--host", "pi@127.0.0.1", *opt])
    err = capsys.readouterr().err
    _one_line_error(rc, err)
    assert opt[0] in err


def test_bundle_folder_gets_the_users_mode(tmp_path):
    from edgecomp.bundle import atomic_dir
    old = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "b") as d:
            (d / "x").write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "b").stat().st_mode & 0o777 == 0o755


@pytest.mark.parametrize("arr", [np.array(["a", "b"]), np.float32(3.0), np.zeros((0, 4)), np.array([[np.nan]])])
def test_run_input_that_is_not_samples(tmp_path, capsys, arr):
    """Found by scripts/fuzz_cli.py: strings as --input were a ValueError deep in the quantization."""
    from edgecomp.bundle import write_manifest
    np.save(tmp_path / "x.npy", arr)
    b = tmp_path / "b"
    b.mkdir()
    write_manifest(b, {"target": "host", "inputs": [{"name": "x", "shape": [1, 4], "dtype": "int8",
                                                     "quantization": {"scale": [0.1], "zero_point": [0]}}],
                       "outputs": [{"name": "y", "shape": [1, 2], "dtype": "int8",
                                    "quantization": {"scale": [0.1], "zero_point": [0]}}], "layers": []})
    rc = cli.main(["run", str(b), "--host", "--input", str(tmp_path / "x.npy")])
    _one_line_error(rc, capsys.readouterr().err)
