"""UF2 files: the drag-and-drop flashing format of the Raspberry Pi Pico boot ROMs.

A board in BOOTSEL mode shows up as a USB drive; copying a ``.uf2`` file onto it
writes the file's blocks to flash and reboots.  A UF2 file is a sequence of
512-byte blocks, each carrying 256 bytes of the image and where they go
(Microsoft's UF2 specification, github.com/microsoft/uf2)::

    offset  field
    0       magic 0x0A324655 ("UF2\\n")
    4       magic 0x9E5D5157
    8       flags (0x00002000: the family id field is present)
    12      target address (flash address of the payload)
    16      payload size (256)
    20      block number (0 .. number of blocks - 1)
    24      number of blocks
    28      family id (which chip the image is for)
    32      476 data bytes: the payload, then zeros
    508     magic 0x0AB16F30

:func:`elf_to_uf2` takes the loadable bytes of a linked firmware (program
headers with file contents, at their load addresses: ``.data`` counts at its
flash copy), cuts them into 256-byte pages (gaps inside a page are zeros) and
refuses anything outside the target's flash.  RP2350 images may start with the
workaround for erratum RP2350-E10 (UF2 drag-and-drop onto a device holding a
partition table): one block of the *absolute* family, 256 bytes of 0xEF, aimed
at the end of the 16 MB flash window, as the Pico SDK's picotool writes it.
:func:`read_uf2` and :func:`check_uf2` read a file back and check it.

Also a command: ``python -m edgecomp.uf2 fw.elf fw.uf2 --family rp2350-arm-s
--flash 0x10000000:0x400000 [--abs-block 0x10ffff00]`` (the bundle's ``make uf2``).
"""
from __future__ import annotations

import argparse
import os
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import EdgecompError

MAGIC_START0 = 0x0A324655
MAGIC_START1 = 0x9E5D5157
MAGIC_END = 0x0AB16F30
FLAG_NOT_MAIN_FLASH = 0x00000001
FLAG_FAMILY_ID = 0x00002000
BLOCK_BYTES = 512
PAGE_BYTES = 256
DATA_BYTES = 476

#: Family ids of the Raspberry Pi chips (microsoft/uf2 utils/uf2families.json).
FAMILIES = {
    "rp2040": 0xE48BFF56,
    "absolute": 0xE48BFF57,
    "data": 0xE48BFF58,
    "rp2350-arm-s": 0xE48BFF59,
    "rp2350-riscv": 0xE48BFF5A,
    "rp2350-arm-ns": 0xE48BFF5B,
}
ABS_BLOCK_FILL = 0xEF

_HEADER = struct.Struct("<8I")  # magics, flags, address, size, block number, blocks, family
_PT_LOAD = 1
_EM_ARM = 40


@dataclass(frozen=True)
class Uf2Block:
    flags: int
    address: int
    payload: bytes
    block_no: int
    num_blocks: int
    family: int


# --------------------------------------------------------------------------- ELF
def load_segments(elf: Path) -> list[tuple[int, bytes]]:
    """(load address, bytes) of every program header with file contents in a 32-bit ARM ELF."""
    data = Path(elf).read_bytes()
    if data[:4] != b"\x7fELF" or len(data) < 52:
        raise EdgecompError("not an ELF file", str(elf), "pass the firmware built by the bundle's Makefile (fw.elf)")
    if data[4] != 1 or data[5] != 1:
        raise EdgecompError("not a 32-bit little-endian ELF file", str(elf), "pass an Arm Cortex-M firmware")
    machine, = struct.unpack_from("<H", data, 18)
    if machine != _EM_ARM:
        raise EdgecompError(f"the ELF file is for machine {machine}, not Arm", str(elf), "pass an Arm Cortex-M firmware")
    phoff, = struct.unpack_from("<I", data, 28)
    phentsize, phnum = struct.unpack_from("<HH", data, 42)
    segments = []
    for i in range(phnum):
        off = phoff + i * phentsize
        if off + 32 > len(data):
            raise EdgecompError("the ELF file is truncated", str(elf), "build the firmware again")
        p_type, p_offset, _vaddr, p_paddr, p_filesz = struct.unpack_from("<5I", data, off)
        if p_type == _PT_LOAD and p_filesz:
            if p_offset + p_filesz > len(data):
                raise EdgecompError("the ELF file is truncated", str(elf), "build the firmware again")
            segments.append((p_paddr, data[p_offset:p_offset + p_filesz]))
    if not segments:
        raise EdgecompError("the ELF file has nothing to load", str(elf), "build the firmware again")
    return segments


