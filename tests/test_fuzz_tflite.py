"""Broken and hostile .tflite files: every one ends in an EdgecompError, quickly, in little memory."""
from __future__ import annotations

import importlib.util
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import edgecomp.frontends.tflite as tfl
from edgecomp.errors import EdgecompError  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
if "fuzz_long" not in sys.modules:
    _spec = importlib.util.spec_from_file_location("fuzz_long", ROOT / "scripts" / "fuzz_long.py")
    sys.modules["fuzz_long"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules["fuzz_long"])
fz = sys.modules["fuzz_long"]

TFLITE_CASES = int(os.environ.get("EDGECOMP_FUZZ_TFLITE_CASES", "700"))
SEEDS = fz.seed_tflite_files()
needs_seed = pytest.mark.skipif(not SEEDS, reason="no small .tflite model to mutate (../shared/benchmarks)")


@needs_seed
def test_seed_models_load():
    for p in SEEDS:
        g = tfl.load_tflite(p)
        assert g.nodes


@needs_seed
def test_fuzz_load_tflite(tmp_path, capsys):
    before = fz.STATS.cases.get("tflite", 0)
    fz.run_tflite(TFLITE_CASES, tmp_path, seed=None, derandomize=True, seconds=20)
    tried = fz.STATS.cases["tflite"] - before
    with capsys.disabled():
        print(f"\n[fuzz] tflite: {fz.STATS.line()}")
    assert tried >= TFLITE_CASES * 0.9
    assert 0 < fz.STATS.accepted.get("tflite", 0) < fz.STATS.cases["tflite"]


def _refused(path: Path):
    with pytest.raises(EdgecompError):
        with fz.time_limit(20):
            tfl.load_tflite(path)


@needs_seed
@pytest.mark.parametrize("cut", [0, 4, 8, 16, 100, 1000, -1])
def test_truncated(tmp_path, cut):
    data = SEEDS[0].read_bytes()
    p = tmp_path / "m.tflite"
    p.write_bytes(data[:cut] if cut >= 0 else data[:len(data) // 2])
    _refused(p)


@needs_seed
@pytest.mark.parametrize("ident", [b"TFL2", b"XXXX", b"\0\0\0\0"])
def test_wrong_identifier(tmp_path, ident):
    data = bytearray(SEEDS[0].read_bytes())
    data[4:8] = ident
    p = tmp_path / "m.tflite"
    p.write_bytes(bytes(data))
    _refused(p)


@needs_seed
@pytest.mark.parametrize("value", [0x7FFFFFFF, 0xFFFFFFFF, 0x80000000])
def test_root_offset_out_of_file(tmp_path, value):
    data = bytearray(SEEDS[0].read_bytes())
    data[0:4] = struct.pack("<I", value)
    p = tmp_path / "m.tflite"
    p.write_bytes(bytes(data))
    _refused(p)


@pytest.mark.parametrize("data", [b"", b"TFL3", b"\x08\x00\x00\x00TFL3" + b"\xff" * 64, os.urandom(0) + b"\x00" * 1024])
def test_tiny_or_empty(tmp_path, data):
    p = tmp_path / "m.tflite"
    p.write_bytes(data)
    _refused(p)


@needs_seed
def test_fuzz_under_address_space_limit(tmp_path, capsys):
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "fuzz_long.py"), "0.08", "--target", "tflite",
                        "--seed", "4242", "--batch", "200", "--rlimit-as-mb", "1536", "--crash-dir",
                        str(tmp_path / "crashes")], capture_output=True, text=True, timeout=240)
    last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    with capsys.disabled():
        print(f"\n[fuzz] tflite subprocess: {last}")
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-4000:])
    assert "cases tried: tflite:" in last
