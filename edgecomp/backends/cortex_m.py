"""Cortex-M bundles: generated model + firmware shell, built and measured.

A bundle folder holds C sources and a Makefile, nothing built::

    model.c model.h weights.c ec_kernels.c ec_kernels.h   (backends/c/)
    main.c ec_platform.c ec_platform.h ec_platform_host.c startup.c
    linker.ld Makefile                                    (from the target file)
    manifest.json

:func:`write_bundle` writes one (atomically), builds it once outside the
bundle to measure it, and records the sizes in the manifest: flash from
``arm-none-eabi-size -A``, the model's static RAM from ``arm-none-eabi-nm -S``
on the model objects only, and the stack peak of one inference run under QEMU.
:func:`build` builds a bundle in a private folder outside it (its listed
files only, checked against the manifest first: :mod:`edgecomp.integrity`), so the
bundle stays exactly as compiled.
"""
from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from .. import ir
from ..bundle import atomic_dir, read_manifest, write_manifest
from ..errors import DoesNotFitError, EdgecompError, ToolError
from ..resources import template_env, templates_dir
from ..targets import Target, load_target
from .toolchain import need_tool, nm_sizes, parse_size_a, run_make

#: Firmware files copied as they are from templates/cortex_m/.
SHELL_FILES = ("main.c", "ec_platform.h", "ec_platform.c", "ec_platform_host.c", "startup.c")
HOST_SHELL_FILES = ("main.c", "ec_platform.h", "ec_platform_host.c")
#: Sources that are not the model (everything else ending in .c is).
NOT_MODEL = {"main.c", "ec_platform.c", "ec_platform_host.c", "startup.c"}

_NAME_OK = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_MAKE_SAFE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


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
    return template_env("cortex_m")


def check_model_name(name: str) -> str:
    if not _NAME_OK.fullmatch(name or ""):
        raise EdgecompError(f"model name {name!r} cannot be used in the firmware", None,
                            "use 1-64 letters, digits, '_', '.' or '-'")
    return name


