"""Run one built firmware: under QEMU (``-icount shift=0``) or natively, and read its probe.

The firmware reads ``ec_input.bin`` and writes ``ec_output.bin`` through semihosting in the
folder it runs in, and prints the probe lines (docs/internals.md, "Probe lines").  Shared by
:mod:`edgecomp.backends.cortex_m` (the stack measurement at compile time) and
:mod:`edgecomp.backends.run` (``edgecomp run``), so neither imports the other's internals.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import ToolError
from ..probe import ProbeReport, parse_probe_blocks
from ..targets import Target

INPUT_FILE = "ec_input.bin"
OUTPUT_FILE = "ec_output.bin"


@dataclass
class FirmwareRun:
    stdout: str
    returncode: int
    report: ProbeReport


def qemu_command(target: Target, elf: Path) -> list[str]:
    return ["qemu-system-arm", "-M", target.qemu_machine, "-nographic", "-monitor", "none", "-serial", "none",
            "-semihosting-config", "enable=on,target=native", "-icount", "shift=0", "-kernel", str(elf)]


def run_firmware(exe: Path, emu: Target | None, workdir: Path, *, timeout: float = 120.0,
                 progress_total: int | None = None, output_bytes: int | None = None) -> FirmwareRun:
    """Run a built firmware (QEMU when ``emu`` is given, else a native executable) in ``workdir``.

    The input file must already be in ``workdir``.  Raises ToolError when the
    emulator is missing, the firmware faults, hangs past ``timeout`` seconds,
    or prints no complete probe block.
    """
    if emu is not None:
        if shutil.which("qemu-system-arm") is None:
            raise ToolError("qemu-system-arm was not found on PATH", None,
                            "install it (Debian/Ubuntu: apt-get install qemu-system-arm), or run the bundle "
                            "natively with emulate=False (edgecomp run --host)")
        # QEMU gets a relative path in its own working folder: no character of $TMPDIR's or the
        # bundle's path reaches its option parser (commas are separators there).
        local = Path(workdir) / "fw.elf"
        if Path(exe).resolve() != local.resolve():
            shutil.copyfile(exe, local)
        cmd = qemu_command(emu, Path("fw.elf"))
        what = f"QEMU {emu.qemu_machine}"
    else:
        cmd = [str(exe), INPUT_FILE, OUTPUT_FILE]
        what = "the host build"
    start = time.monotonic()
    out_path = Path(workdir) / OUTPUT_FILE
    with tempfile.TemporaryFile() as so:
        proc = subprocess.Popen(cmd, cwd=workdir, stdin=subprocess.DEVNULL, stdout=so, stderr=subprocess.STDOUT)
        next_note = start + 5.0
        try:
            while True:
                try:
                    proc.wait(timeout=0.25)
                    break
                except subprocess.TimeoutExpired:
                    pass
                now = time.monotonic()
                if now - start > timeout:
                    proc.kill()
                    proc.wait()
                    raise ToolError(f"the firmware did not finish within {timeout:g} s under {what}", str(exe),
                                    "it may hang (a fault loop, a stuck peripheral) - or give a longer timeout "
                                    "for many inputs")
                if progress_total and output_bytes and now >= next_note:
                    done = out_path.stat().st_size // output_bytes if out_path.exists() else 0
                    print(f"  {what}: {done}/{progress_total} inferences, {now - start:.0f} s", file=sys.stderr,
                          flush=True)
                    next_note = now + 5.0
        except BaseException:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            raise
        so.seek(0)
        text = so.read().decode("utf-8", errors="replace")
    blocks = parse_probe_blocks(text)
    faults = [f for b in blocks for f in b.faults]
    tail = "\n".join(text.strip().splitlines()[-10:])
    if faults:
        raise ToolError(f"the firmware stopped under {what}: {'; '.join(faults)}", str(exe),
                        "a fault usually means the stack or the arena overflowed RAM; check the model's RAM "
                        f"use against the target (output:\n{tail})")
    if proc.returncode != 0:
        raise ToolError(f"the firmware exited with status {proc.returncode} under {what}", str(exe),
                        f"see its output:\n{tail}")
    complete = [b for b in blocks if b.complete]
    if not complete:
        raise ToolError(f"the firmware printed no complete probe block under {what}", str(exe),
                        f"see its output:\n{tail}")
    return FirmwareRun(text, proc.returncode, complete[-1])
