"""The Cortex-M firmware shell: build with -Werror, run under QEMU, compare with
the host build and a numpy reference, sizes from the linker, clear errors.

Most tests use a tiny hand-written model (two int8 fully connected layers)
implementing the C API of docs/internals.md, so the shell is tested on its own;
the last tests go through ``write_bundle`` with the real code generator.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgecomp.backends.cortex_m import build, write_firmware
from edgecomp.backends.run import run_bundle
from edgecomp.bundle import write_manifest
from edgecomp.errors import DoesNotFitError, EdgecompError, ToolError
from edgecomp.targets import load_target

W1 = np.array([[1, -2, 3, -4, 5, -6, 7, -8], [2, 2, 2, 2, -2, -2, -2, -2],
               [-1, 0, 1, 0, -1, 0, 1, 0], [3, 1, 4, 1, 5, 9, 2, 6]], dtype=np.int32)
B1 = np.array([10, -20, 30, -40], dtype=np.int32)
W2 = np.array([[1, 2, 3, 4], [-4, -3, -2, -1], [5, -5, 5, -5]], dtype=np.int32)
B2 = np.array([0, 100, -100], dtype=np.int32)


def c_array(a: np.ndarray) -> str:
    return "{" + ", ".join(str(int(v)) for v in a.ravel()) + "}"


MODEL_H = """\
/* model.h - tiny hand-written test model: int8 fully connected 8 -> 4 (ReLU) -> 3 */
#ifndef MODEL_H
#define MODEL_H
#include <stdint.h>
#define EC_INPUT_SIZE 8
#define EC_OUTPUT_SIZE 3
#define EC_ARENA_BYTES {arena}
#define EC_NUM_LAYERS 2
typedef int8_t ec_in_t;
typedef int8_t ec_out_t;
ec_in_t *ec_input(void);
const ec_out_t *ec_output(void);
int ec_invoke(void);
int ec_run(const ec_in_t *in, ec_out_t *out);
extern const char *const ec_layer_name[EC_NUM_LAYERS];
extern const char *const ec_layer_op[EC_NUM_LAYERS];
extern uint32_t ec_layer_ticks[EC_NUM_LAYERS];
#endif
"""

MODEL_C = """\
#include <string.h>

#include "ec_platform.h"
#include "model.h"

static int8_t arena[EC_ARENA_BYTES];
static const int8_t w1[32] = %(w1)s;
static const int32_t b1[4] = %(b1)s;
static const int8_t w2[12] = %(w2)s;
static const int32_t b2[3] = %(b2)s;

const char *const ec_layer_name[EC_NUM_LAYERS] = {"fc1", "fc2"};
const char *const ec_layer_op[EC_NUM_LAYERS] = {"fully_connected", "fully_connected"};
uint32_t ec_layer_ticks[EC_NUM_LAYERS];

ec_in_t *ec_input(void)
{
    return arena;
}

const ec_out_t *ec_output(void)
{
    return arena + 12;
}

static void fully_connected(const int8_t *x, int n_in, const int8_t *w, const int32_t *b, int n_out,
                            int8_t *y, int relu)
{
    for (int o = 0; o < n_out; o++) {
        int32_t acc = b[o];
        for (int i = 0; i < n_in; i++)
            acc += (int32_t)x[i] * w[o * n_in + i];
        acc >>= 3;
        if (relu && acc < 0)
            acc = 0;
        y[o] = (int8_t)(acc < -128 ? -128 : acc > 127 ? 127 : acc);
    }
}

int ec_invoke(void)
{
    %(extra)s
    uint32_t t0 = ec_timer_now();
    fully_connected(arena, 8, w1, b1, 4, arena + 8, 1);
    uint32_t t1 = ec_timer_now();
    fully_connected(arena + 8, 4, w2, b2, 3, arena + 12, 0);
    uint32_t t2 = ec_timer_now();
    ec_layer_ticks[0] = t1 - t0;
    ec_layer_ticks[1] = t2 - t1;
    return 0;
}

