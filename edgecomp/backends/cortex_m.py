"""Cortex-M bundles: generated model + firmware shell, built and measured.

A bundle folder holds C sources and a Makefile, nothing built::

    model.c model.h weights.c ec_kernels.c ec_kernels.h   (backends/c_codegen.py)
    main.c ec_platform.c ec_platform.h ec_platform_host.c startup.c
    linker.ld Makefile                                    (from the target file)
    manifest.json

:func:`write_bundle` writes one (atomically), builds it once outside the
bundle to measure it, and records the sizes in the manifest: flash from
``arm-none-eabi-size -A``, the model's static RAM from ``arm-none-eabi-nm -S``
on the model objects only, and the stack peak of one inference run under QEMU.
:func:`build` builds a bundle (by default into ``<bundle>/build/<target>``,
which is not one of the bundle's hashed files).
"""
from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from .. import ir
from ..bundle import atomic_dir, read_manifest, write_manifest
from ..errors import DoesNotFitError, EdgecompError, ToolError
from ..resources import templates_dir
from ..targets import Target, load_target

#: Firmware files copied as they are from templates/cortex_m/.
SHELL_FILES = ("main.c", "ec_platform.h", "ec_platform.c", "ec_platform_host.c", "startup.c")
HOST_SHELL_FILES = ("main.c", "ec_platform.h", "ec_platform_host.c")
#: Sources that are not the model (everything else ending in .c is).
NOT_MODEL = {"main.c", "ec_platform.c", "ec_platform_host.c", "startup.c"}

_NAME_OK = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass
class BuildResult:
    """What a build produced and how big it is."""

    bundle_dir: Path
    build_dir: Path
    target: str
    host: bool  # True: native binary built with the host's gcc
    elf: Path  # the firmware (or the host executable)
    sections: dict[str, int] = field(default_factory=dict)  # allocated sections, from size -A
    flash_bytes: int = 0  # .text + .rodata + .ARM.exidx + .data (the whole image)
    static_ram_bytes: int = 0  # .data + .bss of the whole image
    stack_available_bytes: int | None = None  # RAM left for the stack
    model_flash_bytes: int = 0  # code + constants of the model objects (nm -S)
    model_ram_bytes: int = 0  # .data/.bss of the model objects (nm -S), arena included
    log: str = ""


# --------------------------------------------------------------------------- templates
def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates_dir() / "cortex_m")),
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                              autoescape=False)


def check_model_name(name: str) -> str:
    if not _NAME_OK.fullmatch(name or ""):
        raise EdgecompError(f"model name {name!r} cannot be used in the firmware", None,
                            "use 1-64 letters, digits, '_', '.' or '-'")
    return name


def write_firmware(out_dir: Path, target: Target, model_name: str, probe: bool = True) -> list[str]:
    """Add the firmware shell (harness, platform, startup, linker script, Makefile) to ``out_dir``."""
    out_dir = Path(out_dir)
    check_model_name(model_name)
    src = templates_dir() / "cortex_m"
    files = HOST_SHELL_FILES if target.is_host else SHELL_FILES
    for name in files:
        shutil.copyfile(src / name, out_dir / name)
    env = _env()
    (out_dir / "Makefile").write_text(env.get_template("Makefile.j2").render(
        target=target, model_name=model_name, probe=probe))
    (out_dir / "README.md").write_text(env.get_template("README.md.j2").render(
        target=target, model_name=model_name))
    written = list(files) + ["Makefile", "README.md"]
    if not target.is_host:
        (out_dir / "linker.ld").write_text(env.get_template("linker.ld.j2").render(target=target))
        written.append("linker.ld")
    return written


