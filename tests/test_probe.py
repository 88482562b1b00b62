"""The probe reader: parsing robust to noise, tables joined with the manifest, serial."""
from __future__ import annotations

import json
import os
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecomp.errors import EdgecompError, ToolError
from edgecomp.probe import layer_table, parse_probe, parse_probe_blocks, read_serial

GOOD = [
    "@ec begin model=kws layers=3 unit=cycles",
    "@ec layer 0 1200",
    "@ec layer 1 600",
    "@ec layer 2 200",
    "@ec total 2000",
    "@ec stack 312",
    "@ec end",
]
MANIFEST = {"name": "kws", "layers": [
    {"name": "conv1", "op": "conv2d", "out_shape": [1, 8, 8, 4], "macs": 2400},
    {"name": "pool", "op": "max_pool2d", "out_shape": [1, 4, 4, 4], "macs": 0},
    {"name": "fc", "op": "fully_connected", "out_shape": [1, 10], "macs": 640},
]}


def test_parse_clean_lines():
    r = parse_probe("\n".join(GOOD) + "\n")
    assert (r.model, r.layers, r.unit) == ("kws", 3, "cycles")
    assert r.ticks_list() == [1200, 600, 200] and r.total == 2000 and r.stack == 312 and r.complete


def test_parse_tolerates_noise_cr_garbage_and_partial_lines():
    text = ("\x00\xffboot v1.2\r\n"            # boot noise
            "@ec lay"                            # a cut-off line ...
            "\r\n" + "\r\n".join(GOOD[:2]) +    # ... then CRLF lines
            "\r\n@ec layer 1 6x0\r\n"            # garbage number: ignored
            "@ec layer 7 5\r\n"                  # index out of range: ignored
            "uart junk @ec layer 1 600\r"        # noise before the marker, bare CR
            "@ec layer 2 200\n@ec total 2000\n@ec stack 312\n@ec end\n"
            "@ec begin model=kws layers=3 unit=cyc")  # next block, cut off
    r = parse_probe(text.encode("latin-1"))
    assert r.ticks_list() == [1200, 600, 200] and r.total == 2000 and r.stack == 312 and r.complete


def test_parse_picks_last_complete_block_and_reports_faults():
    two = "\n".join(GOOD).replace("1200", "999") + "\n" + "\n".join(GOOD) + "\n"
    assert parse_probe(two).layer_ticks[0] == 1200
    assert len(parse_probe_blocks(two)) == 2
    r = parse_probe("@ec begin model=m layers=1 unit=systick\n@ec fault hardfault\n")
    assert not r.complete and r.faults == ["fault: hardfault"]


def test_parse_without_probe_lines_is_a_clear_error():
    with pytest.raises(EdgecompError, match="no probe lines"):
        parse_probe("hello\nworld\n")


@settings(max_examples=60, deadline=None)
@given(noise=st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30), max_size=len(GOOD) + 1))
def test_parse_never_crashes_and_keeps_values_with_noise_lines_between(noise):
    lines = []
    for i, good in enumerate(GOOD):
        if i < len(noise):
            lines.append(noise[i].replace("@ec", "ec").replace("\r", " ").replace("\n", " ").replace("\x85", " ")
                         .replace("\u2028", " ").replace("\u2029", " "))
        lines.append(good)
    r = parse_probe("\n".join(lines) + "\n")
    assert r.ticks_list() == [1200, 600, 200] and r.total == 2000 and r.complete


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=200))
def test_parse_of_random_bytes_never_raises_anything_but_edgecomp_error(data):
    try:
        parse_probe(data)
    except EdgecompError:
        pass


