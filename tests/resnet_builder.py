"""An int8 TFLite ResNet of the MLPerf Tiny ResNet-8 family with any channel widths, built in memory
(tests/conftest.py's flatbuffer writer; no Keras): the networks the memory planner was not tuned on.

Layout as pretrainedResnet_quant.tflite: a 3x3 stem, then per stage a 3x3 conv (stride 2 from the
second stage on, ReLU), a 3x3 conv, and -- from the second stage on -- a 1x1 stride-2 shortcut
conv; the ADD of the block (ReLU) after the last conv of the block; average pooling over the last
feature map, FULLY_CONNECTED to 10 classes and SOFTMAX.  Weights are random int8 with per-channel
scales, activations per-tensor int8, scales chosen so that outputs spread over the int8 range.
"""
from __future__ import annotations

import math

import numpy as np

from conftest import build_tflite

RELU = 1


def resnet_tflite(widths=(32, 64, 128), size: int = 32, classes: int = 10, blocks: int = 1, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    tensors: list[dict] = []
    ops: list[dict] = []

    def act(name, shape, scale, zp):
        tensors.append(dict(name=name, shape=list(shape), dtype="int8", scale=[scale], zero_point=[zp]))
        return len(tensors) - 1

    def conv(x, c_in, c_out, k, stride, hw_in, relu, name):
        s_in = tensors[x]["scale"][0]
        w = rng.integers(-127, 128, size=(c_out, k, k, c_in)).astype(np.int8)
        s_w = rng.uniform(0.004, 0.01, c_out).astype(np.float32)
        tensors.append(dict(name=name + "_w", shape=[c_out, k, k, c_in], dtype="int8", data=w, scale=list(s_w),
                            zero_point=[0] * c_out, axis=0))
        wi = len(tensors) - 1
        b = rng.integers(-2000, 2000, size=c_out).astype(np.int32)
        tensors.append(dict(name=name + "_b", shape=[c_out], dtype="int32", data=b, scale=list(s_in * s_w),
                            zero_point=[0] * c_out))
        bi = len(tensors) - 1
        hw = -(-hw_in // stride)
        s_out = float(s_in * s_w.mean() * math.sqrt(k * k * c_in) * 60 * 60 / 40)
        y = act(name, (1, hw, hw, c_out), s_out, -128 if relu else 0)
        ops.append(dict(op="CONV_2D", inputs=[x, wi, bi], outputs=[y], options=(
            "Conv2DOptions", {"Padding": 0, "StrideW": stride, "StrideH": stride, "DilationWFactor": 1,
                              "DilationHFactor": 1, "FusedActivationFunction": RELU if relu else 0})))
        return y, hw

    x = act("input", (1, size, size, 3), 1 / 128, 0)
    h, c = size, widths[0]
    x, h = conv(x, 3, c, 3, 1, h, True, "stem")
    for stage, width in enumerate(widths):
        for block in range(blocks):
            down = stage > 0 and block == 0
            y, h2 = conv(x, c, width, 3, 2 if down else 1, h, True, f"s{stage}b{block}a")
            y, _ = conv(y, width, width, 3, 1, h2, False, f"s{stage}b{block}b")
            skip = conv(x, c, width, 1, 2, h, False, f"s{stage}b{block}short")[0] if down else x
            s = max(tensors[y]["scale"][0], tensors[skip]["scale"][0]) * 1.2
            out = act(f"s{stage}b{block}add", (1, h2, h2, width), s, -128)
            ops.append(dict(op="ADD", inputs=[y, skip], outputs=[out],
                            options=("AddOptions", {"FusedActivationFunction": RELU})))
            x, h, c = out, h2, width
    pooled = act("pool", (1, 1, 1, c), tensors[x]["scale"][0], tensors[x]["zero_point"][0])
    ops.append(dict(op="AVERAGE_POOL_2D", inputs=[x], outputs=[pooled], options=(
        "Pool2DOptions", {"Padding": 1, "StrideW": h, "StrideH": h, "FilterWidth": h, "FilterHeight": h,
                          "FusedActivationFunction": 0})))
    tensors.append(dict(name="shape", shape=[2], dtype="int32", data=np.array([1, c], np.int32)))
    si = len(tensors) - 1
    flat = act("flat", (1, c), tensors[pooled]["scale"][0], tensors[pooled]["zero_point"][0])
    ops.append(dict(op="RESHAPE", inputs=[pooled, si], outputs=[flat]))
    s_in = tensors[flat]["scale"][0]
    w = rng.integers(-127, 128, size=(classes, c)).astype(np.int8)
    tensors.append(dict(name="fc_w", shape=[classes, c], dtype="int8", data=w, scale=[0.01], zero_point=[0]))
    tensors.append(dict(name="fc_b", shape=[classes], dtype="int32", data=rng.integers(-500, 500, classes).astype(
        np.int32), scale=[s_in * 0.01], zero_point=[0]))
    wi, bi = len(tensors) - 2, len(tensors) - 1
    logits = act("logits", (1, classes), float(s_in * 0.01 * math.sqrt(c) * 60 * 60 / 40), 0)
    ops.append(dict(op="FULLY_CONNECTED", inputs=[flat, wi, bi], outputs=[logits],
                    options=("FullyConnectedOptions", {"FusedActivationFunction": 0})))
    prob = act("prob", (1, classes), 1 / 256, -128)
    ops.append(dict(op="SOFTMAX", inputs=[logits], outputs=[prob], options=("SoftmaxOptions", {"Beta": 1.0})))
    return build_tflite(tensors, ops, [0], [prob])