def pages_of(segments: list[tuple[int, bytes]], flash_origin: int, flash_size: int,
             where: str | None = None) -> dict[int, bytes]:
    """The 256-byte flash pages the segments fill (zeros elsewhere in a page); all inside flash."""
    end = flash_origin + flash_size
    pages: dict[int, bytearray] = {}
    filled: dict[int, bytearray] = {}
    for addr, blob in segments:
        if addr < flash_origin or addr + len(blob) > end:
            raise EdgecompError(f"the image has {len(blob):,} bytes at 0x{addr:08x}, outside the flash "
                                f"0x{flash_origin:08x}-0x{end:08x}", where,
                                "link the firmware for this board (its linker.ld places everything in flash)")
        pos = 0
        while pos < len(blob):  # one page piece at a time
            a = addr + pos
            page, off = a - a % PAGE_BYTES, a % PAGE_BYTES
            n = min(PAGE_BYTES - off, len(blob) - pos)
            buf = pages.setdefault(page, bytearray(PAGE_BYTES))
            mask = filled.setdefault(page, bytearray(PAGE_BYTES))
            if any(mask[off:off + n]):
                raise EdgecompError(f"two load segments overlap near 0x{a:08x}", where, "check the linker script")
            buf[off:off + n] = blob[pos:pos + n]
            mask[off:off + n] = b"\x01" * n
            pos += n
    return {k: bytes(v) for k, v in sorted(pages.items())}


# --------------------------------------------------------------------------- UF2
def _block(flags: int, address: int, payload: bytes, block_no: int, num_blocks: int, family: int) -> bytes:
    assert len(payload) <= DATA_BYTES
    head = _HEADER.pack(MAGIC_START0, MAGIC_START1, flags, address, len(payload), block_no, num_blocks, family)
    return head + payload + bytes(DATA_BYTES - len(payload)) + struct.pack("<I", MAGIC_END)


def encode(pages: dict[int, bytes], family: int, abs_block: int | None = None) -> bytes:
    """UF2 blocks of the pages (ascending addresses), after the RP2350-E10 block when ``abs_block`` is given."""
    out = []
    if abs_block is not None:
        # picotool's block: its own family, numbered 0 of 2 (it never completes a download by itself)
        out.append(_block(FLAG_FAMILY_ID, abs_block, bytes([ABS_BLOCK_FILL]) * PAGE_BYTES, 0, 2,
                          FAMILIES["absolute"]))
    n = len(pages)
    for i, (addr, payload) in enumerate(sorted(pages.items())):
        out.append(_block(FLAG_FAMILY_ID, addr, payload, i, n, family))
    return b"".join(out)


def read_uf2(data: bytes) -> list[Uf2Block]:
    """The blocks of a UF2 file; ValueError on a malformed block (size, magic numbers, payload size)."""
    if len(data) % BLOCK_BYTES:
        raise ValueError(f"{len(data)} bytes is not a whole number of {BLOCK_BYTES}-byte blocks")
    blocks = []
    for i in range(0, len(data), BLOCK_BYTES):
        m0, m1, flags, addr, size, no, num, fam = _HEADER.unpack_from(data, i)
        end, = struct.unpack_from("<I", data, i + BLOCK_BYTES - 4)
        if (m0, m1, end) != (MAGIC_START0, MAGIC_START1, MAGIC_END):
            raise ValueError(f"block {i // BLOCK_BYTES}: wrong magic numbers")
        if size > DATA_BYTES:
            raise ValueError(f"block {i // BLOCK_BYTES}: payload of {size} bytes")
        blocks.append(Uf2Block(flags, addr, bytes(data[i + 32:i + 32 + size]), no, num, fam))
    return blocks


