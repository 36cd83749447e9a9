// The network's variants: the activation after each hidden layer and the 2x2/2 pooling after each
// convolution, as run-time values. The kernels take them as template parameters, so the dispatch
// from these values happens once per call, never per element (kernel_math.h has the arithmetic).
// Plain types outside kernel_math.h's anonymous namespace, so that argument structs shared between
// translation units (csrc/kernels/cpu/kernels.h) can hold them.
#pragma once

#include <cstdint>
#include <type_traits>

namespace lenet_fast {

// The activations a network variant can use, by the stock modules' names (kActNames, indexed by
// value; Triton's ACT codes are these values), and kNone: no activation, the identity, for the
// layers and ops that have none (fc3, the plain convolution). A call's arguments never name kNone.
enum class Act : int32_t { kNone = -1, kTanh = 0, kRelu = 1, kLeakyRelu = 2, kSigmoid = 3 };
enum class Pool : int32_t { kAvg = 0, kMax = 1 };

// The one list of the variants' names and defaults. The op schemas (csrc/ops/schemas.cpp), the
// argument parser (parse_variant) and, through lenet_fast._C.variants(), the Python package (the
// wrappers, the model, the CLIs, Triton's codes) all read these.
inline constexpr const char* kActNames[] = {"tanh", "relu", "leaky_relu", "sigmoid"};  // nn.Tanh, nn.ReLU, ...
inline constexpr const char* kPoolNames[] = {"avg", "max"};                         // nn.AvgPool2d(2), nn.MaxPool2d(2)
#define LF_DEFAULT_ACTIVATION "tanh"  // the tutorial's network (string literals: the schemas paste them)
#define LF_DEFAULT_POOLING "avg"
#define LF_DEFAULT_NEGATIVE_SLOPE "0.01"  // nn.LeakyReLU's
inline constexpr double kDefaultNegativeSlope = 0.01;  // LF_DEFAULT_NEGATIVE_SLOPE as a number

// LeakyReLU's negative slope must be finite and >= 0: the backward tells the branch from the sign
// of the saved output, which is the input's sign only for a slope >= 0.
inline constexpr bool negative_slope_ok(double slope) { return slope >= 0.0 && slope <= 3.4e38; }

struct Variant {
  Act act = Act::kTanh;
  Pool pool = Pool::kAvg;
  float slope = static_cast<float>(kDefaultNegativeSlope);  // LeakyReLU's negative slope (negative_slope_ok)
};

template <Act A>
using ActC = std::integral_constant<Act, A>;
template <Pool P>
using PoolC = std::integral_constant<Pool, P>;

// Calls f(ActC<A>{}) for the run-time activation a, one of the four network activations: the one switch between a call's arguments and
// the kernels' template parameters (host code, CPU and CUDA launchers alike).
template <class F>
inline void with_act(Act a, F&& f) {
  switch (a) {
    case Act::kNone: break;  // not a run-time choice (parse_variant never returns it): no kernels for it
    case Act::kTanh: f(ActC<Act::kTanh>{}); break;
    case Act::kRelu: f(ActC<Act::kRelu>{}); break;
    case Act::kLeakyRelu: f(ActC<Act::kLeakyRelu>{}); break;
    case Act::kSigmoid: f(ActC<Act::kSigmoid>{}); break;
  }
}

// Calls f(ActC<A>{}, PoolC<P>{}) for the run-time variant v.
template <class F>
inline void with_variant(const Variant& v, F&& f) {
  with_act(v.act, [&](auto a) {
    if (v.pool == Pool::kMax)
      f(a, PoolC<Pool::kMax>{});
    else
      f(a, PoolC<Pool::kAvg>{});
  });
}

}  // namespace lenet_fast