def cmake_library(model_name: str) -> str:
    """The bundle's CMake static library target: ``<model name>_model`` (a C identifier)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", model_name) + "_model"


def _model_files(out_dir: Path) -> tuple[list[str], list[str]]:
    """(model sources, kernel files) in a bundle folder: the generated C, not the harness."""
    harness = set(SHELL_FILES) | set(HOST_SHELL_FILES)
    sources = sorted(p.name for p in out_dir.glob("*.c") if p.name not in harness)
    kernels = sorted(p.name for p in out_dir.iterdir() if p.suffix in (".c", ".h") and p.name not in harness
                     and p.name not in ("model.c", "model.h", "weights.c"))
    return sources, kernels


def write_readme(out_dir: Path, target: Target, model_name: str, model: dict | None = None) -> None:
    """The bundle's README.md: files, the model's input and output, the commands that run it, and how to
    put it into a firmware (``model``: see :func:`readme_model`; without it, the generic text)."""
    _, kernels = _model_files(Path(out_dir))
    (Path(out_dir) / "README.md").write_text(_env().get_template("README.md.j2").render(
        target=target, model_name=model_name, model=model, kernel_files=kernels,
        cmake_library=cmake_library(model_name)))


def readme_model(graph: ir.Graph, arena_bytes: int, stack_bytes: int | None) -> dict:
    """What the README says about the model: its input and output, arena and stack."""
    def io(name: str) -> dict:
        t = graph.t(name)
        return {"name": name, "shape": list(t.shape), "ctype": {"int8": "int8_t", "int16": "int16_t"}.get(t.dtype, "float"),
                "elements": t.size, "bytes": t.nbytes,
                "scale": f"{float(t.quant.scale[0]):.9g}" if t.quant is not None else None,
                "zero_point": int(t.quant.zero_point[0]) if t.quant is not None else None,
                "source_layout": graph.meta.get("io_layouts", {}).get(name) or
                (graph.meta.get("source_layout") if len(t.shape) == 4 else None)}
    return {"input": io(graph.inputs[0]), "output": io(graph.outputs[0]), "arena_bytes": int(arena_bytes),
            "stack_bytes": stack_bytes}


def write_firmware(out_dir: Path, target: Target, model_name: str, probe: bool = True) -> list[str]:
    """Add the firmware shell (harness, platform, startup, linker script, Makefile, CMakeLists.txt,
    README) to ``out_dir``, which holds the generated model."""
    out_dir = Path(out_dir)
    check_model_name(model_name)
    src = templates_dir() / "cortex_m"
    files = HOST_SHELL_FILES if target.is_host else SHELL_FILES
    for name in files:
        shutil.copyfile(src / name, out_dir / name)
    env = _env()
    model_sources = sorted(p.name for p in out_dir.glob("*.c") if p.name not in NOT_MODEL)
    headers = sorted(p.name for p in out_dir.glob("*.h"))
    for n in model_sources + headers:  # generated names; make must not read anything into them
        if not _MAKE_SAFE.fullmatch(n):
            raise EdgecompError(f"source file name {n!r} cannot go into the Makefile", str(out_dir),
                                "use letters, digits, '_', '.' and '-' in file names")
    (out_dir / "Makefile").write_text(env.get_template("Makefile.j2").render(
        target=target, model_name=model_name, probe=probe, model_sources=model_sources, headers=headers))
    sources, _ = _model_files(out_dir)
    (out_dir / "CMakeLists.txt").write_text(env.get_template("CMakeLists.txt.j2").render(
        target=target, model_name=model_name, library=cmake_library(model_name), sources=sources))
    write_readme(out_dir, target, model_name)
    written = list(files) + ["Makefile", "CMakeLists.txt", "README.md"]
    if not target.is_host:
        (out_dir / "linker.ld").write_text(env.get_template("linker.ld.j2").render(target=target))
        written.append("linker.ld")
    return written


# --------------------------------------------------------------------------- build
def _model_sources(bundle_dir: Path) -> list[str]:
    """The generated model's C files (a user's own files, e.g. a UART driver, are not the model)."""
    from .c.generate import MODEL_FILES
    from .c.kernels.catalogue import bundle_names
    files = MODEL_FILES + bundle_names("reference", "s16")
    generated = sorted(n for n in files if n.endswith(".c") and (bundle_dir / n).is_file())
    return generated or sorted(p.name for p in bundle_dir.glob("*.c") if p.name not in NOT_MODEL)


#: The bundle files that hold the model itself; every other file of a Cortex-M bundle is one
#: edgecomp writes the same way for every model (shell, kernels) and is checked against that.
MODEL_FILES = ("model.c", "model.h", "weights.c", "README.md")  # README.md: it describes the model (no build reads it)


def check_own_files(src: Path, manifest: dict) -> None:
    """Refuse a bundle whose build files or kernels are not the ones edgecomp writes.

    A manifest can be re-hashed by whoever edits a bundle, so its sha256 list proves
    nothing about who wrote the files.  Only ``model.c``, ``model.h`` and ``weights.c``
    may differ between bundles; the Makefile, linker script, startup, harness, platform
    and kernel files must equal what this edgecomp writes for the manifest's target and
    name (so a bundle's Makefile never runs commands edgecomp did not write).
    """
    from .c.kernels.catalogue import all_kernel_files, kernel_file_bytes
    from .. import workdirs

    where = str(manifest.get("_where", src))
    tname = manifest.get("target")
    if not isinstance(tname, str) or not _MAKE_SAFE.fullmatch(tname) or tname.endswith(".toml"):
        raise EdgecompError(f"the manifest names target {str(tname)[:60]!r}, not a target of edgecomp", where,
                            "compile the bundle again with --target NAME")
    target = load_target(tname)
    name = check_model_name(str(manifest.get("name") or "model"))
    files = sorted(manifest["files"])
    kernels = all_kernel_files()
    with workdirs.work_dir("check") as ref:
        variants = []
        for probe in (True, False):
            d = ref / f"probe{int(probe)}"
            d.mkdir()
            for f in files:
                if f in MODEL_FILES or f in kernels:
                    (d / f).touch()
            write_firmware(d, target, name, probe)
            variants.append(d)
        odd = []
        for f in files:
            if f in MODEL_FILES or (target.uf2_family is not None and f == f"{name}.uf2"):
                continue  # (the UF2 image is the built firmware: no build reads it; its hash is checked)
            if f not in kernels and not (variants[0] / f).is_file():
                odd.append(f"{f} (not a file edgecomp writes)")
                continue
            got = (src / f).read_bytes()
            if f in kernels:
                ok = got == kernel_file_bytes(f)
            elif (variants[0] / f).is_file():
                ok = any(got == (v / f).read_bytes() for v in variants)
            else:
                odd.append(f"{f} (not a file edgecomp writes)")
                continue
            if not ok:
                odd.append(f)
    if odd:
        raise EdgecompError(f"the bundle's {', '.join(odd[:6])} differ from what edgecomp writes for target "
                            f"{target.name}", where,
                            "edgecomp builds a bundle only with its own build files and kernels; compile the "
                            "bundle again (a bundle from another edgecomp version needs that version)")


def stage_bundle(bundle_dir: Path, dest: Path, allow: tuple | set = ()) -> dict:
    """Check a Cortex-M bundle and copy it into ``dest`` (manifest left out): see :func:`check_own_files`.
    ``allow``: names of the user's own files in the folder, named explicitly (not copied)."""
    from ..integrity import MANIFEST, stage

    manifest = stage(bundle_dir, dest, allow=allow)
    (dest / MANIFEST).unlink()
    check_own_files(dest, {**manifest, "_where": str(bundle_dir)})
    return manifest


def stage_sources(bundle_dir: Path, dest: Path, allow: tuple | set = ()) -> dict | None:
    """Copy what is to be built from ``bundle_dir`` into the private folder ``dest``.

    A bundle (it has a manifest) is checked first: its listed files only, each hashed
    as it is copied, no unlisted file, no symbolic link (:mod:`edgecomp.integrity`);
    returns its manifest.  A folder of sources without a manifest (a bundle being
    written, or a developer's folder) gives its regular files; returns None.
    """
    from ..integrity import MANIFEST

    if os.path.lexists(bundle_dir / MANIFEST):
        return stage_bundle(bundle_dir, dest, allow)
    with os.scandir(bundle_dir) as it:
        for e in it:
            if e.is_file(follow_symlinks=False) and _MAKE_SAFE.fullmatch(e.name):
                shutil.copyfile(e.path, dest / e.name)
    return None


def build(bundle_dir: str | Path, target: str | Target | None = None, *, build_dir: str | Path | None = None,
          host: bool | None = None, host_cflags: str | None = None,
          extra_sources: list[str | Path] | tuple = ()) -> BuildResult:
    """Build a bundle: firmware with arm-none-eabi-gcc, or natively (``host=True`` or target ``host``).

    The sources are first copied (and, for a bundle, checked: :func:`stage_sources`) into
    ``build_dir/src`` and built there (``build_dir/src/build``), so nothing is written into
    the bundle and only its listed files are compiled.  ``build_dir`` defaults to a private
    temporary folder that lives until the process exits.  ``host_cflags`` are extra flags of
    a native build (e.g. ``-fsanitize=undefined,address``).  ``extra_sources`` are C files
    of the user's own (a UART driver defining ``ec_putc``), named explicitly: compiled
    with the bundle (``USER_SRCS``), never picked up from the folder.
    """
    from .. import workdirs

    bundle_dir = Path(bundle_dir).resolve()
    if not bundle_dir.is_dir():
        raise EdgecompError(f"{bundle_dir} is not a folder", None, "pass a folder written by `edgecomp compile`")
    if not (bundle_dir / "Makefile").is_file():
        raise EdgecompError(f"{bundle_dir} has no Makefile", None, "pass a folder written by `edgecomp compile`")
    work = Path(build_dir).resolve() if build_dir else workdirs.process_dir("build")
    src = work / "src"
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    extra_sources = [Path(f) for f in extra_sources]
    inside = {f.name for f in extra_sources if f.resolve().parent == bundle_dir}
    manifest = stage_sources(bundle_dir, src, inside)
    user = []
    for f in extra_sources:
        f = Path(f)
        if (not f.is_file() or f.is_symlink() or f.suffix != ".c" or not _MAKE_SAFE.fullmatch(f.name)
                or (src / f.name).exists()):
            raise EdgecompError(f"extra source {f} must be an existing .c file whose name (letters, digits, '_', "
                                "'.', '-') differs from the bundle's files", None, "rename or move it")
        shutil.copyfile(f, src / f.name)
        user.append(f.name)
    user_arg = [f"USER_SRCS={' '.join(user)}"] if user else []
    if target is None:
        target = (manifest or read_manifest(bundle_dir))["target"]
    target = load_target(target)
    host = bool(host) or target.is_host
    out = src / "build"
    need_tool("make", "make")
    models = [Path(s).with_suffix(".o").name for s in _model_sources(src)]
    if host:
        need_tool("gcc", "gcc")
        extra = ([f"HOST_EXTRA_CFLAGS={host_cflags}"] if host_cflags else []) + user_arg
        try:
            log = run_make(src, "host", extra=extra)
        except EdgecompError as e:
            raise type(e)(e.what, str(bundle_dir), e.fix) from None
        objs = [out / "host" / o for o in models]
        mflash, mram = nm_sizes(need_tool("nm", "binutils"), objs)
        return BuildResult(bundle_dir, out, target.name, True, out / "host" / "fw",
                           flash_bytes=mflash, static_ram_bytes=mram, model_flash_bytes=mflash,
                           model_ram_bytes=mram, log=log)
    for tool in ("arm-none-eabi-gcc", "arm-none-eabi-size", "arm-none-eabi-nm"):
        need_tool(tool, "gcc-arm-none-eabi libnewlib-arm-none-eabi")
    try:
        log = run_make(src, "all", target, extra=user_arg)
    except EdgecompError as e:
        raise type(e)(e.what, str(bundle_dir), e.fix) from None
    elf = out / "fw.elf"
    p = subprocess.run(["arm-none-eabi-size", "-A", str(elf)], capture_output=True, text=True)
    if p.returncode != 0:
        raise ToolError(f"arm-none-eabi-size failed: {p.stderr.strip()}", str(elf), "check the binutils installation")
    allsec = parse_size_a(p.stdout)
    sections = {k: v for k, v in allsec.items() if k in (".text", ".rodata", ".ARM.exidx", ".data", ".bss")}
    flash = sum(sections.get(k, 0) for k in (".text", ".rodata", ".ARM.exidx", ".data"))
    static = sections.get(".data", 0) + sections.get(".bss", 0)
    mflash, mram = nm_sizes("arm-none-eabi-nm", [out / "arm" / o for o in models])
    # The stack takes the RAM after .data/.bss (8-byte aligned), up to the end of RAM.
    stack_avail = target.ram_size - ((static + 7) & ~7)
    res = BuildResult(bundle_dir, out, target.name, False, elf, sections, flash, static, stack_avail,
                      mflash, mram, log)
    if flash > target.flash_size:  # the linker script already refuses this; keep the check explicit
        raise DoesNotFitError(f"the firmware needs {flash:,} bytes of flash, {target.name} has {target.flash_size:,}",
                              str(bundle_dir), "compress the model more or pick a target with more flash")
    if target.uf2_family is not None:  # boards flashed by drag-and-drop (Pico 2): fw.uf2 beside fw.elf
        from ..uf2 import target_uf2
        target_uf2(elf, elf.with_name("fw.uf2"), target)
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
        from .. import workdirs

        emu = dataclasses.replace(load_target(target.emulate_with), cpu_flags=target.cpu_flags)
        with workdirs.work_dir("stack") as work:
            src = work / "emulate"
            src.mkdir()
            stage_sources(bundle_dir, src)  # the bundle being written: no manifest yet
            write_firmware(src, emu, "stack", probe=True)
            exe = build(src, emu, build_dir=work / "build").elf
            return _stack_of(run_firmware, exe, emu, input_bytes, timeout)
    else:
        return None
    if emu is not None and shutil.which("qemu-system-arm") is None:
        return None
    return _stack_of(run_firmware, exe, emu, input_bytes, timeout)


def _stack_of(run_firmware, exe: Path, emu: Target | None, input_bytes: int, timeout: float) -> int | None:
    from .. import workdirs

    with workdirs.work_dir("run") as td:
        (td / "ec_input.bin").write_bytes(bytes(input_bytes))
        out = run_firmware(exe, emu, td, timeout=timeout)
    return out.report.stack


# --------------------------------------------------------------------------- bundle
def _io_entry(graph: ir.Graph, name: str) -> dict[str, Any]:
    t = graph.t(name)
    d: dict[str, Any] = {"name": name, "shape": list(t.shape), "dtype": t.dtype,
                         "layout": graph.meta.get("input_layout", "NHWC") if len(t.shape) == 4 else "NC",
                         "quantization": t.quant.to_json() if t.quant is not None else None}
    if len(t.shape) == 4 and graph.meta.get("source_layout"):
        d["source_layout"] = graph.meta["source_layout"]
    if name in graph.meta.get("io_layouts", {}):  # a 3-D [N, C, L] input held as [N, 1, L, C]
        d["source_layout"] = graph.meta["io_layouts"][name]
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


def write_bundle(graph: ir.Graph, target: str | Target, out_dir: str | Path, options: dict | None = None, *,
                 dump_ir: str | Path | None = None, tuning: dict | None = None, force: bool = False,
                 extra: dict | None = None) -> dict:
    """Generate, build and measure a Cortex-M (or host) bundle in ``out_dir``; return its manifest.

    ``dump_ir``: a folder for the graph after each of the C backend's passes (``--dump-ir``).
    ``tuning``: the kernel planner's limits (:class:`~edgecomp.options.CodegenOptions` fields, e.g.
    ``arena_growth``), for tests and experiments; not recorded in the manifest.

    Raises :class:`DoesNotFitError` (and leaves no bundle) when the model does not
    fit the target's flash or RAM.  ``out_dir`` follows :mod:`edgecomp.outputs` (``force``:
    write into a folder that holds other files).  ``extra``: more manifest entries (the
    quantization report).
    """
    from ..options import CodegenOptions
    from .c import generate

    target = load_target(target)
    if target.kind not in ("cortex-m", "host"):
        raise EdgecompError(f"target {target.name!r} is not a microcontroller or host target", None,
                            "use the Raspberry Pi backend for it")
    options = dict(options or {})
    name = check_model_name(str(options.get("name") or graph.name or "model"))
    probe = bool(options.get("probe", True))
    options.setdefault("kernels", "auto")
    options.setdefault("optimize", "balanced")
    opts = CodegenOptions.for_target(target.dsp, options["kernels"], options["optimize"], target_mve=target.mve,
                                     target_name=target.name, probe=probe,
                                     streaming=bool(options.get("streaming", False)), **(tuning or {}))
    dsp = opts.dsp
    if opts.streaming:  # the bundle's inputs, outputs and MACs are one frame's
        from ..passes.streaming import streamed
        graph = streamed(graph)
    # --kernels auto on a Helium core: the Helium kernels, else (their packed weights do not fit:
    # groups of channels padded to 16 bytes, with their requantization vectors) the DSP kernels
    attempts = [opts] + ([opts.replace(mve=False)] if opts.mve and options["kernels"] == "auto" else [])
    kernels_note = None
    with atomic_dir(Path(out_dir), force=force) as tmp:
        from .. import workdirs

        for i, o in enumerate(attempts):
            if i:  # the Helium attempt's files go: the bundle holds only what this build uses
                for f in list(tmp.iterdir()):
                    shutil.rmtree(f) if f.is_dir() else f.unlink()
            info = generate(graph, tmp, name=name, options=o, dump=dump_ir)
            write_firmware(tmp, target, name, probe)
            with workdirs.work_dir("build") as bd:
                try:
                    built = build(tmp, target, build_dir=bd)
                    stack = measure_stack(tmp, target, built, sum(graph.t(i).nbytes for i in graph.inputs))
                    if target.uf2_family is not None:  # the file a user drags onto the board, listed in the manifest
                        shutil.copyfile(built.elf.with_name("fw.uf2"), tmp / f"{name}.uf2")
                except DoesNotFitError as e:
                    if i + 1 < len(attempts):
                        kernels_note = (f"the Helium kernels' build does not fit ({e.what}): the DSP kernels "
                                        "instead")
                        continue
                    where = str(out_dir) if e.where in (None, str(tmp)) else e.where.replace(str(tmp), str(out_dir))
                    fix = e.fix
                    if options["optimize"] == "speed" and dsp:
                        fix = "compile with --optimize balanced (int8 weights, the least RAM), or " + fix
                    raise DoesNotFitError(e.what, where, fix) from None
                except EdgecompError as e:
                    # name the bundle the user asked for, not the temporary folder it was built in
                    where = str(out_dir) if e.where in (None, str(tmp)) else e.where.replace(str(tmp), str(out_dir))
                    raise type(e)(e.what, where, e.fix) from None
            break
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
            # the same RAM number as ram_bytes (the model's), against the target's RAM
            manifest["fits"] = {
                "flash": f"{built.flash_bytes:,} of {target.flash_size:,} bytes "
                         f"({100.0 * built.flash_bytes / target.flash_size:.1f}%)",
                "ram": f"{manifest['ram_bytes']:,} of {target.ram_size:,} bytes "
                       f"({100.0 * manifest['ram_bytes'] / target.ram_size:.1f}%, arena + static + "
                       f"{'stack peak' if stack is not None else 'stack not measured'})",
            }
        if kernels_note:
            manifest["kernels_note"] = kernels_note
        manifest.update(extra or {})
        write_readme(tmp, target, name, readme_model(graph, arena, stack))
        return write_manifest(tmp, manifest)
