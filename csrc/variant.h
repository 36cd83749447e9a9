// The network's variants: the activation after each hidden layer and the 2x2/2 pooling after each
// convolution, as run-time values. The kernels take them as template parameters, so the dispatch
// from these values happens once per call, never per element (kernel_math.h has the arithmetic).
// Plain types outside kernel_math.h's anonymous namespace, so that argument structs shared between
// translation units (csrc/cpu/kernels.h) can hold them.
#pragma once

#include <cstdint>
#include <type_traits>

namespace lenet_fast {

enum class Act : int32_t { kTanh = 0, kRelu = 1, kLeakyRelu = 2, kSigmoid = 3 };
enum class Pool : int32_t { kAvg = 0, kMax = 1 };

struct Variant {
  Act act = Act::kTanh;
  Pool pool = Pool::kAvg;
  float slope = 0.01f;  // LeakyReLU's negative slope, >= 0 (its backward reads the output's sign)
};

template <Act A>
using ActC = std::integral_constant<Act, A>;
template <Pool P>
using PoolC = std::integral_constant<Pool, P>;

// Calls f(ActC<A>{}) for the run-time activation a: the one switch between a call's arguments and
// the kernels' template parameters (host code, CPU and CUDA launchers alike).
template <class F>
inline void with_act(Act a, F&& f) {
  switch (a) {
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
