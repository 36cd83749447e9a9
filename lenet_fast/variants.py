"""The network's variants: the activation after every hidden layer and the 2x2 pooling after each
convolution, by the stock modules' names, with their defaults (the tutorial's network).

One definition, in C++ (csrc/kernels/variant.h), read here through the extension: the op schemas,
the kernels' argument parser, the Python wrappers, the model, the CLIs and Triton's activation codes
all use these names, so a new variant is added in one place.
"""
from __future__ import annotations

import math

from . import _C

_V = _C.variants()

ACTIVATIONS: tuple[str, ...] = tuple(_V["activations"])  # "tanh", "relu", "leaky_relu", "sigmoid"
POOLINGS: tuple[str, ...] = tuple(_V["poolings"])  # "avg", "max"
DEFAULT_ACTIVATION: str = _V["default_activation"]
DEFAULT_POOLING: str = _V["default_pooling"]
DEFAULT_NEGATIVE_SLOPE: float = _V["default_negative_slope"]
DEFAULTS = {"activation": DEFAULT_ACTIVATION, "pooling": DEFAULT_POOLING, "negative_slope": DEFAULT_NEGATIVE_SLOPE}
# The kernels' activation codes (the C++ enum's values, which Triton's ACT constexpr takes too):
# an activation's index in ACTIVATIONS, and NO_ACTIVATION for a layer without one (fc3).
ACT_CODES = {name: code for code, name in enumerate(ACTIVATIONS)}
NO_ACTIVATION: int = _V["no_activation"]
# tanh's rational function (csrc/kernels/kernel_math.h): t P(t^2) / Q(t^2), t clamped to +-clamp,
# coefficients by degree.
TANH_CLAMP: float = _V["tanh"]["clamp"]
TANH_P: tuple[float, ...] = tuple(_V["tanh"]["p"])
TANH_Q: tuple[float, ...] = tuple(_V["tanh"]["q"])


def negative_slope_ok(negative_slope: float) -> bool:
    """LeakyReLU's slope must be finite and >= 0: the backward reads the branch from the sign of
    the saved output (variant.h's negative_slope_ok)."""
    return 0 <= negative_slope and math.isfinite(negative_slope)


def check(where: str, activation: str | None = None, pooling: str | None = None,
          negative_slope: float = DEFAULT_NEGATIVE_SLOPE) -> None:
    """Raises ValueError naming `where` unless the arguments name a variant (None: not checked)."""
    if activation is not None and activation not in ACTIVATIONS:
        raise ValueError(f"{where}: activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
    if pooling is not None and pooling not in POOLINGS:
        raise ValueError(f"{where}: pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    if not negative_slope_ok(negative_slope):
        raise ValueError(f"{where}: negative_slope must be finite and >= 0 (the kernels tell LeakyReLU's branch from "
                         f"the sign of its output), got {negative_slope}")


def name(activation: str, pooling: str) -> str:
    """The variant's short name, e.g. "relu-max"; "tanh-avg" is the tutorial's network."""
    return f"{activation}-{pooling}"
