"""Targets: one small TOML file per device, in ``targets/``.

``load_target("cortex-m4")`` reads ``targets/cortex-m4.toml`` (shipped inside
the wheel, see :mod:`edgecomp.resources`); a path to a ``.toml`` file works
too, so a user adds a board by writing one file.  Fields (see the shipped
files for examples):

* ``kind``: ``"cortex-m"`` (cross-compiled firmware) or ``"host"`` (native gcc)
* ``cpu``, ``arch``, ``cpu_flags`` (compiler flags), ``fpu``, ``dsp``, ``mve`` (optional,
  false unless given: Helium, the Armv8.1-M vector extension; selects the Helium kernels)
* ``clock_hz``: core clock, to turn cycles into milliseconds
* ``timer``: ``"dwt"`` (CYCCNT where it counts, SysTick otherwise),
  ``"systick"``, or ``"clock"`` (host)
* ``semihosting``: whether the harness talks to the host through semihosting
* ``stack_min_bytes``: RAM kept free for the stack at link time
* ``[memory]``: ``flash_origin``, ``flash_size``, ``ram_origin``, ``ram_size``
* ``[qemu]``: ``machine`` and ``insns_per_systick`` (instructions per SysTick
  tick under ``-icount shift=0``); absent for boards that only build
* ``emulate_with``: an emulated target with the same core, used to measure the
  stack of a board that has no emulator
* ``[flasher]``: ``tool`` (``"pyocd"``) and ``target`` (pyOCD target name); a board
  flashed another way names its tool and says how in ``how``
* ``[image]``: ``boot_block``, 32-bit words the boot ROM must find in the image,
  placed right after the vector table (the RP2350's IMAGE_DEF block)
* ``[uf2]``: ``family`` (UF2 family id) and optional ``abs_block`` (address of the
  RP2350-E10 absolute-family block): the build also writes a ``.uf2`` file of the
  flash image (:mod:`edgecomp.uf2`)
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import EdgecompError
from .resources import targets_dir

KINDS = ("cortex-m", "host", "rpi")
TIMERS = ("dwt", "systick", "clock")


@dataclass(frozen=True)
class Target:
    name: str
    kind: str
    cpu: str
    arch: str
    cpu_flags: tuple[str, ...]
    fpu: str
    dsp: bool
    clock_hz: int
    timer: str
    semihosting: bool
    stack_min_bytes: int
    description: str = ""
    mve: bool = False
    flash_origin: int = 0
    flash_size: int = 0
    ram_origin: int = 0
    ram_size: int = 0
    qemu_machine: str | None = None
    insns_per_systick: float | None = None
    emulate_with: str | None = None
    flasher: dict[str, str] = field(default_factory=dict)
    boot_block: tuple[int, ...] = ()
    uf2_family: int | None = None
    uf2_abs_block: int | None = None
    path: str = ""
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_host(self) -> bool:
        return self.kind == "host"

    @property
    def emulated(self) -> bool:
        """True when the firmware can run under QEMU as it is."""
        return self.qemu_machine is not None

    @property
    def pyocd_target(self) -> str | None:
        """pyOCD's name for the part, when the board is flashed with pyOCD."""
        if self.flasher.get("tool", "pyocd") == "pyocd":
            return self.flasher.get("target")
        return None

    def to_json(self) -> dict[str, Any]:
        """The target as recorded in a manifest (no file paths)."""
        d: dict[str, Any] = {"name": self.name, "kind": self.kind, "cpu": self.cpu,
                             "arch": self.arch, "fpu": self.fpu, "dsp": self.dsp,
                             "mve": self.mve,
                             "clock_hz": self.clock_hz}
        if not self.is_host:
            d.update(flash_size=self.flash_size, ram_size=self.ram_size)
        if self.qemu_machine:
            d["qemu_machine"] = self.qemu_machine
        return d


def list_targets() -> list[str]:
    """Names of the targets that ship with edgecomp."""
    return sorted(p.stem for p in targets_dir().glob("*.toml"))


def load_target(name: str | Path) -> Target:
    """Read a target by name (``cortex-m4``) or from a ``.toml`` file."""
    if isinstance(name, Target):
        return name
    text_name = str(name)
    if text_name.endswith(".toml") or "/" in text_name or "\\" in text_name:
        path = Path(text_name)
        if not path.is_file():
            raise EdgecompError(f"target file {text_name!r} does not exist", None,
                                "pass a target name (" + ", ".join(list_targets()) + ") or an existing .toml file")
    else:
        path = targets_dir() / f"{text_name}.toml"
        if not path.is_file():
            known = ", ".join(list_targets())
            raise EdgecompError(f"unknown target {text_name!r}", None,
                                f"use one of: {known}; or add a board as {targets_dir()}/{text_name}.toml")
    return _parse(path)


