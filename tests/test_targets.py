"""Target files: loading, memory maps, errors, and the SysTick factor under QEMU."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from edgecomp.errors import EdgecompError
from edgecomp.targets import list_targets, load_target

MCU_TARGETS = ["cortex-m0", "cortex-m3", "cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55", "nucleo-l4r5zi",
               "stm32f746g-disco", "pico2", "nucleo-u575zi-q", "alif-e7-hp"]
QEMU_TARGETS = ["cortex-m0", "cortex-m3", "cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55"]


def test_shipped_targets_load():
    names = list_targets()
    for name in MCU_TARGETS + ["host"]:
        assert name in names
        t = load_target(name)
        assert t.name == name
    for name in MCU_TARGETS:
        t = load_target(name)
        assert t.kind == "cortex-m"
        assert f"-mcpu={t.cpu}" in t.cpu_flags and "-mthumb" in t.cpu_flags
        assert t.flash_size > 0 and t.ram_size > t.stack_min_bytes > 0
        # the AN505's data SSRAM is at its Secure alias; every other part has its SRAM at 0x20000000
        assert t.ram_origin == (0x38000000 if name == "cortex-m33" else 0x20000000)
        assert t.flash_origin + t.flash_size <= t.ram_origin or t.ram_origin + t.ram_size <= t.flash_origin


def test_memory_maps_and_clocks():
    m0 = load_target("cortex-m0")
    assert (m0.qemu_machine, m0.ram_size, m0.flash_size, m0.timer) == ("microbit", 16 * 1024, 256 * 1024, "systick")
    assert not m0.dsp and m0.fpu == "none"
    m4 = load_target("cortex-m4")
    assert (m4.qemu_machine, m4.dsp, m4.fpu) == ("mps2-an386", True, "fpv4-sp-d16")
    assert load_target("cortex-m7").qemu_machine == "mps2-an500"
    assert load_target("cortex-m3").qemu_machine == "mps2-an385"
    l4 = load_target("nucleo-l4r5zi")
    assert (l4.flash_origin, l4.flash_size, l4.ram_size, l4.clock_hz) == (0x08000000, 2 << 20, 640 << 10, 120_000_000)
    assert l4.pyocd_target == "stm32l4r5zitx" and not l4.emulated and l4.emulate_with == "cortex-m4"
    f7 = load_target("stm32f746g-disco")
    assert (f7.flash_origin, f7.flash_size, f7.ram_size, f7.clock_hz) == (0x08000000, 1 << 20, 320 << 10, 216_000_000)
    assert f7.cpu == "cortex-m7" and f7.pyocd_target == "stm32f746xg"
    assert load_target("host").is_host


def test_armv8m_targets_and_boards():
    m33 = load_target("cortex-m33")
    assert (m33.qemu_machine, m33.arch, m33.dsp, m33.flash_origin, m33.ram_origin) == \
        ("mps2-an505", "armv8-m.main", True, 0x10000000, 0x38000000)
    m55 = load_target("cortex-m55")
    assert (m55.qemu_machine, m55.arch, m55.dsp, m55.flash_origin, m55.flash_size, m55.ram_size) == \
        ("mps3-an547", "armv8.1-m.main", True, 0x0, 512 << 10, 512 << 10)
    pico = load_target("pico2")
    assert (pico.cpu, pico.flash_origin, pico.flash_size, pico.ram_origin, pico.ram_size, pico.clock_hz) == \
        ("cortex-m33", 0x10000000, 4 << 20, 0x20000000, 520 << 10, 150_000_000)
    assert pico.uf2_family == 0xE48BFF59 and pico.uf2_abs_block == 0x10FFFF00
    assert pico.boot_block[0] == 0xFFFFDED3 and pico.boot_block[-1] == 0xAB123579
    assert pico.emulate_with == "cortex-m33" and pico.pyocd_target == "rp2350" and not pico.semihosting
    u5 = load_target("nucleo-u575zi-q")
    assert (u5.cpu, u5.flash_origin, u5.flash_size, u5.ram_size, u5.clock_hz) == \
        ("cortex-m33", 0x08000000, 2 << 20, 768 << 10, 160_000_000)
    alif = load_target("alif-e7-hp")
    assert (alif.cpu, alif.flash_origin, alif.flash_size, alif.ram_origin, alif.ram_size) == \
        ("cortex-m55", 0x80200000, 2 << 20, 0x20000000, 1 << 20)
    assert alif.emulate_with == "cortex-m55" and alif.pyocd_target is None and "SETOOLS" in alif.flasher["how"]
    for t in (m33, m55, pico, u5, alif):
        assert t.uf2_family is None or t is pico
        assert not t.boot_block or t is pico


@pytest.mark.parametrize("edit,needle", [
    (lambda s: s.replace("0xab123579]", "0x1ab123579]"), "image.boot_block"),
    (lambda s: s.replace("family = 0xe48bff59", 'family = "rp2350"'), "uf2.'family'"),
])
def test_bad_board_image_fields(tmp_path, edit, needle):
    board = tmp_path / "bad.toml"
    board.write_text(edit(Path(load_target("pico2").path).read_text()))
    with pytest.raises(EdgecompError) as e:
        load_target(str(board))
    assert needle in str(e.value) and "bad.toml" in str(e.value)


def test_unknown_target_lists_known_ones():
    with pytest.raises(EdgecompError) as e:
        load_target("cortex-m99")
    msg = str(e.value)
    assert "cortex-m99" in msg and "cortex-m4" in msg and "nucleo-l4r5zi" in msg


def test_user_board_file(tmp_path):
    src = (Path(load_target("cortex-m4").path)).read_text()
    board = tmp_path / "myboard.toml"
    board.write_text(src.replace('name = "cortex-m4"', 'name = "myboard"').replace("0x00400000\nram_origin", "0x00100000\nram_origin"))
    t = load_target(str(board))
    assert t.name == "myboard" and t.flash_size == 0x100000


@pytest.mark.parametrize("edit,needle", [
    (lambda s: s.replace("cpu_flags", "cpu_flagz"), "cpu_flags"),
    (lambda s: s.replace('timer = "dwt"', 'timer = "rtc"'), "timer"),
    (lambda s: s + "\n[[[", "TOML"),
    (lambda s: s.replace("clock_hz = 25_000_000", 'clock_hz = "fast"'), "clock_hz"),
])
def test_bad_board_file_says_what_and_where(tmp_path, edit, needle):
    board = tmp_path / "bad.toml"
    board.write_text(edit(Path(load_target("cortex-m4").path).read_text()))
    with pytest.raises(EdgecompError) as e:
        load_target(str(board))
    assert needle in str(e.value) and "bad.toml" in str(e.value)


# --------------------------------------------------------------------------- SysTick factor
# A loop of exactly 2 instructions per iteration (subs + bne), timed with the
# firmware's own timer.  Under -icount shift=0 an instruction is 1 ns of virtual
# time, so ticks * insns_per_systick must equal the instructions executed.
LOOP_MAIN = r"""
#include <stdint.h>
#include "ec_platform.h"

