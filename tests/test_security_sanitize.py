"""Hostile names from a model never reach C unescaped (edgecomp.sanitize).

The helpers are checked the strongest way there is: the text goes into a real
C file, gcc compiles it with -Wall -Wextra -Werror -trigraphs, and the program
prints the strings back byte for byte.
"""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from edgecomp.sanitize import C_KEYWORDS, MAX_IDENT, c_comment, c_identifier, c_string

HOSTILE = [
    "*/", "/*", "*/ int pwned; /*", "a\"b", "back\\slash", "trail\\", "line1\nline2", "cr\rlf",
    "#include <stdio.h>", "\n#include <stdlib.h>\n", "??/", "x??/\ny", "??=define X 1", "??'??!??-",
    "caf\u00e9", "\u7f51\u7edc", "\U0001F600", "", " ", "_", "__", "1abc", "int", "return", "main",
    "_Bool", "NULL", "a b", "a-b", "a.b", "a/b", "a_b", "ec_invoke", "%s%n", "\x00nul", "\x7f\x1b[31m",
    "x" * 300, "\\\n", "'", "\t", "// comment", "?" "?/", "\ud800",
]

GCC_FLAGS = ["-std=c99", "-trigraphs", "-Wall", "-Wextra", "-Werror", "-pedantic"]
IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def test_identifiers_valid_unique_not_keywords():
    taken: set[str] = set()
    out = [c_identifier(n, taken) for n in HOSTILE + HOSTILE]  # every name twice: must still be unique
    assert len(set(out)) == len(out)
    for s in out:
        assert IDENT.match(s), s
        assert s not in C_KEYWORDS and len(s) <= MAX_IDENT
        assert not s.startswith("__") and not re.match(r"_[A-Z]", s) and not s.startswith("ec_")
    assert taken == set(out)
    # collisions after cleaning: "a b", "a-b", "a.b", "a/b", "a_b" all differ
    assert len({c_identifier(n, set()) for n in ["a b", "a-b"]}) == 1  # same stem alone ...
    t: set[str] = set()
    assert len({c_identifier(n, t) for n in ["a b", "a-b", "a.b", "a/b", "a_b"]}) == 5  # ... unique together


def test_deterministic():
    assert [c_identifier(n, set()) for n in HOSTILE] == [c_identifier(n, set()) for n in HOSTILE]
    assert [c_comment(n) + c_string(n) for n in HOSTILE] == [c_comment(n) + c_string(n) for n in HOSTILE]


def test_comment_and_string_shape():
    for n in HOSTILE:
        c = c_comment(n)
        assert c.startswith("/* ") and c.endswith(" */") and "\n" not in c and "\r" not in c
        body = c[3:-3]
        assert "*/" not in body and "/*" not in body and "??" not in body and not body.endswith("\\")
        assert all(0x20 <= ord(ch) < 0x7F for ch in c)
        s = c_string(n)
        assert s[0] == s[-1] == '"' and all(0x20 <= ord(ch) < 0x7F for ch in s)
        assert "??" not in s and "\n" not in s


def _c_program(names: list[str]) -> str:
    taken: set[str] = set()
    lines = ["#include <stdio.h>", "#include <string.h>"]
    idents = []
    for i, n in enumerate(names):
        ident = c_identifier(n, taken)
        idents.append(ident)
        lines.append(c_comment(n))
        lines.append(f"static const char {ident}[] = {c_string(n)}; {c_comment(n)}")
    lines.append("static const char *const all[] = {" + ", ".join(idents) + "};")
    lines.append("static const unsigned long lens[] = {" + ", ".join(
        f"sizeof({i}) - 1" for i in idents) + "};")
    lines.append("int main(void) {")
    lines.append("    unsigned i;")
    lines.append(f"    for (i = 0; i < {len(idents)}u; i++) {{ fwrite(all[i], 1, lens[i], stdout); "
                 "fputc(0xff, stdout); }")
    lines.append("    return 0;")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _compile_and_run(tmp_path, names):
    src = tmp_path / "names.c"
    src.write_text(_c_program(names), encoding="ascii")
    exe = tmp_path / "names"
    p = subprocess.run(["gcc", *GCC_FLAGS, "-o", str(exe), str(src)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    out = subprocess.run([str(exe)], capture_output=True, timeout=30).stdout
    return out, src


def _utf8(n: str) -> bytes:
    return n.encode("utf-8", errors="surrogatepass")


@pytest.mark.toolchain
def test_hostile_names_compile_with_werror_and_round_trip(tmp_path):
    out, src = _compile_and_run(tmp_path, HOSTILE)
    assert out == b"".join(_utf8(n) + b"\xff" for n in HOSTILE)
    text = src.read_text()
    # No hostile line escaped into the code: the only preprocessor lines are ours.
    assert [l for l in text.splitlines() if l.lstrip().startswith("#")] == [
        "#include <stdio.h>", "#include <string.h>"]
    code = re.sub(r"/\*.*?\*/|\"(\\.|[^\"\\])*\"", "", text)  # comments and strings removed
    decls = [l for l in code.splitlines() if l.startswith("static const char ") and "*const" not in l]
    assert len(decls) == len(HOSTILE)
    for l in decls:  # the hostile text is confined to its comment and its string literal
        assert re.fullmatch(r"static const char [A-Za-z_][A-Za-z0-9_]*\[\] = ; ", l), l
    assert len([l for l in code.splitlines() if l.strip()]) == 2 + len(HOSTILE) + 7  # includes, declarations, main


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="no arm-none-eabi-gcc")
@pytest.mark.toolchain
def test_hostile_names_cross_compile(tmp_path):
    src = tmp_path / "names.c"
    src.write_text(_c_program(HOSTILE), encoding="ascii")
    p = subprocess.run(["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", *GCC_FLAGS, "-c", "-o",
                        str(tmp_path / "names.o"), str(src)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


_text = st.text(st.characters(codec="utf-8") | st.sampled_from(list("*/\\\"?\n#'")), max_size=40)


@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(_text, min_size=1, max_size=30))
@pytest.mark.toolchain
def test_random_names_compile_and_round_trip(tmp_path, names):
    out, _ = _compile_and_run(tmp_path, names)
    assert out == b"".join(_utf8(n) + b"\xff" for n in names)