int ec_run(const ec_in_t *in, ec_out_t *out)
{
    memcpy(ec_input(), in, EC_INPUT_SIZE);
    int status = ec_invoke();
    memcpy(out, ec_output(), EC_OUTPUT_SIZE);
    return status;
}
"""

LAYERS = [{"name": "fc1", "op": "fully_connected", "out_shape": [1, 4], "macs": 32},
          {"name": "fc2", "op": "fully_connected", "out_shape": [1, 3], "macs": 12}]


def reference(x: np.ndarray) -> np.ndarray:
    h = np.clip(np.maximum((x.astype(np.int32) @ W1.T + B1) >> 3, 0), -128, 127)
    return np.clip((h @ W2.T + B2) >> 3, -128, 127).astype(np.int8)


def tiny_bundle(root: Path, target: str, *, arena: int = 16, extra: str = "") -> Path:
    """A bundle folder with the hand-written model and the firmware shell."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "model.h").write_text(MODEL_H.replace("{arena}", str(arena)))
    (root / "model.c").write_text(MODEL_C % dict(w1=c_array(W1), b1=c_array(B1), w2=c_array(W2),
                                                 b2=c_array(B2), extra=extra))
    write_firmware(root, load_target(target), "tiny")
    write_manifest(root, {"name": "tiny", "target": target, "layers": LAYERS,
                          "inputs": [{"name": "x", "shape": [1, 8], "dtype": "int8"}],
                          "outputs": [{"name": "y", "shape": [1, 3], "dtype": "int8"}]})
    return root


def need(*tools):
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is required (apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm)")


X = np.random.default_rng(7).integers(-128, 128, size=(6, 8)).astype(np.int8)


@pytest.mark.toolchain
@pytest.mark.qemu
def test_cortex_m4_under_qemu_matches_host_build_and_numpy(tmp_path):
    need("arm-none-eabi-gcc", "qemu-system-arm", "gcc")
    b = tiny_bundle(tmp_path / "m4", "cortex-m4")
    files_before = sorted(p.name for p in b.iterdir())
    emu = run_bundle(b, X, progress=False)
    host = run_bundle(b, X, emulate=False)
    want = reference(X)
    np.testing.assert_array_equal(emu.outputs, want)
    np.testing.assert_array_equal(host.outputs, want)
    # probe: per-layer SysTick counts under -icount are deterministic instruction counts
    assert emu.unit == "systick" and host.unit == "ns"
    assert len(emu.layer_ticks) == 2 and all(t > 0 for t in emu.layer_ticks)
    assert emu.total_ticks >= sum(emu.layer_ticks) - 2
    assert emu.instructions_per_inference == emu.total_ticks * 40
    assert 16 <= emu.stack_peak < 512  # painted-stack high-water mark of one ec_invoke
    again = run_bundle(b, X[:1], progress=False)
    assert (again.layer_ticks, again.total_ticks, again.stack_peak) == (emu.layer_ticks, emu.total_ticks, emu.stack_peak)
    # -Werror on both compilers; built outside the bundle: it stays exactly as compiled
    arm_log = build(b, "cortex-m4").log + (b / "Makefile").read_text()
    assert "-Wall -Wextra -Werror" in arm_log
    assert sorted(p.name for p in b.iterdir()) == sorted(files_before)


@pytest.mark.parametrize("name,machine", [("cortex-m3", "mps2-an385"), ("cortex-m7", "mps2-an500")])
@pytest.mark.toolchain
@pytest.mark.qemu
def test_cortex_m3_and_m7_under_qemu(tmp_path, name, machine):
    need("arm-none-eabi-gcc", "qemu-system-arm")
    res = run_bundle(tiny_bundle(tmp_path / name, name), X, progress=False)
    np.testing.assert_array_equal(res.outputs, reference(X))
    assert res.machine == machine and res.unit == "systick" and res.total_ticks > 0


@pytest.mark.toolchain
@pytest.mark.qemu
def test_cortex_m0_microbit_runs_in_16k(tmp_path):
    need("arm-none-eabi-gcc", "qemu-system-arm")
    b = tiny_bundle(tmp_path / "m0", "cortex-m0")
    res = run_bundle(b, X, progress=False)
    np.testing.assert_array_equal(res.outputs, reference(X))
    assert res.unit == "systick" and res.machine == "microbit"
    built = build(b)
    assert built.static_ram_bytes + res.stack_peak < 16 * 1024
    assert built.stack_available_bytes == 16 * 1024 - ((built.static_ram_bytes + 7) & ~7)


