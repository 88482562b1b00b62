"""The executed-instruction trace of a firmware under QEMU, read as it streams.

QEMU runs the ELF with ``-d in_asm,exec,nochain`` and writes its log into a pipe (``-D
/dev/fd/N``); nothing is stored. ``in_asm`` prints each block of guest code once, when it is
translated (Capstone's disassembly, :mod:`edgecomp.cycles.isa` decodes it); ``exec`` prints one
``Trace`` line every time a block runs (``nochain`` makes QEMU go through its main loop between
blocks, so every run is logged). The reader keeps, per *segment* of the run, how often each block
ran followed by each other block: enough to price a taken branch (the next block does not start
where the block falls through), pipelining across blocks and the mix per instruction class.

Segments are cut where the program enters a *boundary* function: the firmware's
``ec_timer_now``, which the probe calls before the first layer and after every layer, so the
segments between those calls are the probe's layers. ``-dfilter`` keeps the harness's stack
painting and scanning (millions of iterations, outside the inference) out of the log. Two other
things QEMU writes are followed: ``cpu_io_recompile: rewound execution of TB to X`` (the block
stopped before an I/O access at X and runs again from X: only the instructions before X ran) and
``Stopped execution of TB chain before`` (the block did not run at all).

Plugins (``-plugin``) would be cleaner but need QEMU's plugin header, which Debian does not ship
and edgecomp must not copy: see docs/cycles.md.
"""
from __future__ import annotations

import os
import re
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import ToolError
from .isa import Insn, classify, mark_it_blocks, parse_line

#: Functions of the harness kept out of the log: they run before / after the measured inference
#: (painting and scanning the stack) and would cost most of the trace.
HARNESS_EXCLUDE = ("paint_stack", "stack_used_below", "measured_invoke")
BOUNDARY = "ec_timer_now"
_KEY = 1 << 22  # pair key = predecessor id * _KEY + successor id


@dataclass
class Block:
    """A translated block as it ran: its instructions, function and where it falls through."""

    id: int
    pc: int
    insns: list[Insn]
    func: str

    @property
    def fallthrough(self) -> int:
        return self.insns[-1].end if self.insns else self.pc

    @property
    def nbytes(self) -> int:
        return (self.insns[-1].end - self.pc) if self.insns else 0


@dataclass
class Trace:
    blocks: list[Block]                      # index = block id; 0 is "did not run"
    segments: list[dict[int, int]]           # per segment: pair key -> times
    boundaries: int = 0                      # entries into the boundary function seen
    complete: bool = True                    # False when reading stopped at stop_after
    seconds: float = 0.0
    log_lines: int = 0
    stderr: str = field(default="", repr=False)

    @staticmethod
    def unpack(key: int) -> tuple[int, int]:
        return key // _KEY, key % _KEY


def _binutils(tool: str, *args, elf: Path) -> str:
    """The output of ``arm-none-eabi-<tool> args elf``, or a clear error."""
    exe = shutil.which(f"arm-none-eabi-{tool}")
    if exe is None:
        raise ToolError(f"arm-none-eabi-{tool} was not found on PATH", str(elf),
                        "install the Arm toolchain (Debian: apt-get install gcc-arm-none-eabi binutils-arm-none-eabi)")
    out = subprocess.run([exe, *args, str(elf)], capture_output=True, text=True)
    if out.returncode != 0:
        raise ToolError(f"arm-none-eabi-{tool} failed on the firmware: {out.stderr.strip()[:300]}", str(elf),
                        "build the bundle again")
    return out.stdout


def symbols(elf: Path) -> dict[str, tuple[int, int]]:
    """Function symbols of an ELF: name -> (address with the Thumb bit cleared, size)."""
    syms: dict[str, tuple[int, int]] = {}
    for line in _binutils("nm", "-S", "--defined-only", elf=elf).splitlines():
        parts = line.split()  # address [size] type name (no size for assembly without .size)
        if len(parts) in (3, 4) and parts[-2].lower() in ("t", "w"):
            size = int(parts[1], 16) if len(parts) == 4 else 0
            syms[parts[-1]] = (int(parts[0], 16) & ~1, size)
    return syms


_OBJDUMP = re.compile(r"^\s*([0-9a-f]+):\s+([0-9a-f]{4})(?: ([0-9a-f]{4}))?\s+(\S+)\s*([^<;@]*)")


