"""Estimated cycles (edgecomp.cycles): the decoder, the tables, the trace reader, microbenchmarks whose
cycle counts the TRMs give exactly, and `edgecomp run --cycles` on a real model."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgecomp.cycles.account import SegmentStats, price
from edgecomp.cycles.isa import classify, parse_line
from edgecomp.cycles.model import list_tables, load_model, model_for_target
from edgecomp.cycles.trace import _Reader
from edgecomp.errors import EdgecompError
from edgecomp.targets import load_target

DATA = Path(__file__).resolve().parent / "data" / "cycles"


# ------------------------------------------------------------------ decoding QEMU's disassembly
@pytest.mark.parametrize("line, cls, extra", [
    ("0x00000a94:  e8bb 00f0  ldm.w    fp!, {r4, r5, r6, r7}", "load_multiple", dict(nregs=4, writes={4, 5, 6, 7, 11})),
    ("0x00000a9c:  fb28 0004  smlad    r0, r8, r4, r0", "mac", dict(writes={0})),
    ("0x000028f6:  d16d       bne      #0x29d4", "branch", dict(cond=True, writes_pc=True)),
    ("0x00002baa:  bd30       pop      {r4, r5, pc}", "load_multiple", dict(nregs=3, writes_pc=True)),
    ("0x00000a7e:  e8f4 0102  ldrd     r0, r1, [r4], #8", "load_double", dict(writes={0, 1, 4})),
    ("0x0000282e:  4b10       ldr      r3, [pc, #0x40]", "load", dict(addr_regs={15})),
    ("0x00000010:  bf08       movseq   r3, r2", "alu", dict(cond=True)),
    ("0x00000010:  0093       lsls     r3, r2, #2", "alu", dict(cond=False)),
    ("0x00000010:  f103 0302  addne.w  r3, r2, #2", "alu", dict(cond=True)),
    ("0x00000010:  f845 4026  str.w    r4, [r5, r6, lsl #2]", "store", dict(reg_offset=True, addr_regs={5, 6})),
    ("0x00000010:  f240 8002  bls.w    #0x22", "branch", dict(cond=True)),
    ("0x00000010:  b110       cbz      r0, #0x22", "branch", dict(cond=True)),
    ("0x00000a92:  4720       bx       r4", "branch_indirect", dict(writes_pc=True)),
    ("0x00000010:  bf1a       itte     ne", "it", dict(it_count=3)),
    ("0x00000010:  fa2f f084  sxtb16   r0, r4", "simd", dict(writes={0})),
    ("0x00000010:  fb51 f003  smmlar   r0, r1, r3, r0", "mac", dict()),
    ("0x00000010:  ee30 0a20  vadd.f32 s0, s0, s1", "vfp", dict()),
    ("0x00000010:  ecbd 8b02  vpop     {d8}", "vfp_load_multiple", dict(nregs=2)),
    ("0x00000010:  fb90 f0f1  sdiv     r0, r0, r1", "div", dict()),
    ("0x00000010:  f000 f852  bl       #0x28ec", "call", dict(writes={14})),
])
def test_decode(line, cls, extra):
    ins = parse_line(line)
    assert ins is not None and ins.cls == cls
    for k, v in extra.items():
        got = getattr(ins, k)
        assert (set(got) if isinstance(got, frozenset) else got) == v, (k, got)


def test_decode_sizes_and_unknown():
    assert parse_line("0x00000a94:  e8bb 00f0  ldm.w    fp!, {r4, r5}").size == 4
    assert parse_line("0x000028f6:  d16d       bne      #0x29d4").size == 2
    assert parse_line("IN: ec_gemm16_2x2") is None
    assert classify(0, 2, "frobnicate", "r0").cls == "other"  # unknown: priced, reported, not dropped


# ------------------------------------------------------------------ tables
@pytest.mark.parametrize("core", ["cortex-m0", "cortex-m0plus", "cortex-m3", "cortex-m4", "cortex-m7",
                                  "cortex-m33", "cortex-m55"])
def test_every_core_has_a_table_with_its_source(core):
    assert core in list_tables()
    m = load_model(core)
    assert m.core == core and m.version >= 1 and m.source


def test_armv8_1m_instructions_capstone_cannot_print_come_from_the_elf():
    """Debian's Capstone 4.0.2 (QEMU's disassembler) has no Armv8.1-M: `letp lr, 0x37e` (f01f c019) is
    printed as `.byte 0x1f, 0xf0` and a bogus `stm r0!, {...}`: two instructions, one a store-multiple.
    The trace takes such instructions from the ELF (objdump): one instruction, a branch."""
    from edgecomp.cycles.trace import redecode
    lines = ["0x000003a8:  af24       add      r7, sp, #0x90",
             "0x000003aa:  f01f       .byte    0x1f, 0xf0",
             "0x000003ac:  c019       stm      r0!, {r0, r3, r4}"]
    got = redecode([parse_line(ln) for ln in lines], {0x3aa: (4, "letp", "lr, 37e"), 0x3a8: (2, "add", "r7, sp, #144")})
    assert [(i.addr, i.size, i.mnemonic, i.cls) for i in got] == [(0x3a8, 2, "add", "alu"), (0x3aa, 4, "letp", "branch")]
    assert got[-1].writes_pc and got[-1].end == 0x3ae


def test_targets_get_their_core_table_and_flash_wait_states():
    for name in ("cortex-m0", "cortex-m3", "cortex-m4", "cortex-m7"):
        assert model_for_target(load_target(name)).core == name
    nucleo = model_for_target(load_target("nucleo-l4r5zi"))
    assert nucleo.core == "cortex-m4"
    assert (nucleo.memory.wait_states, nucleo.memory.hidden) == (5, True)
    assert model_for_target(load_target("stm32f746g-disco")).core == "cortex-m7"


def test_bad_tables_and_target_timing_are_clear_errors(tmp_path):
    with pytest.raises(EdgecompError, match="no timing table for core 'cortex-m99'"):
        load_model("cortex-m99")
    text = (Path(__file__).resolve().parents[1] / "targets/timing/cortex-m4.toml").read_text()
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace("mac = 1 ", "macc = 1 "))
    with pytest.raises(EdgecompError, match=r"missing \['mac'\], unknown \['macc'\]"):
        load_model(str(bad))
    tgt = tmp_path / "board.toml"
    tgt.write_text((Path(__file__).resolve().parents[1] / "targets/nucleo-l4r5zi.toml").read_text()
                   .replace("flash_accelerator = true", "flash_accelerater = true"))
    with pytest.raises(EdgecompError, match="unknown keys"):
        model_for_target(load_target(str(tgt)))


def test_flash_wait_states_count_only_without_an_accelerator():
    from edgecomp.cycles.model import Memory
    insns = [parse_line(f"0x{0x100 + 2 * i:08x}:  1c52       adds     r2, r2, #1") for i in range(8)]
    hidden = load_model("cortex-m4", Memory(5, 8, True)).block_cost(insns, 16, 0x100)
    slow = load_model("cortex-m4", Memory(5, 8, False)).block_cost(insns, 16, 0x100)
    assert hidden.cycles_nt == 8
    assert slow.cycles_nt == 2 * (1 + 5)  # two 8-byte flash lines at 1 + 5 cycles: fetch-bound


# ------------------------------------------------------------------ the streaming reader
_LOG = """\
----------------
IN: f
0x00000100:  6808       ldr      r0, [r1]
0x00000102:  684a       ldr      r2, [r1, #4]
0x00000104:  3b01       subs     r3, #1
0x00000106:  d1fb       bne      #0x100

Trace 0: 0x7f0000000100 [00000000/00000100/00000010/ff020200] f
Trace 0: 0x7f0000000100 [00000000/00000100/00000010/ff020200] f
cpu_io_recompile: rewound execution of TB to 00000102
----------------
IN: f
0x00000102:  684a       ldr      r2, [r1, #4]

Trace 0: 0x7f0000000200 [00000000/00000102/00000010/ff038201] f
----------------
IN: f
0x00000104:  3b01       subs     r3, #1
0x00000106:  d1fb       bne      #0x100

Trace 0: 0x7f0000000280 [00000000/00000104/00000010/ff020200] f
----------------
IN: g
0x00000108:  4770       bx       lr

Trace 0: 0x7f0000000300 [00000000/00000108/00000010/ff020200] g
Trace 0: 0x7f0000000100 [00000000/00000100/00000010/ff020200] f
Stopped execution of TB chain before 0x7f0000000100 [00000100] f
Trace 0: 0x7f0000000100 [00000000/00000100/00000010/ff020200] f
Trace 0: 0x7f0000000300 [00000000/00000108/00000010/ff020200] g
"""


def test_reader_follows_rewound_and_stopped_blocks():
    r = _Reader(boundary_pc=None, stop_after=None)
    r.feed(_LOG.splitlines())
    st = SegmentStats()
    for s in price(type("T", (), {"blocks": r.blocks, "segments": r.segments})(), load_model("cortex-m4")):
        st.add(s)
    # f's first run has no predecessor line; its second ran only its first LDR (rewound at 0x102: an I/O
    # access), then the second LDR alone, SUBS + BNE falling through into g, g's BX, f again (a start
    # that was stopped before running counts nothing) and g, whose own successor is unknown.
    assert st.instructions == 4 + 1 + 1 + 2 + 1 + 4
    # Cortex-M4: f taken 2+1+1+3 = 7; LDR 2, then the next block's LDR pipelines after it: 1;
    # SUBS + BNE not taken 2; BX 3; f not taken 2+1+1+1 = 5
    assert st.cycles == 7 + 2 + 1 + 2 + 3 + 5
    assert st.functions["f"][0] == 12 and st.functions["g"][0] == 1
    assert (st.taken, st.not_taken) == (2, 2)


# ------------------------------------------------------------------ microbenchmarks vs the TRMs
def _cross_tools():
    for tool in ("arm-none-eabi-gcc", "qemu-system-arm"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed (scripts/install.sh installs it)")


@pytest.fixture(scope="module")
def microbench_trace(tmp_path_factory):
    from edgecomp.cycles.trace import collect

    _cross_tools()
    work = tmp_path_factory.mktemp("microbench")
    elf = work / "microbench.elf"
    subprocess.run(["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "-nostdlib", "-T",
                    str(DATA / "microbench.ld"), str(DATA / "microbench.S"), "-o", str(elf)], check=True)
    trace = collect(elf, load_target("cortex-m4"), work)
    assert trace.boundaries == 11  # one segment per benchmark
    return trace


def _per_function(trace, core) -> dict[str, tuple[int, float]]:
    tot = SegmentStats()
    for s in price(trace, load_model(core)):
        tot.add(s)
    return {k: (int(v[0]), v[1]) for k, v in tot.functions.items() if k.startswith("bench_")}


# Each loop: `movs r3, #100`, 100 iterations ending in `subs r3, r3, #1; bne`, then `bx lr`.
# Cortex-M4 TRM (DDI 0439B) Table 3-1 and 3.3.2, with P = 2: LDR 2 (1 when pipelined after a load),
# STR [Rn, #imm] 1, STR [Rn, Rm] 2, LDM/LDRD 1+N, SMLAD/ALU 1, B taken 1+P = 3, not taken 1, BX 1+P = 3,
# an address written by the instruction before +1.
def _loop(body: float, taken=3, not_taken=1, bx=3, setup=1, n=100) -> float:
    return setup + n * body + (n - 1) * taken + not_taken + bx


M4_EXPECTED = {
    "bench_ldr": _loop(2 + 1 + 1),                    # LDR, ADDS, SUBS
    "bench_ldr_pipelined": _loop(2 + 1 + 1 + 1 + 1),  # four LDRs: 2 + 1 + 1 + 1
    "bench_ldr_dependent": _loop(2 + 2 + 1),          # the second addresses with the first's result
    "bench_address_stall": _loop(1 + (2 + 1) + 1),    # ADDS r0; LDR [r0]: one stall cycle
    "bench_ldm4": _loop((1 + 4) + 1),
    "bench_ldm8": _loop((1 + 8) + 1),
    "bench_ldrd": _loop((1 + 2) + 1),
    "bench_smlad": _loop(4 * 1 + 1),
    "bench_branches": _loop(3 + 3 + 1),               # two taken B
    # STR imm 1, ADDS, STR reg 2, ADDS, LDR 2, STR after LDR 1, LDR (after a store: 2), STR reg after LDR 1
    "bench_stores": _loop(1 + 1 + 2 + 1 + 2 + 1 + 2 + 1 + 1, setup=2),
}
M4_INSTRUCTIONS = {"bench_ldr": 402, "bench_ldr_pipelined": 602, "bench_ldr_dependent": 402,
                   "bench_address_stall": 402, "bench_ldm4": 302, "bench_ldm8": 302, "bench_ldrd": 302,
                   "bench_smlad": 602, "bench_branches": 402, "bench_stores": 1003}


@pytest.mark.toolchain
@pytest.mark.qemu
def test_microbenchmarks_match_the_cortex_m4_trm_exactly(microbench_trace):
    got = _per_function(microbench_trace, "cortex-m4")
    assert {k: v[0] for k, v in got.items()} == M4_INSTRUCTIONS
    assert {k: v[1] for k, v in got.items()} == M4_EXPECTED


@pytest.mark.toolchain
@pytest.mark.qemu
def test_microbenchmarks_match_the_cortex_m3_and_m0plus_trms(microbench_trace):
    # Cortex-M3 TRM (DDI 0337I): the same load/store, LDM and branch timings as the M4 for these loops
    m3 = _per_function(microbench_trace, "cortex-m3")
    for k in ("bench_ldr", "bench_ldr_pipelined", "bench_ldr_dependent", "bench_address_stall", "bench_ldm8",
              "bench_ldrd", "bench_branches", "bench_stores"):
        assert m3[k][1] == M4_EXPECTED[k], k
    # Cortex-M0+ TRM (DDI 0484C): loads and stores 2 (never pipelined), LDM 1+N, B taken 2, BX 2
    m0p = _per_function(microbench_trace, "cortex-m0plus")
    assert m0p["bench_ldr"][1] == _loop(2 + 1 + 1, taken=2, bx=2)
    assert m0p["bench_ldr_pipelined"][1] == _loop(4 * 2 + 1, taken=2, bx=2)
    assert m0p["bench_ldm4"][1] == _loop((1 + 4) + 1, taken=2, bx=2)
    assert m0p["bench_branches"][1] == _loop(2 + 2 + 1, taken=2, bx=2)


@pytest.mark.toolchain
@pytest.mark.qemu
def test_microbenchmarks_under_the_cortex_m7_dual_issue_rule(microbench_trace):
    # The M7 table's documented rule, worked by hand: 1 slot each (LDM 1 + N/2, BX 2); an instruction
    # pairs with the one before unless that one paired, they share a port, or it reads that one's result.
    m7 = _per_function(microbench_trace, "cortex-m7")
    # bench_ldr: first pass MOVS | LDR, ADDS, SUBS | BNE = 3 (LDR pairs with MOVS, SUBS with ADDS...),
    # then each loop pass LDR | ADDS, SUBS | BNE = 2; BX 2.
    assert m7["bench_ldr"][1] == 3 + 99 * 2 + 2
    # bench_smlad: four dependent SMLADs (none pairs with the one before), SUBS pairs with the last,
    # BNE then issues alone: 5 a pass (on the first pass the first SMLAD pairs with MOVS instead: 5 too)
    assert m7["bench_smlad"][1] == 5 + 99 * 5 + 2
    # bench_address_stall: ADDS r0 | LDR [r0] cannot pair (it reads r0), SUBS pairs with the LDR: 3 a pass
    assert m7["bench_address_stall"][1] == 3 + 99 * 3 + 2
    # bench_ldm8: LDM issues alone: 1 + 8/2 = 5, SUBS 1 | BNE: 6 a pass
    assert m7["bench_ldm8"][1] == 1 + 100 * 6 + 2


# ------------------------------------------------------------------ a real model, end to end
@pytest.fixture(scope="module")
def dscnn_bundle(tmp_path_factory, mlperf_dir):
    from edgecomp import api

    _cross_tools()
    out = tmp_path_factory.mktemp("cycles") / "kws"
    api.compile_model(mlperf_dir / "kws_ref_model.tflite", "nucleo-l4r5zi", out)
    return out


@pytest.mark.toolchain
@pytest.mark.qemu
def test_cycles_on_cortex_m55_helium_agree_with_the_probe(tmp_path, mlperf_dir):
    """DS-CNN through the Helium kernels: the trace counted 35 % more instructions than -icount while it
    read Capstone's `.byte` lines (run --cycles failed: 'a bug in edgecomp's trace reader')."""
    from edgecomp import api

    _cross_tools()
    api.compile_model(mlperf_dir / "kws_ref_model.tflite", "cortex-m55", tmp_path / "k")
    x = np.random.default_rng(0).integers(-128, 128, size=(1, 49, 10, 1)).astype(np.int8)
    res = api.run_bundle(tmp_path / "k", x, cycles=True, progress=False).result
    assert abs(res.cycles.total.instructions - res.instructions_per_inference) <= 2 * 32 + 64
    mix = res.cycles.to_json()
    assert "vector" in json.dumps(mix) and res.cycles.total.cycles > 0


@pytest.mark.toolchain
@pytest.mark.qemu
def test_run_with_cycles_on_a_board_target(dscnn_bundle):
    from edgecomp import api

    x = np.random.default_rng(0).integers(-128, 128, size=(1, 49, 10, 1)).astype(np.int8)
    pred = api.run_bundle(dscnn_bundle, x, cycles=True, progress=False)
    res, rep = pred.result, pred.result.cycles
    man = json.loads((dscnn_bundle / "manifest.json").read_text())
    # the trace counts the inference the probe counts (SysTick: 40 instructions a tick)
    assert abs(rep.total.instructions - res.instructions_per_inference) <= 80
    for st, ticks in zip(rep.layers, res.layer_ticks):
        assert abs(st.instructions - ticks * 40) <= 80
    assert rep.total.instructions == sum(s.instructions for s in rep.layers) + rep.probe_overhead.instructions
    # the board's core, wait states and clock; estimates, said so
    j = rep.to_json()
    assert j["estimate"] is True and "not a measurement" in j["note"]
    assert j["timing_model"]["core"] == "cortex-m4" and j["timing_model"]["memory"]["flash_wait_states"] == 5
    assert j["clock_hz"] == 120_000_000
    assert j["total_ms"] == pytest.approx(rep.total.cycles / 120e3, rel=1e-6)
    text = rep.render()
    assert "est. cycles" in text and "at 120 MHz" in text and "not a measurement" in text
    # a Cortex-M4 needs at least a cycle per instruction; the MAC layers spend most in loads and MACs
    assert rep.total.cycles > rep.total.instructions
    convs = [r for r in rep.rows() if r["op"] == "conv2d"]
    assert convs and all(r["mix_pct"]["load/store"] + r["mix_pct"]["multiply/MAC"] > 50 for r in convs)
    assert man["macs"] == rep.macs()


@pytest.mark.toolchain
@pytest.mark.qemu
def test_cli_run_cycles_json_table_png_and_host_refusal(dscnn_bundle, tmp_path):
    def edgecomp(*args):
        return subprocess.run([sys.executable, "-m", "edgecomp.cli", *args], capture_output=True, text=True,
                              timeout=300)

    png = tmp_path / "cycles.png"
    r = edgecomp("run", str(dscnn_bundle), "--cycles", "--json", "--clock-hz", "80e6", "--plot", str(png))
    assert r.returncode == 0, r.stderr
    est = json.loads(r.stdout)["estimated_cycles"]
    assert est["estimate"] is True and len(est["layers"]) == 13 and est["total_cycles"] > 0
    assert est["clock_hz"] == 80e6 and est["total_ms"] == pytest.approx(est["total_cycles"] / 80e3, rel=1e-4)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = edgecomp("run", str(dscnn_bundle), "--cycles", "--host")
    assert r.returncode == 2 and "estimated cycles need the emulator" in r.stderr and "Traceback" not in r.stderr