@pytest.mark.toolchain
def test_sizes_come_from_the_linker(tmp_path):
    need("arm-none-eabi-gcc", "arm-none-eabi-objcopy")
    b = tiny_bundle(tmp_path / "m4", "cortex-m4")
    res = build(b)
    s = res.sections
    assert res.flash_bytes == s[".text"] + s[".rodata"] + s.get(".ARM.exidx", 0) + s[".data"]
    assert res.static_ram_bytes == s[".data"] + s[".bss"]
    # the flash image that would be programmed has exactly that size (up to alignment)
    binary = tmp_path / "fw.bin"
    subprocess.run(["arm-none-eabi-objcopy", "-O", "binary", str(res.elf), str(binary)], check=True)
    assert 0 <= binary.stat().st_size - res.flash_bytes <= 8
    # model objects only: 32 + 12 weight bytes, 16 + 12 bias bytes, arena 16 + ticks 8
    assert res.model_ram_bytes == 16 + 8
    assert res.model_flash_bytes >= 32 + 12 + 16 + 12
    assert res.model_flash_bytes < res.flash_bytes  # harness and libc are not counted as model


@pytest.mark.toolchain
@pytest.mark.qemu
def test_board_targets_build_at_their_memory_map_and_run_on_the_same_core(tmp_path):
    need("arm-none-eabi-gcc", "arm-none-eabi-nm", "qemu-system-arm")
    for name, ram_end in (("nucleo-l4r5zi", 0x20000000 + 640 * 1024), ("stm32f746g-disco", 0x20000000 + 320 * 1024)):
        b = tiny_bundle(tmp_path / name, name)
        res = build(b)
        syms = subprocess.run(["arm-none-eabi-nm", str(res.elf)], capture_output=True, text=True, check=True).stdout
        addr = {line.split()[2]: int(line.split()[0], 16) for line in syms.splitlines() if len(line.split()) == 3}
        assert addr["ec_vectors"] == 0x08000000 and addr["__stack_top"] == ram_end
        # no emulator for the board: it runs on the emulated machine with the same core and flags
        out = run_bundle(b, X[:2], progress=False)
        np.testing.assert_array_equal(out.outputs, reference(X[:2]))


@pytest.mark.toolchain
def test_model_too_big_for_ram_does_not_fit(tmp_path):
    need("arm-none-eabi-gcc")
    b = tiny_bundle(tmp_path / "big", "cortex-m0", arena=20000)
    with pytest.raises(DoesNotFitError) as e:
        build(b)
    msg = str(e.value)
    assert "RAM" in msg and "overflowed by" in msg and "bytes" in msg


@pytest.mark.toolchain
def test_missing_qemu_is_a_clear_tool_error(tmp_path, monkeypatch):
    need("arm-none-eabi-gcc", "make")
    b = tiny_bundle(tmp_path / "m4", "cortex-m4")
    build(b)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("make", "arm-none-eabi-gcc", "arm-none-eabi-size", "arm-none-eabi-nm", "sh"):
        os.symlink(shutil.which(tool), bindir / tool)
    monkeypatch.setenv("PATH", str(bindir))
    with pytest.raises(ToolError) as e:
        run_bundle(b, X, progress=False)
    assert "qemu-system-arm was not found" in str(e.value) and "apt-get install qemu-system-arm" in str(e.value)


def test_missing_cross_compiler_is_a_clear_tool_error(tmp_path, monkeypatch):
    b = tiny_bundle(tmp_path / "m4", "cortex-m4")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolError, match="make was not found|arm-none-eabi-gcc was not found"):
        build(b)


