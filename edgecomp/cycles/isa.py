"""Thumb instructions as QEMU prints them (``-d in_asm``), sorted into timing classes.

QEMU 7.2 disassembles each translated block with Capstone, one line an instruction::

    0x00000a94:  e8bb 00f0  ldm.w    fp!, {r4, r5, r6, r7}

:func:`parse_line` turns such a line into an :class:`Insn`: its address, size (2 or 4 bytes),
the timing *class* the cycle tables (``targets/timing/*.toml``) give a cost for, the registers it
reads for its address and writes, the number of registers a multiple transfer moves, whether it
is conditional and whether it may change the program counter. Only what the timing rules need is
decoded (docs/cycles.md, "Instruction classes"); a mnemonic this module does not know is class
``other`` (one cycle) and is counted as such in the report, never dropped.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

CONDITIONS = frozenset("eq ne cs hs cc lo mi pl vs vc hi ls ge lt gt le al".split())

#: The timing classes every table prices (see targets/timing/cortex-m4.toml for their meaning).
CLASSES = (
    "alu", "it", "simd", "mul", "mla", "mul_long", "mla_long", "mac", "mac_long", "div",
    "load", "store", "load_double", "store_double", "load_multiple", "store_multiple",
    "branch", "call", "branch_indirect", "table_branch", "barrier", "system", "hint",
    "vfp", "vfp_mac", "vfp_div", "vfp_load", "vfp_store", "vfp_load_multiple", "vfp_store_multiple",
    "vfp_move", "vector", "vector_load", "vector_store", "other",
)

_DP = ("mov mvn add addw adc sub subw sbc rsb rsc and orr orn eor bic cmp cmn tst teq lsl lsr asr ror rrx "
       "neg adr movw movt cpy").split()
_NOFLAGS_DEST = frozenset("cmp cmn tst teq".split())
_SIMD = ("sxtb sxth uxtb uxth sxtb16 uxtb16 sxtab sxtah sxtab16 uxtab uxtah uxtab16 rev rev16 revsh rbit clz "
         "bfi bfc sbfx ubfx ssat usat ssat16 usat16 sel usad8 usada8 pkhbt pkhtb qadd qsub qdadd qdsub").split()
_SIMD += [p + op for p in ("s", "q", "sh", "u", "uq", "uh") for op in ("add16", "asx", "sax", "sub16", "add8", "sub8")]
_MAC = ["smla" + x + y for x in "bt" for y in "bt"] + ["smul" + x + y for x in "bt" for y in "bt"]
_MAC += "smlawb smlawt smulwb smulwt smlad smladx smlsd smlsdx smuad smuadx smusd smusdx smmul smmulr smmla smmlar smmls smmlsr".split()
_MAC_LONG = ["smlal" + x + y for x in "bt" for y in "bt"] + "smlald smlaldx smlsld smlsldx".split()
_LOADS = "ldr ldrb ldrh ldrsb ldrsh ldrt ldrbt ldrht ldrsbt ldrsht ldrex ldrexb ldrexh lda ldab ldah ldaex".split()
_STORES = "str strb strh strt strbt strht strex strexb strexh stl stlb stlh stlex".split()
_LDM = "ldm ldmia ldmfd ldmdb ldmea pop".split()
_STM = "stm stmia stmea stmdb stmfd push".split()
_VFP = ("vadd vsub vmul vnmul vabs vneg vcmp vcmpe vcvt vcvtr vcvta vcvtn vcvtp vcvtm vmaxnm vminnm vrinta vrintn "
        "vrintp vrintm vrintr vrintx vrintz vseleq vselge vselgt vselvs vcvtb vcvtt").split()

BASE: dict[str, str] = {}
for _m in _DP:
    BASE[_m] = "alu"
for _m in _SIMD:
    BASE[_m] = "simd"
for _m in _MAC:
    BASE[_m] = "mac"
for _m in _MAC_LONG:
    BASE[_m] = "mac_long"
for _m in _LOADS:
    BASE[_m] = "load"
for _m in _STORES:
    BASE[_m] = "store"
for _m in _LDM:
    BASE[_m] = "load_multiple"
for _m in _STM:
    BASE[_m] = "store_multiple"
for _m in _VFP:
    BASE[_m] = "vfp"
BASE.update({
    "mul": "mul", "mla": "mla", "mls": "mla", "smull": "mul_long", "umull": "mul_long",
    "smlal": "mla_long", "umlal": "mla_long", "umaal": "mla_long", "sdiv": "div", "udiv": "div",
    "ldrd": "load_double", "strd": "store_double", "ldaexd": "load_double", "strexd": "store_double",
    "b": "branch", "cbz": "branch", "cbnz": "branch", "bl": "call", "blx": "call", "bx": "branch_indirect",
    # Armv8.1-M low-overhead loops (decoded from the ELF: Capstone 4 does not know them)
    "le": "branch", "letp": "branch", "wls": "branch", "wlstp": "branch", "dls": "alu", "dlstp": "alu",
    "lctp": "alu",
    "tbb": "table_branch", "tbh": "table_branch",
    "dmb": "barrier", "dsb": "barrier", "isb": "barrier",
    "mrs": "system", "msr": "system", "cpsid": "system", "cpsie": "system", "svc": "system", "bkpt": "system",
    "udf": "system", "wfi": "system", "wfe": "system", "sev": "system",
    "nop": "hint", "yield": "hint", "pld": "hint", "pldw": "hint", "pli": "hint",
    "vmla": "vfp_mac", "vmls": "vfp_mac", "vnmla": "vfp_mac", "vnmls": "vfp_mac",
    "vfma": "vfp_mac", "vfms": "vfp_mac", "vfnma": "vfp_mac", "vfnms": "vfp_mac",
    "vdiv": "vfp_div", "vsqrt": "vfp_div",
    "vldr": "vfp_load", "vstr": "vfp_store",
    "vldm": "vfp_load_multiple", "vldmia": "vfp_load_multiple", "vldmdb": "vfp_load_multiple",
    "vpop": "vfp_load_multiple", "vstm": "vfp_store_multiple", "vstmia": "vfp_store_multiple",
    "vstmdb": "vfp_store_multiple", "vpush": "vfp_store_multiple",
    "vmov": "vfp_move", "vmrs": "vfp_move", "vmsr": "vfp_move",
})

_REG_ALIAS = {"sb": 9, "sl": 10, "fp": 11, "ip": 12, "sp": 13, "lr": 14, "pc": 15}
_REG = re.compile(r"\b(r1[0-5]|r[0-9]|sb|sl|fp|ip|sp|lr|pc)\b")
_LINE = re.compile(r"^0x([0-9a-f]+):\s+([0-9a-f]{4})(?: ([0-9a-f]{4}))?\s+(\S+)\s*(.*)$")
_IT = re.compile(r"^it[te]{0,3}$")
PC = 15


@dataclass(frozen=True)
class Insn:
    addr: int
    size: int            # bytes: 2 or 4
    mnemonic: str        # as printed, without the .w/.n width
    cls: str             # timing class, one of CLASSES
    writes: frozenset    # general registers written (0..15), base write-back included
    addr_regs: frozenset  # registers the address of a load/store is computed from
    nregs: int = 0       # registers moved by LDM/STM/PUSH/POP/VLDM/VSTM
    reg_offset: bool = False   # load/store with a register offset
    cond: bool = False   # carries a condition (a conditional branch, or inside an IT block)
    writes_pc: bool = False    # may change the program counter (a branch of some kind)
    it_count: int = 0    # for IT: how many instructions it makes conditional
    reads: frozenset = frozenset()  # general registers read (for the dual-issue rule)
    text: str = field(default="", compare=False)  # as QEMU printed it (for hot-spot listings)

    @property
    def end(self) -> int:
        return self.addr + self.size

    @property
    def single_load(self) -> bool:
        """A single-register load (LDR/LDRB/... and LDREX): the one the TRMs let pipeline."""
        return self.cls == "load" and not self.writes_pc


def _regs(text: str) -> list[int]:
    out = []
    for r in _REG.findall(text):
        out.append(_REG_ALIAS[r] if r in _REG_ALIAS else int(r[1:]))
    return out


def _reglist(text: str) -> list[int]:
    """Registers of a ``{r4, r5-r7, lr}`` list (Capstone prints them one by one; ranges too)."""
    inner = text[text.find("{") + 1:text.rfind("}")] if "{" in text else text
    regs: list[int] = []
    for part in inner.split(","):
        part = part.strip()
        if "-" in part and not part.startswith("-"):
            lo, hi = (_regs(p) for p in part.split("-", 1))
            if lo and hi:
                regs.extend(range(lo[0], hi[0] + 1))
                continue
        regs.extend(_regs(part))
    return regs


def split_mnemonic(m: str) -> tuple[str, bool, bool]:
    """(base mnemonic, conditional?, sets flags?) of a printed mnemonic such as ``addseq.w``."""
    m = m.lower()
    dot = m.find(".")
    if dot > 0:
        m = m[:dot]  # .w / .n width, .f32 / .s8 data type
    if m in BASE or _IT.match(m):
        return m, False, False
    if m[-2:] in CONDITIONS and m[:-2] in BASE:
        return m[:-2], True, False
    if m.endswith("s") and m[:-1] in BASE:
        return m[:-1], False, True
    if m[-2:] in CONDITIONS and m[-3:-2] == "s" and m[:-3] in BASE:
        return m[:-3], True, True
    return m, False, False


def classify(addr: int, size: int, mnemonic: str, operands: str) -> Insn:
    """One instruction, from its address, size and Capstone's mnemonic and operand text."""
    base, cond, _ = split_mnemonic(mnemonic)
    ops = operands.strip()
    if _IT.match(base):
        return Insn(addr, size, base, "it", frozenset(), frozenset(), it_count=len(base) - 1)
    cls = BASE.get(base)
    if cls is None:
        if base.startswith("v"):
            # Helium (MVE) or an FP instruction this table does not list: q registers mean vectors.
            is_q = re.search(r"\bq[0-7]\b", ops) is not None
            if base.startswith(("vldr", "vld2", "vld4")):
                cls = "vector_load" if is_q else "vfp_load"
            elif base.startswith(("vstr", "vst2", "vst4")):
                cls = "vector_store" if is_q else "vfp_store"
            else:
                cls = "vector" if is_q else "vfp"
        else:
            cls = "other"
    writes: set[int] = set()
    addr_regs: set[int] = set()
    nregs = 0
    reg_offset = False
    writes_pc = False
    regs = _regs(ops)
    if cls in ("load", "store", "load_double", "store_double", "vfp_load", "vfp_store",
               "vector_load", "vector_store"):
        lb, rb = ops.find("["), ops.find("]")
        inside = _regs(ops[lb:rb]) if 0 <= lb < rb else []
        addr_regs.update(inside)
        reg_offset = len(inside) > 1
        after = ops[rb + 1:] if rb >= 0 else ""
        if inside and ("!" in after or after.strip().startswith(",")):
            writes.add(inside[0])  # pre-indexed with write-back, or post-indexed
        if cls in ("load", "load_double"):
            dest = regs[:2] if cls == "load_double" else regs[:1]
            writes.update(dest)
            if cls == "load" and dest and dest[0] == PC:
                writes_pc = True
        if cls == "store" and base.startswith("strex") and regs:
            writes.add(regs[0])  # the status result
    elif cls in ("load_multiple", "store_multiple", "vfp_load_multiple", "vfp_store_multiple"):
        lst = _reglist(ops)
        if cls.startswith("vfp"):
            inner = ops[ops.find("{") + 1:ops.rfind("}")]
            nregs = len([p for p in inner.split(",") if p.strip()])
            m = re.match(r"\s*[sd](\d+)\s*-\s*[sd](\d+)", inner)
            if m:
                nregs = int(m.group(2)) - int(m.group(1)) + 1
            if re.search(r"\bd\d+", inner):
                nregs *= 2  # a double register moves two words
        else:
            nregs = len(lst)
        if base in ("push", "pop", "vpush", "vpop"):
            addr_regs.add(13)
            writes.add(13)
        else:
            head = ops.split("{", 1)[0]
            b = _regs(head)
            if b:
                addr_regs.add(b[0])
                if "!" in head:
                    writes.add(b[0])
        if cls == "load_multiple":
            writes.update(lst)
            writes_pc = PC in lst
    elif cls in ("branch", "call", "branch_indirect", "table_branch"):
        writes_pc = True
        if cls == "call":
            writes.add(14)
        if cls == "table_branch":
            addr_regs.update(_regs(ops))
    elif cls in ("alu", "simd", "mul", "mla", "mac", "div"):
        if base not in _NOFLAGS_DEST and regs:
            writes.add(regs[0])
            writes_pc = regs[0] == PC
    elif cls in ("mul_long", "mla_long", "mac_long"):
        writes.update(regs[:2])
    elif cls == "vfp_move" and regs and base == "vmov":
        # vmov r0, s0 / vmov r0, r1, d0: core registers written when they come first
        first = ops.split(",")[0].strip()
        if _REG.fullmatch(first):
            writes.add(regs[0])
            if len(regs) > 1 and ops.split(",")[1].strip() and _REG.fullmatch(ops.split(",")[1].strip()):
                writes.add(regs[1])
    if cls == "system" and base == "msr":
        writes.clear()
    if base in ("cbz", "cbnz"):
        cond = True  # conditional by nature
    return Insn(addr, size, base, cls, frozenset(writes), frozenset(addr_regs), nregs, reg_offset, cond, writes_pc,
                reads=frozenset(_reads(cls, base, ops, regs, addr_regs)))


