r"""C literals and names for the generated code: numbers, arrays, reserved words, comments.

Small pure helpers, each checked by a doctest::

    >>> c_float(0.5), c_float(float("inf")), c_int(-2**31)
    ('0.5f', 'INFINITY', 'INT32_MIN')
    >>> array_body(np.arange(5), str, 2)
    '    0, 1,\n    2, 3,\n    4,'
    >>> shape_text((1, 8, 8, 3))
    '[1,8,8,3]'
"""
from __future__ import annotations

import math

import numpy as np

from ... import ir
from ...errors import ModelError

def c_float(v: float) -> str:
    v = float(np.float32(v))
    if math.isnan(v):
        raise ModelError("a NaN constant", fix="Check the model's weights and quantization")
    if math.isinf(v):
        return "INFINITY" if v > 0 else "-INFINITY"
    s = f"{v:.9g}"
    if "e" not in s and "." not in s:
        s += ".0"
    return s + "f"


def c_int(v: int) -> str:
    v = int(v)
    if v == -(1 << 31):
        return "INT32_MIN"
    return str(v)


def array_body(values: np.ndarray, fmt, per_line: int) -> str:
    flat = [fmt(x) for x in values.reshape(-1).tolist()]
    lines = [", ".join(flat[i:i + per_line]) for i in range(0, len(flat), per_line)]
    return "\n".join("    " + ln + "," for ln in lines)


_MATH = """acos asin atan atan2 cos sin tan cosh sinh tanh exp log log10 pow sqrt ceil fabs floor fmod frexp
ldexp modf acosh asinh atanh cbrt copysign erf erfc exp2 expm1 fdim fma fmax fmin hypot ilogb lgamma llrint
llround log1p log2 logb lrint lround nan nearbyint nextafter nexttoward remainder remquo rint round scalbln
scalbn tgamma trunc""".split()
#: Names the generated C uses or that <math.h>, <stdint.h>, <string.h>, <stddef.h> may define as
#: functions or macros: a model name equal to one of them gets a suffix.
RESERVED = frozenset(_MATH + [m + "f" for m in _MATH] + [m + "l" for m in _MATH] + """
INFINITY NAN HUGE_VAL HUGE_VALF HUGE_VALL FP_INFINITE FP_NAN FP_NORMAL FP_SUBNORMAL FP_ZERO FP_FAST_FMA
FP_ILOGB0 FP_ILOGBNAN MATH_ERRNO MATH_ERREXCEPT math_errhandling fpclassify isfinite isinf isnan isnormal
signbit isgreater isgreaterequal isless islessequal islessgreater isunordered float_t double_t
M_E M_LOG2E M_LOG10E M_LN2 M_LN10 M_PI M_PI_2 M_PI_4 M_1_PI M_2_PI M_2_SQRTPI M_SQRT2 M_SQRT1_2
INT8_MIN INT8_MAX INT16_MIN INT16_MAX INT32_MIN INT32_MAX INT64_MIN INT64_MAX UINT8_MAX UINT16_MAX UINT32_MAX
UINT64_MAX INTPTR_MIN INTPTR_MAX UINTPTR_MAX SIZE_MAX PTRDIFF_MIN PTRDIFF_MAX INTMAX_MIN INTMAX_MAX UINTMAX_MAX
INT8_C INT16_C INT32_C INT64_C UINT8_C UINT16_C UINT32_C UINT64_C INTMAX_C UINTMAX_C intmax_t uintmax_t
wchar_t wint_t max_align_t memcmp memchr strcpy strncpy strcat strncat strcmp strncmp strchr strrchr strstr
strtok strerror strspn strcspn strpbrk strcoll strxfrm
arena LAYER_START LAYER_DONE layer_start layer_end x q y in out status
EC_MODEL_H EC_KERNELS_H EC_PLATFORM_H EC_PROBE EC_DEBUG EC_HOST
""".split())

CTYPE = {"int8": "int8_t", "int16": "int16_t", "int32": "int32_t", "float32": "float"}


def fmt_q(t: ir.Tensor) -> str:
    if t.quant is None:
        return t.dtype
    q = t.quant
    if q.scale.size > 1:
        return f"{t.dtype} per-channel ({q.scale.size} scales)"
    return f"{t.dtype} scale {float(q.scale[0]):.6g} zp {int(q.zero_point[0])}"


def shape_text(s) -> str:
    return "[" + ",".join(str(d) for d in s) + "]"