def elf_instructions(elf: Path) -> dict[int, tuple[int, str, str]]:
    """address -> (size, mnemonic, operands) of every instruction of the ELF, from
    ``arm-none-eabi-objdump -d``: the decoding of what QEMU's disassembler cannot print (Debian's
    Capstone 4.0.2 has no Armv8.1-M: ``letp``, ``dls``/``le``, Helium come out as ``.byte`` plus a
    bogus 16-bit instruction)."""
    # Armv8.1-M Mainline: without it objdump prints Helium instructions as coprocessor ones (cdp);
    # only firmware with instructions Capstone 4 cannot print (that architecture's) gets here
    found: dict[int, tuple[int, str, str]] = {}
    for line in _binutils("objdump", "-d", "-marmv8.1-m.main", elf=elf).splitlines():
        m = _OBJDUMP.match(line)
        if m:
            found[int(m.group(1), 16)] = (4 if m.group(3) else 2, m.group(4), m.group(5).strip().rstrip(","))
    return found


def redecode(insns: list[Insn], decoded: dict[int, tuple[int, str, str]]) -> list[Insn]:
    """``insns`` with every ``.byte`` QEMU printed (and the bogus instructions after it inside the
    same real instruction) replaced by the ELF's instruction at that address."""
    out: list[Insn] = []
    skip_to = -1
    for ins in insns:
        if ins.addr < skip_to:
            continue
        got = decoded.get(ins.addr) if ins.mnemonic == ".byte" else None
        if got is None:
            out.append(ins)
            continue
        size, mnemonic, ops = got
        out.append(replace(classify(ins.addr, size, mnemonic, ops), text=f"{mnemonic} {ops}".strip()))
        skip_to = ins.addr + size
    return out


def dfilter(syms: dict[str, tuple[int, int]], exclude: tuple[str, ...]) -> str | None:
    """A ``-dfilter`` argument logging every address except the excluded functions."""
    holes = sorted((syms[n][0], syms[n][0] + syms[n][1]) for n in exclude if n in syms and syms[n][1])
    if not holes:
        return None
    ranges, start = [], 0
    for lo, hi in holes:
        if lo > start:
            ranges.append(f"{start:#x}..{lo - 1:#x}")
        start = max(start, hi)
    ranges.append(f"{start:#x}..0xffffffff")
    return ",".join(ranges)


class _Reader:
    """The streaming parser: feed it lines, it keeps per-segment block-pair counts."""

    def __init__(self, boundary_pc: int | None, stop_after: int | None, elf: Path | None = None):
        self.elf = elf
        self.decoded: dict[int, tuple[int, str, str]] | None = None  # the ELF's instructions, read once if needed
        self.blocks: list[Block] = [Block(0, 0, [], "")]
        self.known: dict[str, int] = {}
        self.pending: dict[int, tuple[str, list[Insn]]] = {}  # pc -> last translation printed there
        self.expect: int | None = None     # pc of the block just translated: its Trace line comes next
        self.partial: dict[tuple[int, int], int] = {}
        self.boundary_pc = boundary_pc
        self.boundary_ids: set[int] = set()
        self.stop_after = stop_after
        self.segments: list[dict[int, int]] = [{}]
        self.boundaries = 0
        self.cur = 0
        self.in_block: list[Insn] | None = None
        self.func = ""
        self.lines = 0
        self.done = False

    @staticmethod
    def _pc(line: str) -> int:
        lb = line.find("[")  # Trace 0: <host pointer> [cs_base/pc/flags/cflags] symbol
        return int(line[lb + 1:line.find("]", lb)].split("/")[1], 16)

    def _new_block(self, line: str, pc: int) -> int:
        got = self.pending.get(pc)
        if got is None:
            raise ToolError(f"QEMU ran a block at {pc:#x} whose disassembly it did not print", None,
                            "QEMU must be built with Capstone (Debian's qemu-system-arm is); "
                            "report this with the QEMU version")
        func, insns = got
        bid = len(self.blocks)
        self.blocks.append(Block(bid, pc, insns, func))
        self.known[line] = bid
        if pc == self.boundary_pc:
            self.boundary_ids.add(bid)
        return bid

    def feed(self, lines: list[str]) -> bool:
        """Read lines; True once ``stop_after`` boundary entries were seen."""
        known_get = self.known.get
        seg = self.segments[-1]
        seg_get = seg.get
        cur_k = self.cur * _KEY
        bids = self.boundary_ids
        expect = self.expect
        for line in lines:
            bid = known_get(line)
            if bid is None or expect is not None:
                if not line.startswith("Trace "):
                    self._other(line)
                    expect = self.expect
                    cur_k = self.cur * _KEY
                    continue
                # A block translated again at a pc (after QEMU flushed its code buffer, the same
                # host pointer may come back) runs right after its disassembly is printed.
                pc = self._pc(line)
                if bid is None or pc == expect:
                    bid = self._new_block(line, pc)
                self.expect = expect = None
            k = cur_k + bid
            seg[k] = seg_get(k, 0) + 1
            self.cur = bid
            cur_k = bid * _KEY
            if bid in bids:
                self.boundaries += 1
                if self.stop_after is not None and self.boundaries >= self.stop_after:
                    self.done = True
                    break
                seg = {}
                seg_get = seg.get
                self.segments.append(seg)
        self.lines += len(lines)
        return self.done

    def _other(self, line: str) -> None:
        if self.in_block is not None:
            if line.startswith("0x"):
                ins = parse_line(line)
                if ins is not None:
                    self.in_block.append(ins)
                return
            if self.in_block:
                insns = self.in_block
                if self.elf is not None and any(i.mnemonic == ".byte" for i in insns):
                    if self.decoded is None:
                        self.decoded = elf_instructions(self.elf)
                    insns = redecode(insns, self.decoded)
                insns = mark_it_blocks(insns)
                pc = insns[0].addr
                self.pending[pc] = (self.func, insns)
                self.expect = pc
            self.in_block = None
        if line.startswith("IN:"):
            self.in_block = []
            self.func = line[3:].strip()
        elif line.startswith("cpu_io_recompile: rewound execution of TB to "):
            stop = int(line.rsplit(" ", 1)[1], 16)
            key = (self.cur, stop)
            if key not in self.partial:
                b = self.blocks[self.cur]
                insns = [i for i in b.insns if i.addr < stop]
                if insns:
                    nb = Block(len(self.blocks), b.pc, insns, b.func)
                    self.blocks.append(nb)
                    self.partial[key] = nb.id
                else:
                    self.partial[key] = 0
            self._replace_cur(self.partial[key])
        elif line.startswith("Stopped execution of TB chain"):
            self._replace_cur(0)

    def _replace_cur(self, new: int) -> None:
        """The block just counted ran only partly (or not at all): count ``new`` in its place.

        Its predecessor's pair was counted with the right successor pc, so only the pair the
        block will form with its own successor changes: that uses ``self.cur``."""
        self.cur = new


