"""What a user can do about an operator edgecomp refuses: the suggestion of an early refusal.

Both frontends refuse a model's unsupported operators all at once, before any calibration, in
the user's own names (the op types and node names of the file they gave).  :func:`advice` turns
the refused op types into one line each: the same operation in the *other* import path when that
path supports it (checked against the live registries ``ONNX_OPS`` / ``TFLITE_OPS``, never a fixed
list), a rewrite onto supported ops where one is exact, or that edgecomp supports it in neither
path.
"""
from __future__ import annotations

#: ONNX op type -> the TFLite builtins of the same operation
ONNX_TO_TFLITE = {
    "Add": ["ADD"], "Sub": ["SUB"], "Mul": ["MUL"], "Div": ["DIV"], "Max": ["MAXIMUM"], "Min": ["MINIMUM"],
    "Relu": ["RELU"], "Sigmoid": ["LOGISTIC"], "Tanh": ["TANH"], "HardSwish": ["HARD_SWISH"],
    "LeakyRelu": ["LEAKY_RELU"], "PRelu": ["PRELU"], "Softmax": ["SOFTMAX"], "Conv": ["CONV_2D", "DEPTHWISE_CONV_2D"],
    "ConvTranspose": ["TRANSPOSE_CONV"], "Gemm": ["FULLY_CONNECTED"], "MatMul": ["FULLY_CONNECTED", "BATCH_MATMUL"],
    "MaxPool": ["MAX_POOL_2D"], "AveragePool": ["AVERAGE_POOL_2D"], "ReduceMean": ["MEAN"], "ReduceMax": ["REDUCE_MAX"],
    "ReduceSum": ["SUM"], "ArgMax": ["ARG_MAX"], "ArgMin": ["ARG_MIN"], "Pad": ["PAD", "PADV2", "MIRROR_PAD"],
    "Resize": ["RESIZE_NEAREST_NEIGHBOR", "RESIZE_BILINEAR"], "Upsample": ["RESIZE_NEAREST_NEIGHBOR"],
    "Slice": ["STRIDED_SLICE", "SLICE"], "Split": ["SPLIT", "SPLIT_V"], "Concat": ["CONCATENATION"],
    "Transpose": ["TRANSPOSE"], "Reshape": ["RESHAPE"], "Squeeze": ["SQUEEZE"], "Unsqueeze": ["EXPAND_DIMS"],
    "Gather": ["GATHER"], "DepthToSpace": ["DEPTH_TO_SPACE"], "SpaceToDepth": ["SPACE_TO_DEPTH"],
    "LpNormalization": ["L2_NORMALIZATION"], "Exp": ["EXP"], "Log": ["LOG"], "Sqrt": ["SQRT"], "Abs": ["ABS"],
    "Neg": ["NEG"], "Elu": ["ELU"], "LSTM": ["UNIDIRECTIONAL_SEQUENCE_LSTM"], "Tile": ["TILE"], "Cast": ["CAST"],
}

#: exact rewrites onto ops the same import path takes
REWRITES = {
    "Upsample": "Resize (export with ONNX opset >= 11)",
    "GlobalMaxPool": "a MaxPool whose kernel is the whole map",
    "ReduceMax": "over H and W: a MaxPool whose kernel is the whole map",
    "Einsum": "MatMul, Transpose and Reshape where the equation is a matrix product",
    "MEAN": "AVERAGE_POOL_2D whose filter is the whole map (GlobalAveragePooling2D)",
    "SUM": "a MEAN times the number of elements (a MUL by a constant)",
    "REDUCE_MAX": "over H and W: MAX_POOL_2D whose filter is the whole map",
    "RELU6": "a fused activation of the op before it (FusedActivationFunction RELU6)",
    "DIV": "a MUL by the reciprocal (a constant divisor)",
    "CAST": "keep the model in one type from input to output",
}


def refusal(what: str, where: str, ops: list[str], fmt: str, supported: list[str]):
    """The UnsupportedError of a model whose ops ``ops`` (sorted) its frontend ``fmt`` lacks; it
    carries ``refused = (fmt, ops, tail)`` so that :func:`edgecomp.refusals.explain` can add
    what the other import path takes (a frontend never imports the other one)."""
    from ..errors import UnsupportedError
    tail = f". Supported ops are {', '.join(sorted(supported))}"
    e = UnsupportedError(what, where=where, fix=advice(ops, fmt) + tail)
    e.refused = (fmt, ops, tail)
    return e


def advice(ops: list[str], fmt: str, other_supported: set[str] | None = None) -> str:
    """One suggestion per refused op of a ``fmt`` ("onnx" or "tflite") model, joined with '; ':
    the other path's ops of the same operation among ``other_supported`` (names of the other
    path's live registry; None: not known here), exact rewrites, or that neither path has it."""
    lines, neither = [], []
    for op in ops:
        if fmt == "onnx":
            other = [t for t in ONNX_TO_TFLITE.get(op, []) if t in (other_supported or ())]
            where = f"supported when the model comes as int8 TFLite ({', '.join(other)})" if other else None
        else:
            other = [o for o, ts in ONNX_TO_TFLITE.items() if op in ts and o in (other_supported or ())]
            where = f"supported when the model comes as ONNX ({', '.join(other)})" if other else None
        rewrite = REWRITES.get(op)
        parts = [p for p in (where, f"rewrite as {rewrite}" if rewrite else None) if p]
        if parts:
            lines.append(f"{op}: {'; '.join(parts)}")
        else:
            neither.append(op)
    if neither and other_supported is None:
        lines.append(f"{', '.join(neither)}: not supported by edgecomp from {'ONNX' if fmt == 'onnx' else 'TFLite'}; "
                     f"replace {'it' if len(neither) == 1 else 'them'} in the model before export")
    elif neither:
        lines.append(f"{', '.join(neither)}: not supported by edgecomp from ONNX or TFLite; replace "
                     f"{'it' if len(neither) == 1 else 'them'} in the model before export")
    return "; ".join(lines)