@pytest.mark.toolchain
@pytest.mark.qemu
def test_firmware_fault_is_reported(tmp_path):
    need("arm-none-eabi-gcc", "qemu-system-arm")
    # read from an address with nothing behind it: a bus fault, escalated to HardFault
    b = tiny_bundle(tmp_path / "fault", "cortex-m4",
                    extra="if (arena[0] == 42) { arena[1] = *(volatile int8_t *)0x90000000u; }")
    x = X.copy()
    x[0, 0] = 42
    with pytest.raises(ToolError, match="hardfault|busfault"):
        run_bundle(b, x, progress=False)


@pytest.mark.toolchain
@pytest.mark.qemu
def test_hanging_firmware_times_out(tmp_path):
    need("arm-none-eabi-gcc", "qemu-system-arm")
    b = tiny_bundle(tmp_path / "hang", "cortex-m4", extra="for (volatile int spin = 1; spin;) { }")
    with pytest.raises(ToolError, match="did not finish within 2 s"):
        run_bundle(b, X[:1], timeout=2, progress=False)


def test_bad_inputs_are_user_errors(tmp_path):
    b = tiny_bundle(tmp_path / "m4", "cortex-m4")
    with pytest.raises(EdgecompError, match="whole samples of 8 elements"):
        run_bundle(b, np.zeros((2, 5), np.int8))
    with pytest.raises(EdgecompError, match="float inputs"):
        run_bundle(b, np.zeros((2, 8), np.float32))
    with pytest.raises(EdgecompError, match="not an edgecomp bundle"):
        run_bundle(tmp_path, np.zeros((2, 8), np.int8))


# --------------------------------------------------------------------------- write_bundle
def _float_mlp():
    from edgecomp import ir

    rng = np.random.default_rng(3)
    w1 = rng.standard_normal((16, 8)).astype(np.float32)
    b1 = rng.standard_normal(16).astype(np.float32)
    w2 = rng.standard_normal((3, 16)).astype(np.float32)
    b2 = rng.standard_normal(3).astype(np.float32)
    t = {
        "x": ir.Tensor("x", (1, 8), "float32"),
        "w1": ir.Tensor("w1", (16, 8), "float32", data=w1), "b1": ir.Tensor("b1", (16,), "float32", data=b1),
        "h": ir.Tensor("h", (1, 16), "float32"),
        "w2": ir.Tensor("w2", (3, 16), "float32", data=w2), "b2": ir.Tensor("b2", (3,), "float32", data=b2),
        "y": ir.Tensor("y", (1, 3), "float32"),
    }
    nodes = [ir.Node("fc1", "fully_connected", ["x", "w1", "b1"], ["h"], {"act": (0.0, float("inf"))}),
             ir.Node("fc2", "fully_connected", ["h", "w2", "b2"], ["y"], {"act": (-float("inf"), float("inf"))})]
    g = ir.Graph("mlp", t, nodes, ["x"], ["y"], {"source": "test", "input_layout": "NHWC"})

    def ref(x):
        return np.maximum(x @ w1.T + b1, 0) @ w2.T + b2

    return g, ref