def _reads(cls: str, base: str, ops: str, regs: list[int], addr_regs: set[int]) -> set[int]:
    """General registers an instruction reads (approximate: what the dual-issue rule needs)."""
    if cls in ("load", "load_double", "load_multiple", "vfp_load", "vfp_load_multiple", "vector_load"):
        return set(addr_regs)
    if cls in ("store", "store_double", "store_multiple", "vfp_store", "vfp_store_multiple", "vector_store"):
        return set(regs) | set(addr_regs) | (set(_reglist(ops)) if "{" in ops else set())
    if cls in ("alu", "simd", "mul", "mla", "mac", "div"):
        if base in _NOFLAGS_DEST or base in ("bfi", "movt"):
            return set(regs)  # compares read all; BFI and MOVT also read their destination
        return set(regs[1:])
    if cls in ("mla_long", "mac_long"):
        return set(regs)
    if cls == "mul_long":
        return set(regs[2:])
    return set(regs)


def parse_line(line: str) -> Insn | None:
    """An ``in_asm`` instruction line, or None when the line is not one."""
    m = _LINE.match(line)
    if not m:
        return None
    size = 4 if m.group(3) else 2
    ins = classify(int(m.group(1), 16), size, m.group(4), m.group(5))
    return replace(ins, text=f"{m.group(4)} {m.group(5).strip()}".strip())


def mark_it_blocks(insns: list[Insn]) -> list[Insn]:
    """Instructions an IT makes conditional, marked ``cond`` (Capstone prints their condition too;
    this covers instructions whose condition suffix could not be split off)."""
    out: list[Insn] = []
    left = 0
    for ins in insns:
        if left > 0 and not ins.cond:
            ins = replace(ins, cond=True)
        left = ins.it_count if ins.cls == "it" else max(left - 1, 0)
        out.append(ins)
    return out