def check_uf2(data: bytes, family: int, flash_origin: int, flash_size: int,
              window: tuple[int, int] | None = None) -> list[str]:
    """What is wrong with a UF2 image for a chip (empty list: nothing).

    Every block: magic numbers, 256-byte payload on a 256-byte boundary, the family id
    present; the image's blocks: the chip's family, numbered 0..n-1 of n, no address twice,
    every address inside [flash_origin, flash_origin + flash_size).  An absolute-family block
    (RP2350-E10) may lie anywhere in ``window`` (the chip's flash address window)."""
    try:
        blocks = read_uf2(data)
    except ValueError as e:
        return [str(e)]
    if not blocks:
        return ["no blocks"]
    problems = []
    image = [b for b in blocks if b.family == family]
    for k, b in enumerate(blocks):
        if not b.flags & FLAG_FAMILY_ID:
            problems.append(f"block {k}: no family id flag")
        if b.flags & FLAG_NOT_MAIN_FLASH:
            problems.append(f"block {k}: marked not-main-flash")
        if len(b.payload) != PAGE_BYTES or b.address % PAGE_BYTES:
            problems.append(f"block {k}: {len(b.payload)} bytes at 0x{b.address:08x} (want 256 on a 256 boundary)")
        if b.family == family:
            if not (flash_origin <= b.address and b.address + PAGE_BYTES <= flash_origin + flash_size):
                problems.append(f"block {k}: address 0x{b.address:08x} outside the flash")
        elif b.family == FAMILIES["absolute"] and window is not None:
            if not (window[0] <= b.address and b.address + PAGE_BYTES <= window[1]):
                problems.append(f"block {k}: absolute block at 0x{b.address:08x} outside the flash window")
        else:
            problems.append(f"block {k}: family 0x{b.family:08x}, not 0x{family:08x}")
    if not image:
        problems.append(f"no block of family 0x{family:08x}")
    if [b.block_no for b in image] != list(range(len(image))) or any(b.num_blocks != len(image) for b in image):
        problems.append("the image's blocks are not numbered 0..n-1 of n")
    if len({b.address for b in image}) != len(image):
        problems.append("an address appears twice")
    return problems


def elf_to_uf2(elf: Path, out: Path, family: int, flash_origin: int, flash_size: int,
               abs_block: int | None = None) -> int:
    """Write ``out`` (atomically) from the firmware ``elf``; returns the number of image blocks."""
    pages = pages_of(load_segments(elf), flash_origin, flash_size, str(elf))
    data = encode(pages, family, abs_block)
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, out)
    return len(pages)


def target_uf2(elf: Path, out: Path, target) -> int:
    """:func:`elf_to_uf2` with a target's family, flash and E10 block."""
    return elf_to_uf2(elf, out, target.uf2_family, target.flash_origin, target.flash_size, target.uf2_abs_block)


def _number(text: str) -> int:
    return FAMILIES[text] if text in FAMILIES else int(text, 0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edgecomp.uf2", description="Write a UF2 file from a firmware ELF.")
    p.add_argument("elf", type=Path)
    p.add_argument("uf2", type=Path)
    p.add_argument("--family", required=True, type=_number, help=f"one of {', '.join(FAMILIES)} or a number")
    p.add_argument("--flash", required=True, help="ORIGIN:SIZE of the flash, e.g. 0x10000000:0x400000")
    p.add_argument("--abs-block", type=lambda s: int(s, 0), default=None,
                   help="address of the RP2350-E10 absolute block (e.g. 0x10ffff00)")
    a = p.parse_args(argv)
    try:
        origin, size = (int(x, 0) for x in a.flash.split(":"))
        n = elf_to_uf2(a.elf, a.uf2, a.family, origin, size, a.abs_block)
    except (ValueError, EdgecompError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {a.uf2} ({n} blocks of 256 bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