def collect(elf: Path, emu, workdir: Path, *, boundary: str = BOUNDARY, exclude: tuple[str, ...] = HARNESS_EXCLUDE,
            stop_after: int | None = None, timeout: float = 300.0) -> Trace:
    """Run ``elf`` under QEMU (``emu``: the emulated target) in ``workdir`` (its input file already
    there) and return the block-pair counts per segment between entries into ``boundary``."""
    from ..backends.emulator import qemu_command

    if shutil.which("qemu-system-arm") is None:
        raise ToolError("qemu-system-arm was not found on PATH", None,
                        "install it (Debian/Ubuntu: apt-get install qemu-system-arm)")
    syms = symbols(elf)
    boundary_pc = syms[boundary][0] if boundary in syms else None
    cmd = qemu_command(emu, elf) + ["-d", "in_asm,exec,nochain"]
    flt = dfilter(syms, exclude)
    if flt:
        cmd += ["-dfilter", flt]
    reader = _Reader(boundary_pc, stop_after, elf)
    start = time.monotonic()
    r, w = os.pipe()
    with tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(cmd + ["-D", f"/dev/fd/{w}"], cwd=workdir, pass_fds=(w,),
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        finally:
            os.close(w)
        rest = ""
        try:
            while True:
                if time.monotonic() - start > timeout:
                    raise ToolError(f"the traced run did not finish within {timeout:g} s", str(elf),
                                    "the firmware may hang; run it without --cycles first")
                ready, _, _ = select.select([r], [], [], 1.0)
                if not ready:
                    continue
                chunk = os.read(r, 1 << 20)
                if not chunk:
                    break
                lines = (rest + chunk.decode("latin-1")).split("\n")
                rest = lines.pop()
                if reader.feed(lines):
                    break
        finally:
            os.close(r)
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        err.seek(0)
        stderr = err.read().decode("utf-8", errors="replace")
    if not reader.done and proc.returncode != 0:
        tail = "\n".join(stderr.strip().splitlines()[-5:])
        raise ToolError(f"QEMU exited with status {proc.returncode} during the traced run", str(elf),
                        f"see its output:\n{tail}")
    return Trace(reader.blocks, reader.segments, reader.boundaries, complete=not reader.done,
                 seconds=time.monotonic() - start, log_lines=reader.lines, stderr=stderr)
