"""ONNX frontend: float or QDQ-quantized ONNX graphs into the IR.

Two steps:

1. :func:`lower` translates ONNX node by node into float IR ops in NHWC layout (weights
   transposed to TFLite layouts, batch-norm folded), each op by the function an ``ops_*.py``
   module registers for it (:data:`ONNX_OPS`).  ``QuantizeLinear`` / ``DequantizeLinear`` become
   IR ``quantize`` / ``dequantize`` nodes; a ``DequantizeLinear`` of a constant becomes a float
   constant that remembers its integer form.
2. :data:`IMPORT_PASSES` (``edgecomp/passes``): activation fusion, QDQ folding into integer ops,
   cancelling back-to-back quantize/dequantize pairs, int8 graph inputs and outputs (their
   quantization is in the manifest).

Layout: ``load.py`` (reading a file safely), ``context.py`` (the graph being built and the
helpers every op uses), ``lower.py`` (the driver, the op registry, the import passes), and the
op families ``ops_qdq``, ``ops_conv``, ``ops_pool``, ``ops_elementwise``, ``ops_shape``.
"""
from .context import NCHW_TO_NHWC_AXIS
from .load import MAX_ELEMENTS, check_for_runtime, load_onnx
from .lower import IMPORT_PASSES, from_onnx, lower
from .registry import ONNX_OPS, onnx_op

__all__ = ["IMPORT_PASSES", "MAX_ELEMENTS", "check_for_runtime", "NCHW_TO_NHWC_AXIS", "ONNX_OPS", "from_onnx", "load_onnx", "lower",
           "onnx_op"]