# --------------------------------------------------------------------------- build
def _need_tool(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise ToolError(f"{tool} was not found on PATH", None,
                        f"install it (Debian/Ubuntu: apt-get install {package}) or add it to PATH")
    return path


def _run_make(bundle_dir: Path, build_dir: Path, goal: str | None, target: Target | None = None,
              env_cross: str = "arm-none-eabi-") -> str:
    cmd = ["make", "--no-print-directory", "-C", str(bundle_dir), f"BUILD={build_dir}", f"CROSS={env_cross}"]
    if goal:
        cmd.append(goal)
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        raise ToolError("the build took more than 10 minutes", str(bundle_dir), "check the Makefile") from None
    log = p.stdout + p.stderr
    if p.returncode != 0:
        raise _build_error(log, bundle_dir, target)
    return log


def _build_error(log: str, bundle_dir: Path, target: Target | None = None) -> EdgecompError:
    over = re.findall(r"region `(\w+)' overflowed by (\d+) bytes", log)
    if over:
        parts = []
        for region, n in over:
            have = ""
            if target is not None and region == "RAM":
                have = (f" ({target.name} has {target.ram_size:,} bytes of RAM, {target.stack_min_bytes:,} of them "
                        "kept for the stack)")
            elif target is not None and region == "FLASH":
                have = f" ({target.name} has {target.flash_size:,} bytes of flash)"
            parts.append(f"{region} overflowed by {int(n):,} bytes{have}")
        return DoesNotFitError("the model does not fit the target: " + "; ".join(parts), str(bundle_dir),
                               "compress the model more (int8, pruning, fewer channels) or pick a target "
                               "with more memory")
    if "will not fit in region" in log:
        return DoesNotFitError("the model does not fit the target's memory: "
                               + next(l for l in log.splitlines() if "will not fit in region" in l).strip(),
                               str(bundle_dir), "compress the model more or pick a target with more memory")
    tail = "\n".join(log.strip().splitlines()[-15:])
    return ToolError(f"the firmware build failed:\n{tail}", str(bundle_dir),
                     "this is a bug in edgecomp if the bundle was not edited; please report it with the log")


def parse_size_a(text: str) -> dict[str, int]:
    """Sections and sizes from ``size -A`` output."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith(".") and parts[1].isdigit():
            out[parts[0]] = int(parts[1])
    return out


def _nm_sizes(nm: str, objects: list[Path]) -> tuple[int, int]:
    """(flash bytes, RAM bytes) of the symbols defined in ``objects``."""
    if not objects:
        return 0, 0
    p = subprocess.run([nm, "-S", *map(str, objects)], capture_output=True, text=True)
    if p.returncode != 0:
        raise ToolError(f"{nm} failed: {p.stderr.strip()}", None, "check the binutils installation")
    flash = ram = 0
    for line in p.stdout.splitlines():
        parts = line.split()
        if len(parts) != 4:
            continue
        size, kind = int(parts[1], 16), parts[2]
        if kind in "bBdDcC":
            ram += size
        elif kind in "tTrR":
            flash += size
    return flash, ram


def _model_sources(bundle_dir: Path) -> list[str]:
    """The generated model's C files (a user's own files, e.g. a UART driver, are not the model)."""
    from . import kernel_files
    generated = sorted(n for n in ("model.c", "weights.c") + kernel_files.sources("reference", "s16")
                       if (bundle_dir / n).is_file())
    return generated or sorted(p.name for p in bundle_dir.glob("*.c") if p.name not in NOT_MODEL)


def default_build_dir(bundle_dir: Path, target: Target, host: bool) -> Path:
    """``<bundle>/build/<target>`` (not a hashed file), or a temporary cache for a read-only bundle."""
    import hashlib
    import os

    bundle_dir = Path(bundle_dir).resolve()
    leaf = "host" if host or target.is_host else target.name
    if os.access(bundle_dir, os.W_OK):
        return bundle_dir / "build" / leaf
    key = hashlib.sha256(str(bundle_dir).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / "edgecomp-build" / key / leaf


def build(bundle_dir: str | Path, target: str | Target | None = None, *, build_dir: str | Path | None = None,
          host: bool | None = None) -> BuildResult:
    """Build a bundle: firmware with arm-none-eabi-gcc, or natively (``host=True`` or target ``host``)."""
    bundle_dir = Path(bundle_dir).resolve()
    if not (bundle_dir / "Makefile").is_file():
        raise EdgecompError(f"{bundle_dir} has no Makefile", None, "pass a folder written by `edgecomp compile`")
    if target is None:
        target = read_manifest(bundle_dir)["target"]
    target = load_target(target)
    host = bool(host) or target.is_host
    build_dir = Path(build_dir).resolve() if build_dir else default_build_dir(bundle_dir, target, host)
    build_dir.mkdir(parents=True, exist_ok=True)
    _need_tool("make", "make")
    models = [Path(s).with_suffix(".o").name for s in _model_sources(bundle_dir)]
    if host:
        _need_tool("gcc", "gcc")
        log = _run_make(bundle_dir, build_dir, "host")
        objs = [build_dir / "host" / o for o in models]
        mflash, mram = _nm_sizes(_need_tool("nm", "binutils"), objs)
        return BuildResult(bundle_dir, build_dir, target.name, True, build_dir / "host" / "fw",
                           flash_bytes=mflash, static_ram_bytes=mram, model_flash_bytes=mflash,
                           model_ram_bytes=mram, log=log)
    for tool in ("arm-none-eabi-gcc", "arm-none-eabi-size", "arm-none-eabi-nm"):
        _need_tool(tool, "gcc-arm-none-eabi libnewlib-arm-none-eabi")
    log = _run_make(bundle_dir, build_dir, "all", target)
    elf = build_dir / "fw.elf"
    p = subprocess.run(["arm-none-eabi-size", "-A", str(elf)], capture_output=True, text=True)
    if p.returncode != 0:
        raise ToolError(f"arm-none-eabi-size failed: {p.stderr.strip()}", str(elf), "check the binutils installation")
    allsec = parse_size_a(p.stdout)
    sections = {k: v for k, v in allsec.items() if k in (".text", ".rodata", ".ARM.exidx", ".data", ".bss")}
    flash = sum(sections.get(k, 0) for k in (".text", ".rodata", ".ARM.exidx", ".data"))
    static = sections.get(".data", 0) + sections.get(".bss", 0)
    mflash, mram = _nm_sizes("arm-none-eabi-nm", [build_dir / "arm" / o for o in models])
    # The stack takes the RAM after .data/.bss (8-byte aligned), up to the end of RAM.
    stack_avail = target.ram_size - ((static + 7) & ~7)
    res = BuildResult(bundle_dir, build_dir, target.name, False, elf, sections, flash, static, stack_avail,
                      mflash, mram, log)
    if flash > target.flash_size:  # the linker script already refuses this; keep the check explicit
        raise DoesNotFitError(f"the firmware needs {flash:,} bytes of flash, {target.name} has {target.flash_size:,}",
                              str(bundle_dir), "compress the model more or pick a target with more flash")
    return res


# --------------------------------------------------------------------------- stack
def measure_stack(bundle_dir: Path, target: Target, built: BuildResult, input_bytes: int,
                  timeout: float = 120.0) -> int | None:
    """Stack peak (bytes) of one inference on a zero input, run under QEMU (or natively for ``host``).

    A board without an emulator is measured on its ``emulate_with`` target with
    the board's own compiler flags (same core, same code).  Returns None when
    there is no way to run it (no emulator for that core, or QEMU missing).
    """
    from .emulator import run_firmware

    if built.host or target.is_host:
        exe, emu = built.elf, None
    elif target.emulated:
        exe, emu = built.elf, target
    elif target.emulate_with:
        emu = dataclasses.replace(load_target(target.emulate_with), cpu_flags=target.cpu_flags)
        work = Path(tempfile.mkdtemp(prefix="edgecomp-stack-"))
        try:
            src = work / "src"
            shutil.copytree(bundle_dir, src, ignore=shutil.ignore_patterns("build", "manifest.json"))
            write_firmware(src, emu, "stack", probe=True)
            exe = build(src, emu, build_dir=work / "build").elf
            return _stack_of(run_firmware, exe, emu, input_bytes, timeout)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    else:
        return None
    if emu is not None and shutil.which("qemu-system-arm") is None:
        return None
    return _stack_of(run_firmware, exe, emu, input_bytes, timeout)


def _stack_of(run_firmware, exe: Path, emu: Target | None, input_bytes: int, timeout: float) -> int | None:
    with tempfile.TemporaryDirectory(prefix="edgecomp-run-") as td:
        (Path(td) / "ec_input.bin").write_bytes(bytes(input_bytes))
        out = run_firmware(exe, emu, Path(td), timeout=timeout)
    return out.report.stack


# --------------------------------------------------------------------------- bundle
def _io_entry(graph: ir.Graph, name: str) -> dict[str, Any]:
    t = graph.t(name)
    d: dict[str, Any] = {"name": name, "shape": list(t.shape), "dtype": t.dtype,
                         "layout": graph.meta.get("input_layout", "NHWC") if len(t.shape) == 4 else "NC",
                         "quantization": t.quant.to_json() if t.quant is not None else None}
    if len(t.shape) == 4 and graph.meta.get("source_layout"):
        d["source_layout"] = graph.meta["source_layout"]
    return d


def _get(info: Any, key: str, default: Any = None) -> Any:
    if isinstance(info, dict):
        return info.get(key, default)
    return getattr(info, key, default)


def _json_safe(options: dict) -> dict:
    out = {}
    for k, v in sorted((options or {}).items()):
        if isinstance(v, (str, int, float, bool)) or v is None:
            out[str(k)] = v
        elif isinstance(v, (list, tuple)) and all(isinstance(x, (str, int, float, bool)) for x in v):
            out[str(k)] = list(v)
        else:
            out[str(k)] = str(type(v).__name__)
    return out


def write_bundle(graph: ir.Graph, target: str | Target, out_dir: str | Path, options: dict | None = None) -> dict:
    """Generate, build and measure a Cortex-M (or host) bundle in ``out_dir``; return its manifest.

    Raises :class:`DoesNotFitError` (and leaves no bundle) when the model does not
    fit the target's flash or RAM.
    """
    from . import c_codegen

    target = load_target(target)
    if target.kind not in ("cortex-m", "host"):
        raise EdgecompError(f"target {target.name!r} is not a microcontroller or host target", None,
                            "use the Raspberry Pi backend for it")
    options = dict(options or {})
    name = check_model_name(str(options.get("name") or graph.name or "model"))
    probe = bool(options.get("probe", True))
    options.setdefault("kernels", "auto")
    dsp = c_codegen.kernels_choice(options["kernels"], target.dsp)
    options.setdefault("optimize", "balanced")
    if options["optimize"] not in ("balanced", "speed"):
        raise EdgecompError(f"unknown optimization goal {options['optimize']!r}", None,
                            "use 'balanced' (the default) or 'speed'")
    with atomic_dir(Path(out_dir)) as tmp:
        info = c_codegen.generate(graph, tmp, name=name, probe=probe, dsp=dsp,
                                  speed=options["optimize"] == "speed")
        write_firmware(tmp, target, name, probe)
        with tempfile.TemporaryDirectory(prefix="edgecomp-build-") as bd:
            try:
                built = build(tmp, target, build_dir=Path(bd))
                in_t = graph.t(graph.inputs[0])
                stack = measure_stack(tmp, target, built, in_t.nbytes)
            except EdgecompError as e:
                # name the bundle the user asked for, not the temporary folder it was built in
                where = str(out_dir) if e.where in (None, str(tmp)) else e.where.replace(str(tmp), str(out_dir))
                fix = e.fix
                if isinstance(e, DoesNotFitError) and options["optimize"] == "speed" and dsp:
                    fix = "compile with --optimize balanced (int8 weights, the least RAM), or " + fix
                raise type(e)(e.what, where, fix) from None
        arena = int(_get(info, "arena_bytes", 0) or 0)
        static = max(built.model_ram_bytes - arena, 0)
        if stack is not None and built.stack_available_bytes is not None and stack >= built.stack_available_bytes:
            raise DoesNotFitError(f"one inference needs at least {stack:,} bytes of stack, {target.name} has "
                                  f"{built.stack_available_bytes:,} left after {built.static_ram_bytes:,} bytes "
                                  "of static RAM", str(out_dir),
                                  "compress the model more or pick a target with more RAM")
        layers = [dict(l) if isinstance(l, dict) else dataclasses.asdict(l) for l in (_get(info, "layers") or [])]
        manifest: dict[str, Any] = {
            "name": name,
            "target": target.name,
            "target_info": target.to_json(),
            "options": _json_safe(options),
            "macs": ir.total_macs(graph),
            "params": ir.param_count(graph),
            "flash_bytes": built.flash_bytes,
            "ram_bytes": arena + static + (stack or 0),
            "ram": {"arena_bytes": arena, "static_bytes": static, "stack_peak_bytes": stack},
            "model_flash_bytes": built.model_flash_bytes,
            "sections": built.sections,
            "inputs": [_io_entry(graph, n) for n in graph.inputs],
            "outputs": [_io_entry(graph, n) for n in graph.outputs],
            "layers": layers,
            # The probe's unit: "cycles" (DWT on silicon), "systick" (Cortex-M0, QEMU), "ns" (host).
            "probe": {"timer": target.timer, "qemu_insns_per_systick": target.insns_per_systick},
        }
        if not target.is_host:
            manifest["fits"] = {
                "flash": f"{built.flash_bytes:,} of {target.flash_size:,} bytes "
                         f"({100.0 * built.flash_bytes / target.flash_size:.1f}%)",
                "ram": f"{built.static_ram_bytes + (stack or 0):,} of {target.ram_size:,} bytes "
                       f"({100.0 * (built.static_ram_bytes + (stack or 0)) / target.ram_size:.1f}%, "
                       f"whole firmware, stack {'peak' if stack is not None else 'not measured'})",
            }
        return write_manifest(tmp, manifest)
