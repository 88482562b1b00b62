"""The cross toolchain as the Cortex-M backend calls it: ``make`` in a private folder, its
failures turned into one clear error, and the linker's sizes read back (``size -A``, ``nm -S``).

Apart from :mod:`edgecomp.backends.cortex_m` (bundles, build, measure) so that each stays a
readable size; nothing here knows what a bundle is.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from ..errors import DoesNotFitError, EdgecompError, ToolError
from ..targets import Target


def need_tool(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise ToolError(f"{tool} was not found on PATH", None,
                        f"install it (Debian/Ubuntu: apt-get install {package}) or add it to PATH")
    return path


def run_make(src_dir: Path, goal: str | None, target: Target | None = None,
              env_cross: str = "arm-none-eabi-", extra: list[str] | None = None) -> str:
    """``make`` in ``src_dir`` (a private staging folder) with relative paths only.

    No path reaches make's command line or the compiler's: make runs in the folder it
    builds (``cwd``) and writes to ``build/`` there, so no character of the bundle's or
    ``$TMPDIR``'s path is ever read as make syntax ($(shell ...), spaces, quotes, ':').
    """
    cmd = ["make", "--no-print-directory", "BUILD=build", f"CROSS={env_cross}", *(extra or [])]
    if goal:
        cmd.append(goal)
    # The compilers' own temporary files go to a relative folder too: gcc leaves its link
    # resolution files (cc*.res) behind when $TMPDIR holds '=', and they belong to this build.
    (Path(src_dir) / "tmp").mkdir(exist_ok=True)
    try:
        p = subprocess.run(cmd, cwd=src_dir, capture_output=True, text=True, timeout=600,
                           stdin=subprocess.DEVNULL, env={**os.environ, "TMPDIR": "tmp"})
    except subprocess.TimeoutExpired:
        raise ToolError("the build took more than 10 minutes", None, "check the Makefile") from None
    log = p.stdout + p.stderr
    if p.returncode != 0:
        raise build_error(log, None, target)
    return log


def build_error(log: str, bundle_dir: Path | None, target: Target | None = None) -> EdgecompError:
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
        return DoesNotFitError("the model does not fit the target: " + "; ".join(parts), _where(bundle_dir),
                               "compress the model more (int8, pruning, fewer channels) or pick a target "
                               "with more memory")
    if "will not fit in region" in log:
        return DoesNotFitError("the model does not fit the target's memory: "
                               + next(l for l in log.splitlines() if "will not fit in region" in l).strip(),
                               _where(bundle_dir), "compress the model more or pick a target with more memory")
    tail = "\n".join(log.strip().splitlines()[-15:])
    return ToolError(f"the firmware build failed:\n{tail}", _where(bundle_dir),
                     "this is a bug in edgecomp if the bundle was not edited; please report it with the log")


def parse_size_a(text: str) -> dict[str, int]:
    """Sections and sizes from ``size -A`` output."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith(".") and parts[1].isdigit():
            out[parts[0]] = int(parts[1])
    return out


_NM_SYMBOL = re.compile(r"[0-9a-fA-F]+ ([0-9a-fA-F]+) (\w) \S+")  # value, size, type, name


def nm_sizes(nm: str, objects: list[Path]) -> tuple[int, int]:
    """(flash bytes, RAM bytes) of the symbols defined in ``objects``."""
    if not objects:
        return 0, 0
    p = subprocess.run([nm, "-S", *map(str, objects)], capture_output=True, text=True)
    if p.returncode != 0:
        raise ToolError(f"{nm} failed: {p.stderr.strip()}", None, "check the binutils installation")
    flash = ram = 0
    # symbol lines only, not the "<path>:" headers: a build path may hold spaces (TMPDIR)
    for m in filter(None, map(_NM_SYMBOL.fullmatch, p.stdout.splitlines())):
        size, kind = int(m.group(1), 16), m.group(2)
        if kind in "bBdDcC":
            ram += size
        elif kind in "tTrR":
            flash += size
    return flash, ram


def _where(bundle_dir: Path | None) -> str | None:
    return None if bundle_dir is None else str(bundle_dir)
