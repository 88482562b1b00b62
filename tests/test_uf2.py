"""UF2 output for boards flashed by drag-and-drop (Raspberry Pi Pico 2, RP2350).

The format (edgecomp/uf2.py's docstring) is checked field by field here, independently of
the writer: block magic numbers, family id, addresses inside the RP2350's flash, numbering;
and the image a Pico 2 bundle carries must boot on the RP2350: an IMAGE_DEF block in its
first 4 KB, a vector table whose stack and reset handler point into the board's RAM and
flash, and exactly the bytes the linker placed in flash (compared with objcopy's binary).
"""
from __future__ import annotations

import shutil
import struct
import subprocess

import numpy as np
import pytest

from edgecomp import uf2
from edgecomp.errors import EdgecompError
from edgecomp.targets import load_target

RP2350_ARM_S = 0xE48BFF59
ABSOLUTE = 0xE48BFF57
XIP_WINDOW = (0x10000000, 0x11000000)  # the RP2350's 16 MB flash window (chip select 0)


def parse_blocks(data: bytes) -> list[dict]:
    """The UF2 blocks as dicts, read with struct straight from the specification's layout."""
    assert len(data) % 512 == 0
    out = []
    for i in range(0, len(data), 512):
        m0, m1, flags, addr, size, no, num, fam = struct.unpack_from("<8I", data, i)
        end, = struct.unpack_from("<I", data, i + 508)
        out.append(dict(magic=(m0, m1, end), flags=flags, addr=addr, size=size, no=no, num=num, family=fam,
                        payload=data[i + 32:i + 32 + size], pad=data[i + 32 + size:i + 508]))
    return out


def test_encode_blocks_follow_the_specification():
    pages = {0x10000000: bytes(range(256)), 0x10000200: b"\x5a" * 256}
    data = uf2.encode(pages, RP2350_ARM_S, abs_block=0x10FFFF00)
    blocks = parse_blocks(data)
    assert len(blocks) == 3
    for b in blocks:
        assert b["magic"] == (0x0A324655, 0x9E5D5157, 0x0AB16F30)
        assert b["flags"] == 0x00002000 and b["size"] == 256 and b["pad"] == bytes(476 - 256)
    e10, first, second = blocks
    assert (e10["family"], e10["addr"], e10["no"], e10["num"], e10["payload"]) == \
        (ABSOLUTE, 0x10FFFF00, 0, 2, b"\xef" * 256)
    assert [(b["family"], b["addr"], b["no"], b["num"]) for b in (first, second)] == \
        [(RP2350_ARM_S, 0x10000000, 0, 2), (RP2350_ARM_S, 0x10000200, 1, 2)]
    assert first["payload"] == bytes(range(256))
    assert uf2.check_uf2(data, RP2350_ARM_S, 0x10000000, 4 << 20, XIP_WINDOW) == []


def test_pages_fill_gaps_with_zeros_and_refuse_bytes_outside_flash():
    pages = uf2.pages_of([(0x10000004, b"\x01\x02"), (0x100001FE, b"\x03\x04\x05")], 0x10000000, 4 << 20)
    assert sorted(pages) == [0x10000000, 0x10000100, 0x10000200]
    assert pages[0x10000000][:8] == bytes([0, 0, 0, 0, 1, 2, 0, 0])
    assert pages[0x10000100][-2:] == b"\x03\x04" and pages[0x10000200][:2] == b"\x05\x00"
    with pytest.raises(EdgecompError, match="outside the flash"):
        uf2.pages_of([(0x20000000, b"\x00")], 0x10000000, 4 << 20)  # RAM contents: not for the flash
    with pytest.raises(EdgecompError, match="outside the flash"):
        uf2.pages_of([(0x103FFFFF, b"\x00\x00")], 0x10000000, 4 << 20)  # runs past the end
    with pytest.raises(EdgecompError, match="overlap"):
        uf2.pages_of([(0x10000000, b"\x00" * 8), (0x10000004, b"\x00")], 0x10000000, 4 << 20)


@pytest.mark.parametrize("damage,needle", [
    (lambda d: d[:4] + b"UF3\n" + d[8:], "magic"),                                     # second block's magic
    (lambda d: d[:512 + 508] + b"\x00" * 4 + d[1024:], "magic"),                        # end magic
    (lambda d: d[:512 + 28] + struct.pack("<I", 0xE48BFF56) + d[512 + 32:], "family"),  # an RP2040 block
    (lambda d: d[:512 + 12] + struct.pack("<I", 0x10400000) + d[512 + 16:], "outside the flash"),  # past 4 MB
    (lambda d: d[:512 + 12] + struct.pack("<I", 0x0FFFFF00) + d[512 + 16:], "outside the flash"),  # below
    (lambda d: d[:512 + 20] + struct.pack("<I", 7) + d[512 + 24:], "numbered"),
    (lambda d: d[:12] + struct.pack("<I", 0x20000000) + d[16:], "window"),             # E10 block in RAM
    (lambda d: d[:-1], "whole number"),
])
def test_check_finds_each_defect(damage, needle):
    data = uf2.encode({0x10000000: bytes(256), 0x10000100: bytes(256)}, RP2350_ARM_S, abs_block=0x10FFFF00)
    assert uf2.check_uf2(data, RP2350_ARM_S, 0x10000000, 4 << 20, XIP_WINDOW) == []
    bad = damage(data)
    problems = uf2.check_uf2(bad, RP2350_ARM_S, 0x10000000, 4 << 20, XIP_WINDOW)
    assert any(needle in p for p in problems), problems


