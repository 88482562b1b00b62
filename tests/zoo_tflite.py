"""A Keras-style int8 TFLite model (what the TFLite converter writes for a small MobileNetV3-like
Keras network), built in memory with tests/conftest.py's flatbuffer writer (no TensorFlow):
ZeroPadding2D -> PAD, a 3x3 stride-2 VALID conv, HARD_SWISH, a 3x3 depthwise, HARD_SWISH,
GlobalAveragePooling2D -> MEAN over H, W, RESHAPE, FULLY_CONNECTED to 10 classes.  Used by
tests/test_zoo.py (0 LSB against TFLM) and bench/coverage.py."""
from __future__ import annotations

import numpy as np

from conftest import build_tflite


def keras_style_tflite(size: int = 32, c: int = 16, classes: int = 10, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    t: list[dict] = []

    def add(**d):
        t.append(d)
        return len(t) - 1

    def act(name, shape, scale, zp):
        return add(name=name, shape=list(shape), dtype="int8", scale=[scale], zero_point=[zp])

    def weights(name, shape, axis_len, s_in):
        s_w = rng.uniform(0.004, 0.01, axis_len).astype(np.float32)
        w = add(name=name, shape=list(shape), dtype="int8", data=rng.integers(-127, 128, shape).astype(np.int8),
                scale=list(s_w), zero_point=[0] * axis_len, axis=0 if shape[0] == axis_len else 3)
        b = add(name=name + "_b", shape=[axis_len], dtype="int32",
                data=rng.integers(-3000, 3000, axis_len).astype(np.int32), scale=list(s_in * s_w),
                zero_point=[0] * axis_len)
        return w, b

    h = size // 2
    x = act("input", (1, size, size, 3), 1 / 64, 0)
    pads = add(name="pads", shape=[4, 2], dtype="int32", data=np.array([[0, 0], [0, 1], [0, 1], [0, 0]], np.int32))
    xp = act("padded", (1, size + 1, size + 1, 3), 1 / 64, 0)
    w1, b1 = weights("stem", (c, 3, 3, 3), c, 1 / 64)
    y1 = act("stem", (1, h, h, c), 0.08, 10)
    hs1 = act("stem_hs", (1, h, h, c), 0.05, -40)
    w2, b2 = weights("dw", (1, 3, 3, c), c, 0.05)
    y2 = act("dw", (1, h, h, c), 0.1, 5)
    hs2 = act("dw_hs", (1, h, h, c), 0.06, -50)
    axes = add(name="axes", shape=[2], dtype="int32", data=np.array([1, 2], np.int32))
    m = act("pool", (1, 1, 1, c), 0.02, -60)
    shp = add(name="shape", shape=[2], dtype="int32", data=np.array([1, c], np.int32))
    flat = act("flat", (1, c), 0.02, -60)
    w3, b3 = weights("fc", (classes, c), classes, 0.02)
    logits = act("logits", (1, classes), 0.05, 0)
    conv = {"StrideH": 2, "StrideW": 2, "DilationHFactor": 1, "DilationWFactor": 1, "FusedActivationFunction": 0}
    ops = [dict(op="PAD", inputs=[x, pads], outputs=[xp]),
           dict(op="CONV_2D", inputs=[xp, w1, b1], outputs=[y1], options=("Conv2DOptions", {**conv, "Padding": 1})),
           dict(op="HARD_SWISH", inputs=[y1], outputs=[hs1]),
           dict(op="DEPTHWISE_CONV_2D", inputs=[hs1, w2, b2], outputs=[y2], options=(
               "DepthwiseConv2DOptions", {**conv, "StrideH": 1, "StrideW": 1, "Padding": 0, "DepthMultiplier": 1})),
           dict(op="HARD_SWISH", inputs=[y2], outputs=[hs2]),
           dict(op="MEAN", inputs=[hs2, axes], outputs=[m], options=("ReducerOptions", {"KeepDims": True})),
           dict(op="RESHAPE", inputs=[m, shp], outputs=[flat]),
           dict(op="FULLY_CONNECTED", inputs=[flat, w3, b3], outputs=[logits],
                options=("FullyConnectedOptions", {"FusedActivationFunction": 0}))]
    return build_tflite(t, ops, [x], [logits])
