"""The probe-line reader on whatever a serial port or an emulator may print."""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

import edgecomp.probe as probe
from edgecomp.errors import EdgecompError  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
if "fuzz_long" not in sys.modules:
    _spec = importlib.util.spec_from_file_location("fuzz_long", ROOT / "scripts" / "fuzz_long.py")
    sys.modules["fuzz_long"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules["fuzz_long"])
fz = sys.modules["fuzz_long"]

PROBE_CASES = int(os.environ.get("EDGECOMP_FUZZ_PROBE_CASES", "1000"))


def test_fuzz_probe_parser(capsys):
    before = fz.STATS.cases.get("probe", 0)
    fz.run_probe(PROBE_CASES, seed=None, derandomize=True)
    tried = fz.STATS.cases["probe"] - before
    with capsys.disabled():
        print(f"\n[fuzz] probe: {fz.STATS.line()}")
    assert tried >= PROBE_CASES * 0.9
    assert 0 < fz.STATS.accepted.get("probe", 0) < fz.STATS.cases["probe"]


GOOD = "@ec begin model=m layers=2 unit=cycles\n@ec layer 0 10\n@ec layer 1 30\n@ec total 40\n@ec stack 96\n@ec end\n"


def test_good_block_in_noise():
    noisy = b"\x00\xffboot\r\nxx" + GOOD.encode().replace(b"\n", b"\r\n") + b"@ec lay"
    r = probe.parse_probe(noisy)
    assert (r.layers, r.unit, r.ticks_list(), r.total, r.stack, r.complete) == (2, "cycles", [10, 30], 40, 96, True)


@pytest.mark.parametrize("text", ["", "\x00" * 100, "random text\n", "@ec", "@ec layer 0 5\n", b"\xff\xfe\xfd"])
def test_no_probe_is_one_clear_error(text):
    with pytest.raises(EdgecompError, match="no probe lines"):
        probe.parse_probe(text)


@pytest.mark.parametrize("text", [
    "@ec begin model=m layers=99999999999999999999 unit=ns\n@ec end\n",
    "@ec begin model=m unit=ns\n@ec layer 99999999999999999999 1\n@ec end\n",
    "@ec begin model=m layers=4294967296 unit=ns\n@ec layer 4294967295 1\n@ec end\n",
])
def test_huge_layer_counts_do_not_build_huge_tables(text):
    """A corrupted count must not make the host allocate billions of rows (it used to hang)."""
    with fz.time_limit(5):
        r = probe.parse_probe(text)
        rows = probe.layer_table(None, r).rows
    assert len(rows) <= probe.MAX_LAYERS


def test_partial_block_is_reported_incomplete():
    r = probe.parse_probe(GOOD[: GOOD.index("@ec total")])
    assert r.complete is False and r.ticks_list() == [10, 30] and r.total is None