def picobin_image_def(image: bytes) -> dict:
    """The IMAGE_DEF block the RP2350 boot ROM scans for in the first 4 KB of a flash image
    (RP2350 datasheet 5.9.3: start marker, items of [type, size in words, ...], a LAST item
    with the items' total size, a relative link to the next block, end marker)."""
    for off in range(0, min(len(image), 4096) - 4, 4):
        if struct.unpack_from("<I", image, off)[0] != 0xFFFFDED3:
            continue
        pos, items = off + 4, {}
        while True:
            kind, size = image[pos], image[pos + 1]
            if kind == 0xFF:  # LAST: 2-byte size = words of the items before it
                total = struct.unpack_from("<H", image, pos + 1)[0]
                link, end = struct.unpack_from("<iI", image, pos + 4)
                return {"offset": off, "items": items, "last_size": total, "words": (pos - off - 4) // 4,
                        "link": link, "end": end}
            items[kind & 0x7F] = image[pos:pos + 4 * size]
            pos += 4 * size
    raise AssertionError("no block start marker in the first 4 KB")


@pytest.mark.toolchain
@pytest.mark.qemu
def test_pico2_bundle_carries_a_bootable_uf2(tmp_path, mlperf_dir):
    if not shutil.which("arm-none-eabi-gcc"):
        pytest.fail("arm-none-eabi-gcc is required (apt-get install gcc-arm-none-eabi)")
    from edgecomp import api
    from edgecomp.backends.cortex_m import build

    target = load_target("pico2")
    man = api.compile_model(str(mlperf_dir / "kws_ref_model.tflite"), "pico2", tmp_path / "b")
    path = tmp_path / "b" / "kws_ref_model.uf2"
    assert "kws_ref_model.uf2" in man["files"]  # hashed with the bundle's other files
    data = path.read_bytes()
    blocks = parse_blocks(data)
    assert all(b["magic"] == (0x0A324655, 0x9E5D5157, 0x0AB16F30) for b in blocks)
    assert all(b["flags"] & 0x2000 and b["size"] == 256 and b["addr"] % 256 == 0 for b in blocks)
    e10, image = blocks[0], blocks[1:]
    assert (e10["family"], e10["addr"]) == (ABSOLUTE, 0x10FFFF00)
    assert XIP_WINDOW[0] <= e10["addr"] < XIP_WINDOW[1]
    assert {b["family"] for b in image} == {RP2350_ARM_S}
    assert [b["no"] for b in image] == list(range(len(image))) and {b["num"] for b in image} == {len(image)}
    assert all(0x10000000 <= b["addr"] and b["addr"] + 256 <= 0x10000000 + (4 << 20) for b in image)
    assert image[0]["addr"] == 0x10000000
    assert uf2.check_uf2(data, RP2350_ARM_S, target.flash_origin, target.flash_size, XIP_WINDOW) == []

    # the flash image: every byte the linker put in flash (objcopy's binary), zero elsewhere
    flat = bytearray(max(b["addr"] for b in image) + 256 - 0x10000000)
    for b in image:
        flat[b["addr"] - 0x10000000:b["addr"] - 0x10000000 + 256] = b["payload"]
    built = build(tmp_path / "b", target, build_dir=tmp_path / "build")
    assert (tmp_path / "build" / "fw.uf2").read_bytes() == data  # the same file from `edgecomp flash`'s build
    subprocess.run(["arm-none-eabi-objcopy", "-O", "binary", str(built.elf), str(tmp_path / "fw.bin")], check=True)
    binary = (tmp_path / "fw.bin").read_bytes()
    assert bytes(flat[:len(binary)]) == binary and not any(flat[len(binary):])

    # boot: the vector table at the start of flash, then the IMAGE_DEF block within 4 KB
    sp, reset = struct.unpack_from("<II", flat, 0)
    assert sp == target.ram_origin + target.ram_size  # the stack starts at the end of the 520 KB
    assert reset & 1 and 0x10000000 < reset - 1 < 0x10000000 + len(binary)  # Thumb, inside the image
    block = picobin_image_def(bytes(flat))
    assert block["offset"] < 4096 and block["end"] == 0xAB123579 and block["link"] == 0
    image_type = struct.unpack_from("<H", block["items"][0x42], 2)[0]
    assert image_type & 0xF == 1  # executable
    assert (image_type >> 4) & 3 == 2 and (image_type >> 8) & 7 == 0 and (image_type >> 12) & 7 == 1  # S, Arm, RP2350
    assert struct.unpack_from("<I", block["items"][0x03], 4)[0] == 0x10000000  # vector table address
    assert block["last_size"] == block["words"]

    # `edgecomp flash` without a debug probe points at the file
    from edgecomp.errors import ToolError
    from edgecomp.flash import flash_bundle
    with pytest.raises(ToolError) as e:
        flash_bundle(tmp_path / "b")
    assert "BOOTSEL" in str(e.value) and str(path) in str(e.value)


def test_uf2_command(tmp_path):
    """`python -m edgecomp.uf2` (the bundle's `make uf2`): a bad input is one clear line, exit 2."""
    import sys

    bad = tmp_path / "fw.elf"
    bad.write_bytes(b"not an elf")
    p = subprocess.run([sys.executable, "-m", "edgecomp.uf2", str(bad), str(tmp_path / "o.uf2"), "--family",
                        "rp2350-arm-s", "--flash", "0x10000000:0x400000"], capture_output=True, text=True)
    assert p.returncode == 2 and "not an ELF file" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "o.uf2").exists()
    np.testing.assert_equal(uf2.FAMILIES["rp2350-arm-s"], RP2350_ARM_S)
