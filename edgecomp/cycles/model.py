"""A Cortex-M timing model: cycles per instruction class from the core's table, with its rules.

The tables are data, one file per core in ``targets/timing/<core>.toml`` (a target file names its
core in ``cpu``); each cites the Technical Reference Manual sections its numbers come from. The
rules applied on top (docs/cycles.md, "The model"):

* every instruction costs its class's cycles (``[cycles]``), multiple transfers add
  ``[per_register]`` for each register moved (the TRMs' 1 + N);
* a taken branch costs its class's cycles (1 + P), a conditional one that falls through
  ``rules.branch_not_taken``; loads and data-processing instructions that write the PC add
  ``rules.pc_refill``, an LDM/POP with the PC ``rules.pop_pc_extra``;
* single loads and stores pipeline after a single load (``rules.load_pipelined``) unless they
  compute their address from its result; a store with a register offset costs
  ``rules.store_register_offset``; a load or store whose address the previous data-processing
  instruction wrote waits ``rules.address_stall`` more;
* dual-issue cores (``issue = "dual"``: Cortex-M7, M55) use the simpler rule of
  ``[dual_issue]``: an instruction issues together with the one before it (one cycle less) when
  neither is of a class that issues alone, they are not both of one ``one_per_cycle`` group, it
  does not read what that one writes, and that one did not already pair.
* flash wait states (from the target file) cost nothing where an accelerator or cache hides them;
  otherwise every fetch of a flash line costs them (a block of code takes at least its lines'
  fetch time) and so does every PC-relative (literal pool) load.

Nothing here knows QEMU: :mod:`edgecomp.cycles.trace` gives the executed blocks and their
successions, this module prices them.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import EdgecompError
from ..resources import targets_dir
from .isa import CLASSES, Insn

#: Version of the rules in this module (a table has its own ``version``).
RULES_VERSION = 1

DATA_PROCESSING = frozenset(("alu", "simd", "mul", "mla", "mul_long", "mla_long", "mac", "mac_long", "div",
                             "vfp_move"))
MULTIPLE = ("load_multiple", "store_multiple", "vfp_load_multiple", "vfp_store_multiple")
RULE_KEYS = ("branch_not_taken", "pc_refill", "pop_pc_extra", "isb", "load_pipelined",
             "store_register_offset", "address_stall")
TARGET_TIMING_KEYS = ("table", "flash_wait_states", "flash_line_bytes", "flash_accelerator")


def timing_dir() -> Path:
    return targets_dir() / "timing"


def list_tables() -> list[str]:
    return sorted(p.stem for p in timing_dir().glob("*.toml"))


@dataclass(frozen=True)
class Memory:
    """Flash wait states of a board at its clock (the target file's ``[timing]``)."""

    wait_states: int = 0
    line_bytes: int = 16
    hidden: bool = True   # an accelerator / cache hides them (the model cannot see its misses)

    @property
    def active(self) -> bool:
        return self.wait_states > 0 and not self.hidden

    def to_json(self) -> dict[str, Any]:
        return {"flash_wait_states": self.wait_states, "flash_line_bytes": self.line_bytes,
                "flash_accelerator": self.hidden}


@dataclass
class TBCost:
    """Cycles of one executed block: with its last instruction's branch taken or not."""

    cycles_nt: float
    cycles_taken: float
    classes_nt: dict[str, float]
    classes_taken: dict[str, float]
    counts: dict[str, int]          # instructions per class
    branch_last: bool               # the last instruction may change the PC
    cond_last: bool                 # ... and only when its condition passes


@dataclass
class TimingModel:
    core: str
    version: int
    source: str
    issue: str
    cycles: dict[str, float]
    per_register: dict[str, float]
    rules: dict[str, float]
    dual: dict[str, Any] = field(default_factory=dict)
    memory: Memory = field(default_factory=Memory)
    path: str = ""

    # ------------------------------------------------------------------ one instruction
    def base_cost(self, ins: Insn, prev: Insn | None, taken: bool) -> float:
        """Cycles of ``ins`` after ``prev`` (None: after a branch or at the start of a run)."""
        cls, R = ins.cls, self.rules
        c = self.cycles[cls]
        if cls in MULTIPLE:
            c += self.per_register[cls] * ins.nregs
            if ins.writes_pc and taken:
                c += R["pop_pc_extra"]
        elif cls == "load":
            if ins.writes_pc:
                c += R["pc_refill"] if taken else 0
            elif self._pipelined(prev, ins):
                c = R["load_pipelined"]
        elif cls == "store":
            if ins.reg_offset:
                c = R["store_register_offset"]
            if self._pipelined(prev, ins):
                c = min(c, R["load_pipelined"])
        elif cls == "barrier" and ins.mnemonic == "isb":
            c = R["isb"]
        elif cls in DATA_PROCESSING and ins.writes_pc and taken:
            c += R["pc_refill"]
        if ins.writes_pc and not taken:
            c = R["branch_not_taken"]  # a conditional branch (or PC write) that falls through
        if (ins.addr_regs and prev is not None and prev.cls in DATA_PROCESSING
                and prev.writes & ins.addr_regs):
            c += R["address_stall"]
        if self.memory.active and cls == "load" and 15 in ins.addr_regs:
            c += self.memory.wait_states  # a literal-pool load reads flash
        return c

    @staticmethod
    def _pipelined(prev: Insn | None, ins: Insn) -> bool:
        return (prev is not None and prev.single_load and ins.cls in ("load", "store")
                and not ins.writes_pc and not (prev.writes & ins.addr_regs))

    def pairs(self, prev: Insn | None, ins: Insn, prev_paired: bool) -> bool:
        """Dual issue: does ``ins`` issue in the same cycle as ``prev``?"""
        if self.issue != "dual" or prev is None or prev_paired:
            return False
        alone = self.dual["alone"]
        if prev.cls in alone or ins.cls in alone:
            return False
        for group in self.dual["one_per_cycle"]:
            if prev.cls in group and ins.cls in group:
                return False
        return not (prev.writes & ins.reads)

    # ------------------------------------------------------------------ blocks
    def block_cost(self, insns: list[Insn], nbytes: int, start: int) -> TBCost:
        """Cycles of a block executed from its first instruction (no predecessor context)."""
        res = []
        for taken in (False, True):
            total, classes = 0.0, {}
            prev, paired = None, False
            for i, ins in enumerate(insns):
                last = i == len(insns) - 1
                c = self.base_cost(ins, prev, taken if last else False)
                p = self.pairs(prev, ins, paired)
                if p and c >= 1:
                    c -= 1
                paired = p
                total += c
                classes[ins.cls] = classes.get(ins.cls, 0.0) + c
                prev = ins
            if self.memory.active and nbytes:
                lb = self.memory.line_bytes
                lines = (start % lb + nbytes + lb - 1) // lb
                fetch = lines * (1 + self.memory.wait_states)
                if fetch > total:
                    classes["flash_wait"] = fetch - total
                    total = float(fetch)
            res.append((total, classes))
        counts: dict[str, int] = {}
        for ins in insns:
            counts[ins.cls] = counts.get(ins.cls, 0) + 1
        last = insns[-1] if insns else None
        return TBCost(res[0][0], res[1][0], res[0][1], res[1][1], counts,
                      bool(last and last.writes_pc), bool(last and last.cond))

    def boundary_adjust(self, prev: Insn | None, first: Insn | None) -> float:
        """Change in the cost of a block's first instruction when ``prev`` ran right before it."""
        if prev is None or first is None:
            return 0.0
        if prev.writes_pc:
            return 0.0  # after a branch nothing pipelines or pairs across
        alone = self.base_cost(first, None, True)
        after = self.base_cost(first, prev, True)
        if self.pairs(prev, first, False) and after >= 1:
            after -= 1
        return after - alone

    def describe(self) -> dict[str, Any]:
        return {"core": self.core, "table_version": self.version, "rules_version": RULES_VERSION,
                "issue": self.issue, "source": self.source, "refill_P": self.rules["pc_refill"],
                "memory": self.memory.to_json(), "table": Path(self.path).name if self.path else None}


# ---------------------------------------------------------------------- loading
def load_model(core: str, memory: Memory | None = None) -> TimingModel:
    """The timing model of ``core`` from ``targets/timing/<core>.toml`` (or a path to a table)."""
    path = Path(core) if str(core).endswith(".toml") else timing_dir() / f"{core}.toml"
    if not path.is_file():
        raise EdgecompError(f"no timing table for core {core!r}", str(path),
                            f"use a core with a table ({', '.join(list_tables())}) or add "
                            f"targets/timing/{core}.toml (see docs/cycles.md)")
    where = str(path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise EdgecompError(f"timing table is not valid TOML: {e}", where, "fix its syntax") from None

    def table(name: str, keys: tuple[str, ...]) -> dict[str, float]:
        t = data.get(name)
        if not isinstance(t, dict):
            raise EdgecompError(f"timing table lacks [{name}]", where, "copy targets/timing/cortex-m4.toml")
        missing = [k for k in keys if k not in t]
        unknown = [k for k in t if k not in keys]
        if missing or unknown:
            raise EdgecompError(f"timing table [{name}]: missing {missing or 'none'}, unknown {unknown or 'none'}",
                                where, "give exactly the classes of targets/timing/cortex-m4.toml")
        for k, v in t.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise EdgecompError(f"timing table [{name}] {k} = {v!r} is not a cycle count", where,
                                    "give a number >= 0")
        return {k: float(v) for k, v in t.items()}

    cycles = table("cycles", CLASSES)
    per_register = table("per_register", MULTIPLE)
    rules = table("rules", RULE_KEYS)
    issue = data.get("issue", "single")
    if issue not in ("single", "dual"):
        raise EdgecompError(f"timing table issue = {issue!r}", where, 'use "single" or "dual"')
    dual: dict[str, Any] = {}
    if issue == "dual":
        d = data.get("dual_issue")
        if not isinstance(d, dict) or "alone" not in d or "one_per_cycle" not in d:
            raise EdgecompError("a dual-issue table needs [dual_issue] with alone and one_per_cycle", where,
                                "see targets/timing/cortex-m7.toml")
        bad = [c for c in list(d["alone"]) + [c for g in d["one_per_cycle"] for c in g] if c not in CLASSES]
        if bad:
            raise EdgecompError(f"[dual_issue] names unknown classes {bad}", where, "use the classes of [cycles]")
        dual = {"alone": frozenset(d["alone"]), "one_per_cycle": [frozenset(g) for g in d["one_per_cycle"]]}
    for key in ("core", "version", "source"):
        if key not in data:
            raise EdgecompError(f"timing table lacks {key!r}", where, "copy targets/timing/cortex-m4.toml")
    return TimingModel(core=data["core"], version=int(data["version"]), source=data["source"], issue=issue,
                       cycles=cycles, per_register=per_register, rules=rules, dual=dual,
                       memory=memory or Memory(), path=where)


def model_for_target(target) -> TimingModel:
    """The model for a target: its core's table (``[timing] table`` overrides ``cpu``) and its flash
    wait states (``[timing] flash_wait_states``, ``flash_line_bytes``, ``flash_accelerator``)."""
    t = dict(getattr(target, "raw", {}).get("timing", {}) or {})
    unknown = [k for k in t if k not in TARGET_TIMING_KEYS]
    if unknown:
        raise EdgecompError(f"target [timing] has unknown keys {unknown}", getattr(target, "path", None),
                            f"use {', '.join(TARGET_TIMING_KEYS)}")
    ws = t.get("flash_wait_states", 0)
    lb = t.get("flash_line_bytes", 16)
    acc = t.get("flash_accelerator", True)
    if not isinstance(ws, int) or isinstance(ws, bool) or ws < 0 or not isinstance(lb, int) or lb <= 0 \
            or not isinstance(acc, bool):
        raise EdgecompError("target [timing]: flash_wait_states and flash_line_bytes must be integers "
                            "(>= 0, > 0), flash_accelerator true or false", getattr(target, "path", None),
                            "see targets/nucleo-l4r5zi.toml")
    return load_model(t.get("table", target.cpu), Memory(ws, lb, acc))
