"""ONNX export of lenet_fast models and ops: a translation of each forward op into standard ONNX
operators (Conv, Tanh / Relu / LeakyRelu / Sigmoid, AveragePool / MaxPool, Gemm, ...), written
with onnxscript for torch.onnx's exporter.

    import lenet_fast.onnx
    program = lenet_fast.onnx.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    program.save("lenet5.onnx")

which is torch.onnx.export(model, (x,), dynamo=True, custom_translation_table=lenet_fast.onnx.translations())
with the table merged into any the caller passes. torch.onnx builds its operator registry from its
own library plus that table, so a plain torch.onnx.export call without it stops at
"No ONNX function found for lenet_fast...".

ONNX graphs are for inference: while torch.onnx exports, LeNet5 calls its inference op whatever
the grad mode, and the fused convolutions do not keep their full-resolution activations. Needs the
onnx and onnxscript packages (and onnxruntime to run the result); `import lenet_fast` does not.
"""
from __future__ import annotations

import torch

from .variants import DEFAULT_ACTIVATION, DEFAULT_NEGATIVE_SLOPE, DEFAULT_POOLING

try:
    import onnxscript
    from onnxscript import opset18 as op
except ImportError as e:  # pragma: no cover - exercised only where onnxscript is absent
    raise ImportError(
        "lenet_fast.onnx needs onnxscript (and onnx) for torch.onnx's exporter: pip install onnx onnxscript "
        f"onnxruntime ({e})"
    ) from e

_KERNEL = [5, 5]
_POOL = {"kernel_shape": [2, 2], "strides": [2, 2]}


def conv5x5(x, weight, bias, padding: int):
    return op.Conv(x, weight, bias, kernel_shape=_KERNEL, pads=[padding] * 4, strides=[1, 1])


def act(x, activation: str = DEFAULT_ACTIVATION, negative_slope: float = DEFAULT_NEGATIVE_SLOPE):
    if activation == "tanh":
        return op.Tanh(x)
    if activation == "relu":
        return op.Relu(x)
    if activation == "leaky_relu":
        return op.LeakyRelu(x, alpha=negative_slope)
    if activation == "sigmoid":
        return op.Sigmoid(x)
    raise ValueError(f"lenet_fast.onnx: no ONNX form for activation {activation!r}")


def _pool(x, pooling: str):
    if pooling == "avg":
        return op.AveragePool(x, **_POOL)
    if pooling == "max":
        y, _indices = op.MaxPool(x, **_POOL)  # (the optional indices output goes unused, as in torch's own max_pool2d)
        return y
    raise ValueError(f"lenet_fast.onnx: no ONNX form for pooling {pooling!r}")


def linear(x, weight, bias):
    return op.Gemm(x, weight, bias, transB=1)


def _normalize(images, mean: float, std: float):
    # ToTensor() + Normalize() in their order, so the float32 results are the same bits:
    # (x / 255 - mean) / std
    x = op.Div(op.Cast(images, to=onnxscript.FLOAT.dtype), op.Constant(value_float=255.0))
    return op.Div(op.Sub(x, op.Constant(value_float=mean)), op.Constant(value_float=std))


def conv5x5_act_pool(x, weight, bias, padding: int, save_act: bool, activation: str = DEFAULT_ACTIVATION,
                     pooling: str = DEFAULT_POOLING, negative_slope: float = DEFAULT_NEGATIVE_SLOPE):
    a = act(conv5x5(x, weight, bias, padding), activation, negative_slope)
    # The second output is the saved activation autograd would use; an inference graph drops it.
    return _pool(a, pooling), a if save_act else op.Constant(value_floats=[])


def avg_pool2x2(x):
    return _pool(x, "avg")


def linear_act(x, weight, bias, activation: str = DEFAULT_ACTIVATION,
                negative_slope: float = DEFAULT_NEGATIVE_SLOPE):
    return act(linear(x, weight, bias), activation, negative_slope)


def gather_normalize(images, index, mean: float, std: float):
    return _normalize(op.Gather(images, index, axis=0), mean, std)


def lenet5_forward(x, conv1_weight, conv1_bias, conv2_weight, conv2_bias, fc1_weight, fc1_bias, fc2_weight,
                   fc2_bias, fc3_weight, fc3_bias, conv1_padding: int, mean: float = 0.0, std: float = 1.0,
                   activation: str = DEFAULT_ACTIVATION, pooling: str = DEFAULT_POOLING,
                   negative_slope: float = DEFAULT_NEGATIVE_SLOPE):
    if x.dtype == onnxscript.UINT8.dtype:  # raw images: normalised first, as the op does
        x = _normalize(x, mean, std)
    h = _pool(act(conv5x5(x, conv1_weight, conv1_bias, conv1_padding), activation, negative_slope), pooling)
    h = _pool(act(conv5x5(h, conv2_weight, conv2_bias, 0), activation, negative_slope), pooling)
    h = op.Flatten(h, axis=1)
    h = act(linear(h, fc1_weight, fc1_bias), activation, negative_slope)
    h = act(linear(h, fc2_weight, fc2_bias), activation, negative_slope)
    return linear(h, fc3_weight, fc3_bias)


_TRANSLATIONS = {
    "conv5x5": conv5x5,
    "conv5x5_act_pool": conv5x5_act_pool,
    "avg_pool2x2": avg_pool2x2,
    "act": act,
    "linear": linear,
    "linear_act": linear_act,
    "gather_normalize": gather_normalize,
    "lenet5_forward": lenet5_forward,
}


def translations() -> dict:
    """torch.onnx's custom_translation_table for every lenet_fast op an inference graph can hold:
    {torch.ops.lenet_fast.<op>.default: its ONNX translation}."""
    return {getattr(torch.ops.lenet_fast, name).default: f for name, f in _TRANSLATIONS.items()}


def export(model, args, f=None, **kwargs):
    """torch.onnx.export(model, args, f, dynamo=True, ...) with lenet_fast's translations; any
    custom_translation_table of the caller's is merged in (its entries win). Returns the
    ONNXProgram (and writes f, if given)."""
    from .model import TRITON_NOT_ONNX, LeNet5

    if not kwargs.setdefault("dynamo", True):
        raise ValueError("lenet_fast.onnx.export: the TorchScript-based exporter (dynamo=False) has no "
                         "translations of lenet_fast's ops; leave dynamo at True")
    if isinstance(model, torch.nn.Module) and any(
            isinstance(m, LeNet5) and m.fc_backend == "triton" for m in model.modules()):
        raise ValueError(TRITON_NOT_ONNX)
    table = {**translations(), **(kwargs.pop("custom_translation_table", None) or {})}
    return torch.onnx.export(model, args, f, custom_translation_table=table, **kwargs)
