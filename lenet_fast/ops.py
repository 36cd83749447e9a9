"""The lenet_fast custom ops: fake (meta) kernels and autograd, registered through torch.library,
plus the Python entry points the model calls.

The schemas live in csrc/ops/schemas.cpp; the CPU and CUDA kernels register themselves when the extension
library loads. Every forward op has autograd here; backward ops are ops too (with fake kernels),
so `torch.compile(fullgraph=True)` traces the whole training step without graph breaks.
"""
from __future__ import annotations

import torch
from torch import Tensor

from . import _C  # noqa: F401  (loading the library registers the ops)
from .variants import ACTIVATIONS, DEFAULT_ACTIVATION, DEFAULT_NEGATIVE_SLOPE, DEFAULT_POOLING, POOLINGS  # noqa: F401

_lib = torch.ops.lenet_fast  # the registered ops; this module holds their Python side
KERNEL = 5


def _conv_extent(size, padding):
    return size + 2 * padding - (KERNEL - 1)


# ---------------------------------------------------------------------------------------------
# Fake kernels: output metadata only (every real kernel returns contiguous tensors).


@torch.library.register_fake("lenet_fast::conv5x5")
def _(x, weight, bias, padding):
    n, _, h, w = x.shape
    return x.new_empty((n, weight.shape[0], _conv_extent(h, padding), _conv_extent(w, padding)))