static __attribute__((noinline)) void spin(uint32_t n)
{
#if defined(__ARM_ARCH_6M__) /* gcc's Thumb-1 inline assembly uses the divided syntax */
    __asm__ volatile("1: sub %0, #1\n\tbne 1b" : "+l"(n) : : "cc");
#else
    __asm__ volatile("1: subs %0, %0, #1\n\tbne 1b" : "+l"(n) : : "cc");
#endif
}

static uint32_t timed(uint32_t n)
{
    uint32_t start = ec_timer_now();
    spin(n);
    return ec_timer_now() - start;
}

int main(void)
{
    ec_timer_init();
    uint32_t small = timed(1000u);
    uint32_t big = timed(1000000u + 1000u);
    ec_puts("unit ");
    ec_puts(ec_timer_unit());
    ec_puts("\ndelta ");
    ec_put_u32(big - small);
    ec_putc('\n');
    return 0;
}
"""


def _need_arm_tools():
    for tool in ("arm-none-eabi-gcc", "qemu-system-arm", "make"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is required for this test (apt-get install gcc-arm-none-eabi qemu-system-arm)")


@pytest.mark.parametrize("name", QEMU_TARGETS)
@pytest.mark.toolchain
@pytest.mark.qemu
def test_systick_factor_matches_a_loop_of_known_length(name, tmp_path):
    _need_arm_tools()
    from edgecomp.backends.cortex_m import build, write_firmware
    from edgecomp.backends.emulator import qemu_command

    target = load_target(name)
    write_firmware(tmp_path, target, "loop")
    (tmp_path / "main.c").write_text(LOOP_MAIN)
    (tmp_path / "model.h").write_text("/* no model */\n")
    elf = build(tmp_path, target).elf
    # QEMU 7.2 writes the semihosting console to stderr.
    p = subprocess.run(qemu_command(target, elf), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=60, cwd=tmp_path)
    assert p.returncode == 0, p.stdout
    fields = dict(line.split() for line in p.stdout.splitlines() if line.startswith(("unit ", "delta ")))
    assert fields["unit"] == "systick"  # QEMU does not model the DWT cycle counter
    measured = int(fields["delta"]) * target.insns_per_systick
    # 1,000,000 extra iterations of 2 instructions; +-2 ticks of quantization.
    assert abs(measured - 2_000_000) <= 2 * target.insns_per_systick, (measured, target.insns_per_systick)


@pytest.mark.toolchain
@pytest.mark.qemu
def test_timer_is_extended_past_the_24_bit_systick(tmp_path):
    """An inference longer than 2^24 SysTick ticks (671M instructions on mps2) still times right."""
    _need_arm_tools()
    from edgecomp.backends.cortex_m import build, write_firmware
    from edgecomp.backends.emulator import qemu_command

    target = load_target("cortex-m4")
    write_firmware(tmp_path, target, "loop")
    (tmp_path / "main.c").write_text(LOOP_MAIN.replace("1000000u + 1000u", "360000000u + 1000u"))
    (tmp_path / "model.h").write_text("/* no model */\n")
    elf = build(tmp_path, target).elf
    p = subprocess.run(qemu_command(target, elf), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=120, cwd=tmp_path)
    assert p.returncode == 0, p.stdout
    delta = int(dict(line.split() for line in p.stdout.splitlines() if line.startswith("delta "))["delta"])
    assert delta > 1 << 24
    assert abs(delta * target.insns_per_systick - 720_000_000) <= 2 * target.insns_per_systick


# --------------------------------------------------------------------------- Armv8-M start-up
# From Secure state the Non-secure alias of the System Control Space (0xE002ED00) reads the
# Non-secure view of CPUID; from Non-secure state that alias is RAZ.  The FPU and (M55) MVE
# must be usable as soon as main() runs: without CPACR access a VFP or MVE instruction faults
# (NOCP) and the firmware prints "@ec fault usagefault".
STATE_MAIN = r"""
#include <stdint.h>
#include "ec_platform.h"
#if defined(__ARM_FEATURE_MVE)
#include <arm_mve.h>
#endif