@pytest.mark.toolchain
@pytest.mark.qemu
def test_write_bundle_is_reproducible_and_runs(tmp_path):
    need("arm-none-eabi-gcc", "qemu-system-arm", "gcc")
    from edgecomp.backends.cortex_m import write_bundle
    from edgecomp.bundle import verify_manifest

    g, ref = _float_mlp()
    m1 = write_bundle(g, "cortex-m4", tmp_path / "a", {"precision": "float32"})
    m2 = write_bundle(g, "cortex-m4", tmp_path / "b", {"precision": "float32"})
    for rel in m1["files"]:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    assert (tmp_path / "a" / "manifest.json").read_bytes() == (tmp_path / "b" / "manifest.json").read_bytes()
    assert str(tmp_path) not in (tmp_path / "a" / "manifest.json").read_text()
    assert not any(p.suffix in (".o", ".elf") for p in (tmp_path / "a").rglob("*"))
    assert m1["target"] == "cortex-m4" and m1["macs"] == 16 * 8 + 3 * 16
    assert m1["ram"]["arena_bytes"] > 0 and m1["ram"]["stack_peak_bytes"] > 0
    assert m1["ram_bytes"] == sum(m1["ram"].values())
    assert m1["flash_bytes"] == sum(m1["sections"][k] for k in (".text", ".rodata", ".data") ) + \
        m1["sections"].get(".ARM.exidx", 0)
    assert [l["name"] for l in m1["layers"]] == ["fc1", "fc2"]
    x = np.random.default_rng(1).standard_normal((4, 8)).astype(np.float32)
    emu = run_bundle(tmp_path / "a", x, progress=False)
    host = run_bundle(tmp_path / "a", x, emulate=False)
    np.testing.assert_allclose(emu.outputs, ref(x), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(host.outputs, ref(x), rtol=1e-4, atol=1e-4)
    assert emu.stack_peak == m1["ram"]["stack_peak_bytes"]
    assert verify_manifest(tmp_path / "a") == []  # running did not touch the hashed files


@pytest.mark.toolchain
def test_write_bundle_that_does_not_fit_leaves_nothing(tmp_path):
    need("arm-none-eabi-gcc")
    from edgecomp import ir
    from edgecomp.backends.cortex_m import write_bundle

    # a 16 KB float input alone fills the 16 KB of RAM of a micro:bit (weights: 64 KB of its 256 KB flash)
    w = np.ones((4, 4096), np.float32)
    t = {"x": ir.Tensor("x", (1, 4096), "float32"), "w": ir.Tensor("w", (4, 4096), "float32", data=w),
         "y": ir.Tensor("y", (1, 4), "float32")}
    g = ir.Graph("big", t, [ir.Node("fc", "fully_connected", ["x", "w"], ["y"], {"act": (-np.inf, np.inf)})],
                 ["x"], ["y"], {})
    with pytest.raises(DoesNotFitError) as e:
        write_bundle(g, "cortex-m0", tmp_path / "big", {})
    assert "cortex-m0" in str(e.value) and "bytes" in str(e.value)
    assert f"(in {tmp_path / 'big'})" in str(e.value)  # the bundle asked for, not a temporary folder
    assert not (tmp_path / "big").exists() and list(tmp_path.iterdir()) == []


@pytest.mark.toolchain
@pytest.mark.qemu
def test_stack_peak_sees_a_known_local_buffer(tmp_path):
    need("arm-none-eabi-gcc", "qemu-system-arm")
    base = run_bundle(tiny_bundle(tmp_path / "base", "cortex-m4"), X[:1], progress=False).stack_peak
    deep = tiny_bundle(tmp_path / "deep", "cortex-m4",
                       extra="volatile uint8_t scratch[1000]; for (int i = 0; i < 1000; i++) scratch[i] = (uint8_t)i; "
                             "if (scratch[999] != (uint8_t)999) return 1;")
    res = run_bundle(deep, X[:1], progress=False)
    np.testing.assert_array_equal(res.outputs, reference(X[:1]))
    assert 1000 <= res.stack_peak - base + 64 and res.stack_peak <= base + 1000 + 64, (base, res.stack_peak)


@pytest.mark.toolchain
@pytest.mark.qemu
def test_stack_of_a_board_without_emulator_is_measured_on_the_same_core(tmp_path):
    need("arm-none-eabi-gcc", "qemu-system-arm")
    from edgecomp.backends.cortex_m import measure_stack

    board = load_target("nucleo-l4r5zi")
    b = tiny_bundle(tmp_path / "l4", board.name)
    built = build(b, board, build_dir=tmp_path / "out")
    on_board_flags = measure_stack(b, board, built, input_bytes=8)
    on_m4 = run_bundle(tiny_bundle(tmp_path / "m4", "cortex-m4"), X[:1], progress=False).stack_peak
    assert on_board_flags == on_m4 and on_m4 > 0  # same core, same flags, same code
    assert measure_stack(b, load_target("stm32f746g-disco"), built, input_bytes=8) > 0


def test_model_names_that_cannot_go_into_c_are_refused(tmp_path):
    with pytest.raises(EdgecompError, match="cannot be used in the firmware"):
        write_firmware(tmp_path, load_target("cortex-m4"), 'my "model"; rm -rf')


@pytest.mark.toolchain
@pytest.mark.qemu
def test_firmware_errors_and_exit_status_reach_the_host(tmp_path):
    need("arm-none-eabi-gcc", "qemu-system-arm")
    from edgecomp.backends.emulator import qemu_command, run_firmware

    target = load_target("cortex-m4")
    elf = build(tiny_bundle(tmp_path / "m4", "cortex-m4"), target).elf
    work = tmp_path / "empty"
    work.mkdir()
    p = subprocess.run(qemu_command(target, elf), cwd=work, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "@ec error cannot open ec_input.bin" in p.stdout + p.stderr
    with pytest.raises(ToolError, match="cannot open ec_input.bin"):
        run_firmware(elf, target, work)
    (work / "ec_input.bin").write_bytes(bytes(13))  # not a whole number of 8-byte inputs
    with pytest.raises(ToolError, match="not a multiple of the model input"):
        run_firmware(elf, target, work)


# A user's own console for a board without semihosting: the CMSDK APB UART0 of
# the MPS2 boards (what ec_putc would be on a real board's UART).
UART_C = """\
#include <stdint.h>

#include "ec_platform.h"

#define UART0_DATA (*(volatile uint32_t *)0x40004000u)
#define UART0_STATE (*(volatile uint32_t *)0x40004004u)
#define UART0_CTRL (*(volatile uint32_t *)0x40004008u)
#define UART0_BAUDDIV (*(volatile uint32_t *)0x40004010u)

void ec_board_init(void)
{
    UART0_BAUDDIV = 16;
    UART0_CTRL = 1; /* transmit enable */
}

void ec_putc(char c)
{
    while (UART0_STATE & 1u) { /* transmit buffer full */
    }
    UART0_DATA = (uint8_t)c;
}
"""


@pytest.mark.toolchain
@pytest.mark.qemu
def test_board_without_semihosting_prints_the_probe_on_its_uart(tmp_path):
    """The flow of a real board: user's ec_putc on a UART, probe read from a serial port (QEMU's pty)."""
    need("arm-none-eabi-gcc", "qemu-system-arm")
    import re
    import time

    from edgecomp.probe import layer_table, parse_probe, read_serial

    board = tmp_path / "mps2-uart.toml"
    board.write_text(Path(load_target("cortex-m4").path).read_text()
                     .replace('name = "cortex-m4"', 'name = "mps2-uart"').replace("semihosting = true", "semihosting = false"))
    b = tiny_bundle(tmp_path / "b", "cortex-m4")
    (b / "manifest.json").unlink()  # the same sources, now a folder of the user's own project,
    write_firmware(b, load_target(str(board)), "tiny")  # built as for a board on its own
    (tmp_path / "uart.c").write_text(UART_C)  # the user's driver, named explicitly
    elf = build(b, load_target(str(board)), build_dir=tmp_path / "out", extra_sources=[tmp_path / "uart.c"]).elf
    cmd = ["qemu-system-arm", "-M", "mps2-an386", "-nographic", "-monitor", "none", "-serial", "pty",
           "-icount", "shift=0", "-S", "-qmp", "stdio", "-kernel", str(elf)]
    # -S: start stopped, so the reader is attached before the first byte; QMP "cont" starts the core
    qemu = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        pty = None
        deadline = time.monotonic() + 20
        while pty is None and time.monotonic() < deadline:
            line = qemu.stdout.readline()
            m = re.search(r"char device redirected to (/dev/pts/\d+)", line)
            pty = m.group(1) if m else None
        assert pty, "QEMU did not report its serial pty"
        import threading
        text: list[str] = []
        reader = threading.Thread(target=lambda: text.append(read_serial(pty, 115200, timeout=20)))
        reader.start()
        time.sleep(0.3)
        qemu.stdin.write('{"execute": "qmp_capabilities"}\n{"execute": "cont"}\n')
        qemu.stdin.flush()
        reader.join()
    finally:
        qemu.kill()
        qemu.wait()
    report = parse_probe(text[0])
    assert report.complete and report.model == "tiny" and report.unit == "systick"
    assert len(report.layer_ticks) == 2 and report.total > 0 and report.stack > 0
    table = layer_table({"layers": LAYERS}, report)
    assert [r["name"] for r in table.rows] == ["fc1", "fc2"]