@torch.library.register_fake("lenet_fast::conv5x5_act_pool")
def _(x, weight, bias, padding, save_act,
      activation=DEFAULT_ACTIVATION, pooling=DEFAULT_POOLING, negative_slope=DEFAULT_NEGATIVE_SLOPE):
    n, _, h, w = x.shape
    ho, wo = _conv_extent(h, padding), _conv_extent(w, padding)
    y = x.new_empty((n, weight.shape[0], ho // 2, wo // 2))
    act = x.new_empty((n, weight.shape[0], ho, wo)) if save_act else x.new_empty((0,))
    return y, act


@torch.library.register_fake("lenet_fast::conv5x5_backward_input")
def _(grad, weight, padding):
    n, _, ho, wo = grad.shape
    pad = KERNEL - 1 - padding
    return grad.new_empty((n, weight.shape[1], _conv_extent(ho, pad), _conv_extent(wo, pad)))


@torch.library.register_fake("lenet_fast::conv5x5_backward_weight")
def _(grad, x, padding):
    oc, ic = grad.shape[1], x.shape[1]
    return x.new_empty((oc, ic, KERNEL, KERNEL)), x.new_empty((oc,))


@torch.library.register_fake("lenet_fast::conv5x5_act_pool_backward_weight")
def _(grad, act, x, padding,
      activation=DEFAULT_ACTIVATION, pooling=DEFAULT_POOLING, negative_slope=DEFAULT_NEGATIVE_SLOPE):
    oc, ic = act.shape[1], x.shape[1]
    return x.new_empty((oc, ic, KERNEL, KERNEL)), x.new_empty((oc,))


@torch.library.register_fake("lenet_fast::act_pool_backward")
def _(grad, act,
      activation=DEFAULT_ACTIVATION, pooling=DEFAULT_POOLING, negative_slope=DEFAULT_NEGATIVE_SLOPE):
    return torch.empty_like(act, memory_format=torch.contiguous_format)


@torch.library.register_fake("lenet_fast::avg_pool2x2")
def _(x):
    n, c, h, w = x.shape
    return x.new_empty((n, c, h // 2, w // 2))


@torch.library.register_fake("lenet_fast::avg_pool2x2_backward")
def _(grad, height, width):
    return grad.new_empty((grad.shape[0], grad.shape[1], height, width))


@torch.library.register_fake("lenet_fast::act")
def _(x, activation=DEFAULT_ACTIVATION, negative_slope=DEFAULT_NEGATIVE_SLOPE):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


@torch.library.register_fake("lenet_fast::act_backward")
def _(grad, y, activation=DEFAULT_ACTIVATION, negative_slope=DEFAULT_NEGATIVE_SLOPE):
    return torch.empty_like(y, memory_format=torch.contiguous_format)


def _linear_fake(x, weight, bias, activation=DEFAULT_ACTIVATION, negative_slope=DEFAULT_NEGATIVE_SLOPE):
    return x.new_empty((*x.shape[:-1], weight.shape[0]))


torch.library.register_fake("lenet_fast::linear")(_linear_fake)
torch.library.register_fake("lenet_fast::linear_act")(_linear_fake)


@torch.library.register_fake("lenet_fast::linear_backward_input")
def _(grad, weight):
    return grad.new_empty((*grad.shape[:-1], weight.shape[1]))


@torch.library.register_fake("lenet_fast::linear_backward_weight")
def _(grad, x):
    return x.new_empty((grad.shape[-1], x.shape[-1])), x.new_empty((grad.shape[-1],))


@torch.library.register_fake("lenet_fast::lenet5_forward")
def _(x, *params_padding_mean_std_variant):
    fc3_weight = params_padding_mean_std_variant[8]
    return x.new_empty((x.shape[0], fc3_weight.shape[0]), dtype=torch.float32)


@torch.library.register_fake("lenet_fast::lenet5_forward_train")
def _(x, w1, b1, w2, b2, f1w, f1b, f2w, f2b, f3w, f3b, padding, activation=DEFAULT_ACTIVATION, pooling=DEFAULT_POOLING,
      negative_slope=DEFAULT_NEGATIVE_SLOPE):
    n, h, w = x.shape[0], _conv_extent(x.shape[2], padding), _conv_extent(x.shape[3], padding)
    h2, w2_ = _conv_extent(h // 2, 0), _conv_extent(w // 2, 0)
    saved = [
        x.new_empty((n, w1.shape[0], h, w)),
        x.new_empty((n, w1.shape[0], h // 2, w // 2)),
        x.new_empty((n, w2.shape[0], h2, w2_)),
        x.new_empty((n, w2.shape[0] * (h2 // 2) * (w2_ // 2))),
        x.new_empty((n, f1w.shape[0])),
        x.new_empty((n, f2w.shape[0])),
    ]
    return x.new_empty((n, f3w.shape[0])), saved


@torch.library.register_fake("lenet_fast::lenet5_backward")
def _(grad, x, w1, w2, f1w, f2w, f3w, saved, padding, output_mask, activation=DEFAULT_ACTIVATION, pooling=DEFAULT_POOLING,
      negative_slope=DEFAULT_NEGATIVE_SLOPE):
    shapes = [x.shape, w1.shape, w1.shape[:1], w2.shape, w2.shape[:1], f1w.shape, f1w.shape[:1],
              f2w.shape, f2w.shape[:1], f3w.shape, f3w.shape[:1]]
    return [grad.new_empty(shape if need else (0,)) for shape, need in zip(shapes, output_mask)]


# ---------------------------------------------------------------------------------------------
# Autograd. setup_context keeps only what the needed gradients use.


def _conv_grads(ctx, grad_pre, x, weight):
    """(dx, dweight, dbias) of a 5x5 convolution from the gradient at its output."""
    need_x, need_w, need_b = ctx.needs_input_grad[:3]
    dx = _lib.conv5x5_backward_input(grad_pre, weight, ctx.padding) if need_x else None
    dw = db = None
    if need_w or need_b:
        dw, db = _lib.conv5x5_backward_weight(grad_pre, x, ctx.padding)
    return dx, (dw if need_w else None), (db if need_b else None)


def _conv5x5_setup(ctx, inputs, output):
    x, weight, _, padding = inputs
    ctx.padding = padding
    need_x, need_w, need_b = ctx.needs_input_grad[:3]
    # dL/dx needs the weight; dL/dweight and dL/dbias come from one op, which reads x.
    ctx.save_for_backward(x if need_w or need_b else None, weight if need_x else None)


def _conv5x5_backward(ctx, grad):
    x, weight = ctx.saved_tensors
    return (*_conv_grads(ctx, grad, x, weight), None)


torch.library.register_autograd("lenet_fast::conv5x5", _conv5x5_backward, setup_context=_conv5x5_setup)


def _conv_act_pool_setup(ctx, inputs, output):
    x, weight, bias, padding, save_act, activation, pooling, negative_slope = inputs
    ctx.padding = padding
    ctx.variant = (activation, pooling, negative_slope)
    ctx.set_materialize_grads(False)
    need_x, need_w, need_b = ctx.needs_input_grad[:3]
    ctx.recompute = not save_act
    if save_act:
        ctx.save_for_backward(x if need_w or need_b else None, weight if need_x else None, output[1])
    else:  # called without the activation kept: backward recomputes it from the inputs
        ctx.save_for_backward(x, weight, bias)


def _conv_act_pool_backward(ctx, grad_y, grad_act):
    activation, pooling, slope = ctx.variant
    if ctx.recompute:
        x, weight, bias = ctx.saved_tensors
        act = _lib.act(_lib.conv5x5(x, weight, bias, ctx.padding), activation, slope)
    else:
        x, weight, act = ctx.saved_tensors
    grad_pre = None
    if grad_y is not None:
        grad_pre = _lib.act_pool_backward(grad_y, act, activation, pooling, slope)
    if grad_act is not None and not ctx.recompute:  # the activation output was used too
        # (with save_act=False that output is empty, and so is any gradient for it)
        extra = _lib.act_backward(grad_act, act, activation, slope)
        grad_pre = extra if grad_pre is None else grad_pre + extra
    if grad_pre is None:
        return (None,) * 8
    return (*_conv_grads(ctx, grad_pre, x, weight), None, None, None, None, None)


torch.library.register_autograd(
    "lenet_fast::conv5x5_act_pool", _conv_act_pool_backward, setup_context=_conv_act_pool_setup
)


def _avg_pool_setup(ctx, inputs, output):
    (x,) = inputs
    ctx.height, ctx.width = x.shape[2], x.shape[3]


def _avg_pool_backward(ctx, grad):
    return _lib.avg_pool2x2_backward(grad, ctx.height, ctx.width)


torch.library.register_autograd("lenet_fast::avg_pool2x2", _avg_pool_backward, setup_context=_avg_pool_setup)


def _act_setup(ctx, inputs, output):
    ctx.activation = inputs[1:]
    ctx.save_for_backward(output)


def _act_backward(ctx, grad):
    (y,) = ctx.saved_tensors
    return _lib.act_backward(grad, y, *ctx.activation), None, None


torch.library.register_autograd("lenet_fast::act", _act_backward, setup_context=_act_setup)


def _linear_setup(ctx, inputs, output, y=None):
    x, weight = inputs[:2]
    ctx.activation = inputs[3:]  # (activation, negative_slope) of linear_act
    need_x, need_w, need_b = ctx.needs_input_grad[:3]
    ctx.save_for_backward(x if need_w or need_b else None, weight if need_x else None, y)


def _linear_act_setup(ctx, inputs, output):
    _linear_setup(ctx, inputs, output, y=output)


def _linear_backward(ctx, grad):
    x, weight, y = ctx.saved_tensors
    grad_pre = grad if y is None else _lib.act_backward(grad, y, *ctx.activation)
    need_x, need_w, need_b = ctx.needs_input_grad[:3]
    dx = _lib.linear_backward_input(grad_pre, weight) if need_x else None
    dw = db = None
    if need_w or need_b:
        dw, db = _lib.linear_backward_weight(grad_pre, x)
    return dx, (dw if need_w else None), (db if need_b else None), *(None,) * len(ctx.activation)


torch.library.register_autograd("lenet_fast::linear", _linear_backward, setup_context=_linear_setup)
torch.library.register_autograd("lenet_fast::linear_act", _linear_backward, setup_context=_linear_act_setup)


@torch.library.register_fake("lenet_fast::gather_normalize")
def _(images, index, mean, std):
    return images.new_empty((index.shape[0], *images.shape[1:]), dtype=torch.float32)


# lenet5_forward_train's autograd is registered in C++ (csrc/ops/lenet5_train.cpp): it is the model's
# hot path, and its backward is the single op lenet5_backward.


# ---------------------------------------------------------------------------------------------
# Python entry points


def conv5x5(x: Tensor, weight: Tensor, bias: Tensor, padding: int = 0) -> Tensor:
    """conv2d(x, weight, bias, stride=1, padding) for a 5x5 weight, float32."""
    return _lib.conv5x5(x, weight, bias, padding)


def _needs_grad(*tensors: Tensor) -> bool:
    """Whether autograd records this call (never while torch.onnx exports)."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors) and not _onnx_exporting()


def _onnx_exporting() -> bool:
    """True while torch.onnx exports: its graphs are for inference, so the ops keep nothing for
    backward then (the training op has no ONNX form). is_exporting() first: it is a flag read, and
    torch.onnx's check costs a microsecond of imports."""
    return torch.compiler.is_exporting() and torch.onnx.is_in_onnx_export()


def conv5x5_act_pool(x: Tensor, weight: Tensor, bias: Tensor, padding: int = 0, activation: str = DEFAULT_ACTIVATION,
                      pooling: str = DEFAULT_POOLING, negative_slope: float = DEFAULT_NEGATIVE_SLOPE) -> Tensor:
    """avg_pool2d(tanh(conv2d(x, weight, bias, padding=padding)), 2) in one kernel, or another
    activation (ACTIVATIONS; negative_slope for leaky_relu) and pooling (POOLINGS: 2x2 stride 2).

    The full-resolution activation is written only when autograd will need it.
    """
    y, _ = _lib.conv5x5_act_pool(x, weight, bias, padding, _needs_grad(x, weight, bias), activation, pooling,
                                 negative_slope)
    return y


def avg_pool2x2(x: Tensor) -> Tensor:
    """avg_pool2d(x, kernel_size=2, stride=2) for (N, C, H, W) float32."""
    return _lib.avg_pool2x2(x)


def act(x: Tensor, activation: str = DEFAULT_ACTIVATION, negative_slope: float = DEFAULT_NEGATIVE_SLOPE) -> Tensor:
    """torch.tanh for float32 (or another of ACTIVATIONS), with the backward from the saved output."""
    return _lib.act(x, activation, negative_slope)


def linear(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """F.linear(x, weight, bias) for float32."""
    return _lib.linear(x, weight, bias)


def linear_act(x: Tensor, weight: Tensor, bias: Tensor, activation: str = DEFAULT_ACTIVATION,
                negative_slope: float = DEFAULT_NEGATIVE_SLOPE) -> Tensor:
    """torch.tanh(F.linear(x, weight, bias)) in one kernel (or another of ACTIVATIONS)."""
    return _lib.linear_act(x, weight, bias, activation, negative_slope)


def lenet5_forward(x: Tensor, params: list[Tensor], conv1_padding: int, mean: float = 0.0,
                   std: float = 1.0, activation: str = DEFAULT_ACTIVATION, pooling: str = DEFAULT_POOLING,
                   negative_slope: float = DEFAULT_NEGATIVE_SLOPE) -> Tensor:
    """The whole LeNet-5 forward in one op: params are conv1.weight, conv1.bias, conv2.weight,
    conv2.bias, fc1.weight, ..., fc3.bias; activation, pooling and negative_slope choose the
    variant (ACTIVATIONS, POOLINGS).

    With autograd active it runs lenet5_forward_train, whose backward is one lenet5_backward op;
    otherwise the inference op, which keeps no activations (one kernel on CUDA). x may be the raw
    uint8 images (inference only): they are normalised inside, as ToTensor() + Normalize(mean, std)
    would; mean and std apply to uint8 x only.
    """
    if _needs_grad(x, *params):
        if x.dtype == torch.uint8:
            raise TypeError("lenet_fast.ops.lenet5_forward: uint8 images are for inference; with autograd "
                            "active pass float32 (gather_normalize makes them)")
        return _lib.lenet5_forward_train(x, *params, conv1_padding, activation, pooling, negative_slope)[0]
    return _lib.lenet5_forward(x, *params, conv1_padding, mean, std, activation, pooling, negative_slope)


def gather_normalize(images: Tensor, index: Tensor, mean: float = 0.5, std: float = 0.5) -> Tensor:
    """((images[index].float() / 255) - mean) / std in one op, bit for bit what torchvision's
    ToTensor() + Normalize((mean,), (std,)) give: images (N, ...) uint8, index (B,) int64 ->
    (B, ...) float32. The defaults map [0, 255] to [-1, 1], as the tutorial does."""
    return _lib.gather_normalize(images, index, mean, std)