def _parse(path: Path) -> Target:
    where = str(path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise EdgecompError(f"target file is not valid TOML: {e}", where,
                            "fix the syntax (see the shipped targets/*.toml files)") from None

    def need(key: str, types: type | tuple, table: dict = data, prefix: str = ""):
        if key not in table:
            raise EdgecompError(f"target file lacks the field {prefix}{key!r}", where,
                                "copy the closest shipped target file and edit it")
        value = table[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in _tuple(types)):
            raise EdgecompError(f"target field {prefix}{key!r} has the wrong type ({type(value).__name__})",
                                where, "see the shipped targets/*.toml files for the expected types")
        return value

    kind = need("kind", str)
    if kind not in KINDS:
        raise EdgecompError(f"target kind {kind!r} is not one of {', '.join(KINDS)}", where,
                            'use kind = "cortex-m" for a microcontroller')
    mcu = kind == "cortex-m"

    def get(key: str, types: type | tuple, default: Any):
        return need(key, types) if mcu or key in data else default

    timer = get("timer", str, "clock")
    if timer not in TIMERS:
        raise EdgecompError(f"target timer {timer!r} is not one of {', '.join(TIMERS)}", where,
                            'use timer = "dwt" on Cortex-M3/M4/M7, "systick" on Cortex-M0')
    fields: dict[str, Any] = dict(
        name=data.get("name", path.stem), kind=kind, cpu=get("cpu", str, kind), arch=get("arch", str, kind),
        cpu_flags=tuple(get("cpu_flags", list, [])), fpu=get("fpu", str, "host"), dsp=get("dsp", bool, False),
        clock_hz=get("clock_hz", int, 1_000_000_000), timer=timer, semihosting=get("semihosting", bool, False),
        stack_min_bytes=get("stack_min_bytes", int, 0), description=data.get("description", ""),
        emulate_with=data.get("emulate_with"), flasher=dict(data.get("flasher", {})), path=where, raw=data,
    )
    if "mve" in data:
        fields["mve"] = need("mve", bool)
        if fields["mve"] and fields["arch"] != "armv8.1-m.main":
            raise EdgecompError(f"mve = true needs arch = \"armv8.1-m.main\" (not {fields['arch']!r})", where,
                                "Helium (MVE) is an Armv8.1-M extension: remove mve or fix arch")
    if kind == "cortex-m":
        mem = need("memory", dict)
        for key in ("flash_origin", "flash_size", "ram_origin", "ram_size"):
            fields[key] = need(key, int, mem, "memory.")
        if fields["flash_size"] <= 0 or fields["ram_size"] <= 0:
            raise EdgecompError("target memory sizes must be positive", where, "check [memory]")
        if fields["stack_min_bytes"] >= fields["ram_size"]:
            raise EdgecompError("stack_min_bytes does not leave any RAM for the model", where,
                                "lower stack_min_bytes or fix memory.ram_size")
    if "image" in data and mcu:
        words = need("boot_block", list, need("image", dict), "image.")
        if not words or not all(isinstance(w, int) and not isinstance(w, bool) and 0 <= w < 1 << 32 for w in words):
            raise EdgecompError("target field 'image.boot_block' must list 32-bit words", where,
                                "write each word as an integer, e.g. 0xffffded3")
        fields["boot_block"] = tuple(words)
    if "uf2" in data and mcu:
        u = need("uf2", dict)
        fields["uf2_family"] = need("family", int, u, "uf2.")
        if "abs_block" in u:
            fields["uf2_abs_block"] = need("abs_block", int, u, "uf2.")
        for key in ("uf2_family", "uf2_abs_block"):
            if fields.get(key) is not None and not 0 <= fields[key] < 1 << 32:
                raise EdgecompError(f"target field 'uf2.{key[4:]}' must be a 32-bit value", where,
                                    "see targets/pico2.toml")
    if "qemu" in data and mcu:
        q = need("qemu", dict)
        fields["qemu_machine"] = need("machine", str, q, "qemu.")
        fields["insns_per_systick"] = float(need("insns_per_systick", (int, float), q, "qemu."))
    return Target(**fields)


def _tuple(types) -> tuple:
    return types if isinstance(types, tuple) else (types,)