def test_layer_table_joins_manifest(tmp_path):
    t = layer_table(MANIFEST, parse_probe("\n".join(GOOD) + "\n"), clock_hz=100e6)
    rows = t.rows
    assert [r["name"] for r in rows] == ["conv1", "pool", "fc"]
    assert [r["share_pct"] for r in rows] == [60.0, 30.0, 10.0]
    assert rows[0]["macs_per_tick"] == 2.0 and rows[1]["macs_per_tick"] is None
    assert rows[0]["ms"] == pytest.approx(0.012) and t.total_ms == pytest.approx(0.02)
    text = t.render()
    assert "conv1" in text and "8x8" in text and "60.0" in text and "0.02 ms" in text and "312" in text
    js = json.loads(json.dumps(t.to_json()))
    assert js["total_ticks"] == 2000 and js["layers"][2]["ticks"] == 200
    png = t.plot(tmp_path / "bars.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 2000


def test_layer_table_rejects_a_probe_from_another_model():
    text = "@ec begin model=x layers=2 unit=ns\n@ec layer 0 1\n@ec layer 1 1\n@ec total 2\n@ec end\n"
    with pytest.raises(EdgecompError, match="2 layers but the bundle has 3"):
        layer_table(MANIFEST, text)


def test_read_serial_through_a_pseudo_terminal():
    serial = pytest.importorskip("serial")  # noqa: F841  (pyserial is a dependency)
    import tty

    master, slave = os.openpty()
    tty.setraw(slave)
    port = os.ttyname(slave)
    payload = ("\x00garbage before reset\r\n" + "\r\n".join(GOOD) + "\r\nafter the end\r\n").encode()

    def board():
        time.sleep(0.2)
        for i in range(0, len(payload), 17):  # arrives in pieces, like a UART
            os.write(master, payload[i:i + 17])
            time.sleep(0.005)

    th = threading.Thread(target=board)
    th.start()
    try:
        text = read_serial(port, 115200, timeout=5.0)
    finally:
        th.join()
        os.close(master)
        os.close(slave)
    r = parse_probe(text)
    assert r.ticks_list() == [1200, 600, 200] and r.stack == 312 and r.complete


def test_read_serial_missing_port_is_a_tool_error():
    with pytest.raises(ToolError, match="cannot open serial port /dev/ttyEC_NOPE"):
        read_serial("/dev/ttyEC_NOPE", 115200, timeout=0.5)


def test_layer_table_row_fused_layer():
    """A layer computed row by row inside the next one (the C backend's row fusion): its row says where
    its time went, and the next row's MACs per tick count both layers' MACs."""
    manifest = {"name": "m", "layers": [
        {"name": "a", "op": "conv2d", "out_shape": [1, 4, 4, 8], "macs": 1000, "fused_into": "b"},
        {"name": "b", "op": "conv2d", "out_shape": [1, 4, 4, 8], "macs": 1000},
        {"name": "c", "op": "softmax", "out_shape": [1, 8], "macs": 0}]}
    text = "@ec begin model=m layers=3 unit=cycles\n@ec layer 0 0\n@ec layer 1 500\n@ec layer 2 10\n" \
           "@ec total 510\n@ec end\n"
    rows = layer_table(manifest, parse_probe(text)).rows
    assert rows[0]["op"] == "conv2d (in b)" and rows[0]["macs_per_tick"] is None
    assert rows[1]["macs_per_tick"] == 4.0 and rows[2]["macs_per_tick"] is None


def test_layer_table_names_each_layers_kernel():
    """Bundles record which kernel each layer runs (backends.c.emitter.kernel_label); the table shows it in a
    last column, and leaves the column out for manifests without it (older bundles)."""
    man = {"name": "m", "layers": [dict(MANIFEST["layers"][0], kernel="conv2d_s8_gemm, int16 weights"),
                                   dict(MANIFEST["layers"][1], kernel="max_pool2d_s8"),
                                   dict(MANIFEST["layers"][2], kernel="")]}
    text = layer_table(man, parse_probe("\n".join(GOOD) + "\n")).render()
    header = text.splitlines()[0]
    assert header.rstrip().endswith("kernel") and "conv2d_s8_gemm, int16 weights" in text
    assert "kernel" not in layer_table(MANIFEST, parse_probe("\n".join(GOOD) + "\n")).render()