static volatile float f_in = 1.5f;
static volatile int8_t v_in[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

int main(void)
{
    uint32_t cpuid = *(volatile uint32_t *)0xE000ED00u;
    uint32_t cpuid_ns = *(volatile uint32_t *)0xE002ED00u;
    ec_puts("partno ");
    ec_put_u32((cpuid >> 4) & 0xFFFu);
    ec_puts("\nsecure ");
    ec_put_u32(cpuid_ns == cpuid && cpuid != 0u);
    ec_puts("\nfpu ");
    ec_put_u32((uint32_t)(f_in * 4.0f));
#if defined(__ARM_FEATURE_MVE)
    int8x16_t v = vld1q_s8((const int8_t *)v_in);
    ec_puts("\nmve ");
    ec_put_u32((uint32_t)vaddvq_s8(v));
#endif
    ec_putc('\n');
    return 0;
}
"""


@pytest.mark.toolchain
@pytest.mark.qemu
@pytest.mark.parametrize("name,partno,mve", [("cortex-m33", 0xD21, False), ("cortex-m55", 0xD22, True)])
def test_armv8m_firmware_runs_in_secure_state_with_fpu_and_mve(name, partno, mve, tmp_path):
    _need_arm_tools()
    from edgecomp.backends.cortex_m import build, write_firmware
    from edgecomp.backends.emulator import qemu_command

    target = load_target(name)
    write_firmware(tmp_path, target, "state")
    (tmp_path / "main.c").write_text(STATE_MAIN)
    (tmp_path / "model.h").write_text("/* no model */\n")
    elf = build(tmp_path, target).elf
    p = subprocess.run(qemu_command(target, elf), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=60, cwd=tmp_path)
    assert p.returncode == 0 and "@ec fault" not in p.stdout, p.stdout
    fields = dict(line.split() for line in p.stdout.splitlines()
                  if line.startswith(("partno ", "secure ", "fpu ", "mve ")))
    assert int(fields["partno"]) == partno  # the core QEMU runs is the one the target names
    assert fields["secure"] == "1" and fields["fpu"] == "6"
    assert fields.get("mve") == ("136" if mve else None)
