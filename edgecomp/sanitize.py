"""Turn names and text from a model file into safe C.

Everything a model file carries (graph, node and tensor names, doc strings) is
untrusted: it may hold ``*/``, quotes, backslashes, newlines, ``#include``
lines, ``??/`` trigraphs, control characters or any unicode.  The code
generator never pastes such text into C directly; it goes through one of:

* :func:`c_identifier` - a fresh, unique C identifier derived from the name
  (``[A-Za-z_][A-Za-z0-9_]*``, no keyword, no reserved name, at most
  :data:`MAX_IDENT` characters), recorded in ``taken`` so two names that look
  alike after cleaning still get different identifiers;
* :func:`c_comment` - a complete one-line ``/* ... */`` comment that shows the
  text but cannot end early, start a nested comment, splice lines or hold a
  trigraph;
* :func:`c_string` - a complete C string literal (with its quotes) whose bytes
  are the UTF-8 of the text, so ``ec_layer_name[i]`` prints the original name.

All three are pure and deterministic: the same input gives the same C, which
keeps bundles reproducible.
"""
from __future__ import annotations

import re

#: C89/C99/C11/C23 keywords plus the names a translation unit must not redefine.
C_KEYWORDS = frozenset("""
auto break case char const continue default do double else enum extern float for goto if inline int
long register restrict return short signed sizeof static struct switch typedef union unsigned void
volatile while _Alignas _Alignof _Atomic _Bool _Complex _Generic _Imaginary _Noreturn _Static_assert
_Thread_local alignas alignof bool constexpr false nullptr static_assert thread_local true typeof
typeof_unqual _BitInt _Decimal32 _Decimal64 _Decimal128
asm fortran
main errno assert offsetof NULL EOF stdin stdout stderr
int8_t int16_t int32_t int64_t uint8_t uint16_t uint32_t uint64_t size_t ptrdiff_t intptr_t uintptr_t
memcpy memset memmove strlen printf malloc free abort exit
""".split())

#: Longest identifier produced: C99 guarantees 63 significant characters for internal names.
MAX_IDENT = 63

_BAD = re.compile(r"[^A-Za-z0-9_]+")


def c_identifier(name: str, taken: set[str] | None = None, *, prefix: str = "n_") -> str:
    """A valid, unique C identifier for ``name``; it is added to ``taken``.

    Characters outside ``[A-Za-z0-9_]`` become ``_`` (runs collapsed).  A name
    that would be empty, start with a digit, be a C keyword or a reserved
    identifier (``__x``, ``_X``, or the ``ec_`` runtime prefix) gets ``prefix``.
    When the result is already in ``taken`` a suffix ``_2``, ``_3``, ... is added.
    """
    if taken is None:
        taken = set()
    s = _BAD.sub("_", str(name)).strip("_") if name else ""
    if (not s or s[0].isdigit() or s in C_KEYWORDS or s.lower() in C_KEYWORDS
            or s.startswith("ec_") or s.startswith("EC_") or s.startswith("_")):
        s = prefix + s
    s = s[:MAX_IDENT]
    cand, k = s, 1
    while cand in taken:
        k += 1
        tail = f"_{k}"
        cand = s[:MAX_IDENT - len(tail)] + tail
    taken.add(cand)
    return cand


def _printable(text: str) -> str:
    """Printable ASCII; anything else as ``<U+XXXX>`` (so unicode stays visible)."""
    out = []
    for ch in str(text):
        o = ord(ch)
        if 0x20 <= o < 0x7F:
            out.append(ch)
        elif ch in "\t\r\n":
            out.append(" ")
        else:
            out.append(f"<U+{o:04X}>")
    return "".join(out)


def c_comment_text(text: str, limit: int = 200) -> str:
    """Text that is safe *inside* a ``/* ... */`` comment (one line, ASCII)."""
    s = _printable(text)
    if len(s) > limit:
        s = s[:limit] + "..."
    # Break every sequence that means something inside a comment: the end
    # "*/", a nested start "/*" (gcc -Wcomment), a trigraph "??x" (gcc
    # -Wtrigraphs; "??/" is a backslash), and a trailing backslash.
    while "*/" in s or "/*" in s or "??" in s:
        s = s.replace("*/", "* /").replace("/*", "/ *").replace("??", "? ?")
    s = s.replace("\\", "\\ ") if s.endswith("\\") else s
    return s


def c_comment(text: str, limit: int = 200) -> str:
    """A complete one-line C comment ``/* text */`` showing ``text`` safely."""
    return f"/* {c_comment_text(text, limit)} */"


def c_string(text: str) -> str:
    """A complete C string literal (quotes included) holding the UTF-8 bytes of ``text``.

    Printable ASCII stays readable; ``"``, ``\\`` and ``?`` (trigraphs) are
    escaped; every other byte becomes a three-digit octal escape (an octal
    escape never swallows a following digit the way ``\\x`` does).
    """
    out = ['"']
    for b in str(text).encode("utf-8", errors="surrogatepass"):
        ch = chr(b)
        if ch in '"\\?':
            out.append("\\" + ch)
        elif 0x20 <= b < 0x7F:
            out.append(ch)
        else:
            out.append(f"\\{b:03o}")
    out.append('"')
    return "".join(out)


# --------------------------------------------------------------------------- terminals and text files
def _is_hidden_control(o: int) -> bool:
    """C0/C1 controls, DEL, and the invisible format characters that reorder or hide text
    (bidi embeddings/overrides/isolates, zero-width joiners, BOM): "Trojan source" tricks."""
    return (o < 0x20 or 0x7F <= o < 0xA0 or 0x200B <= o <= 0x200F or 0x202A <= o <= 0x202E
            or 0x2060 <= o <= 0x2069 or o == 0xFEFF)


def terminal_text(text, *, keep_newlines: bool = False, limit: int | None = None) -> str:
    """``text`` safe to print on a terminal: control characters shown as escapes.

    ESC (colours, screen clears, OSC-52 clipboard writes), BEL, backspace, carriage
    return, C1 controls and bidi/zero-width format characters become ``\\x1b``,
    ``\\u202e``, ...; a backslash stays a backslash.  Other unicode (``café``) is kept.
    ``keep_newlines`` keeps ``\\n`` (multi-line messages of edgecomp's own).
    """
    out = []
    for ch in str(text):
        o = ord(ch)
        if keep_newlines and ch == "\n":
            out.append(ch)
        elif _is_hidden_control(o):
            out.append(f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}")
        else:
            out.append(ch)
    s = "".join(out)
    if limit is not None and len(s) > limit:
        s = s[:limit] + "..."
    return s


def markdown_code(text, limit: int = 200) -> str:
    """``text`` as one Markdown code span that renders literally and cannot end early.

    Control characters are escaped (:func:`terminal_text`, so no new line, no heading,
    no list item can start); the fence is one backtick longer than the longest run of
    backticks inside, with a space on each side (CommonMark 6.1), so ``<script>``,
    ``[link](...)`` or ``**`` inside stay literal text.
    """
    s = terminal_text(text, limit=limit)
    longest = max((len(m) for m in re.findall(r"`+", s)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if (s.startswith("`") or s.endswith("`") or longest or not s.strip()) else ""
    return f"{fence}{pad}{s or ' '}{pad}{fence}"
