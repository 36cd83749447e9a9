// The Python extension module lenet_fast._C. Importing it loads this library, whose static
// initialisers register the ops (ops.cpp, cpu/*.cpp, cuda/*.cu); the few functions here only
// report and steer the build: which CPU ISA runs, and what was compiled.
#include <Python.h>

#include <cstdio>
#include <iterator>

#include "kernels/cpu/kernels.h"
#include "ops/cpu/parallel.h"
#include "kernels/kernel_math.h"
#include "kernels/variant.h"

#ifndef LENET_FAST_VERSION
#define LENET_FAST_VERSION "unknown"
#endif
#ifndef LENET_FAST_BUILD_TORCH
#define LENET_FAST_BUILD_TORCH "unknown"
#endif
#ifndef LENET_FAST_BUILD_CUDA
#define LENET_FAST_BUILD_CUDA ""
#endif
#ifndef LENET_FAST_CUDA_ARCHS
#define LENET_FAST_CUDA_ARCHS ""
#endif

namespace {

PyObject* cpu_isa(PyObject*, PyObject*) {
  return PyUnicode_FromString(lenet_fast::cpu::kernels().isa);
}

PyObject* cpu_isas(PyObject*, PyObject*) {
  return PyUnicode_FromString(lenet_fast::cpu::available_isas());
}

PyObject* set_cpu_isa(PyObject*, PyObject* arg) {
  const char* name = PyUnicode_AsUTF8(arg);
  if (!name) return nullptr;
  if (!lenet_fast::cpu::set_isa(name)) {
    PyErr_Format(PyExc_ValueError,
                 "lenet_fast: CPU ISA '%s' is not available here; available: %s", name,
                 lenet_fast::cpu::available_isas());
    return nullptr;
  }
  Py_RETURN_NONE;
}

PyObject* cpu_fma_peak(PyObject*, PyObject* args) {
  int threads = 1;
  double seconds = 0.1;
  if (!PyArg_ParseTuple(args, "|id", &threads, &seconds)) return nullptr;
  if (threads < 1 || threads > 4096 || !(seconds > 0.0 && seconds <= 60.0)) {
    // snprintf, not PyErr_Format: Python 3.12's PyErr_Format has no %g
    char msg[160];
    std::snprintf(msg, sizeof msg,
                  "lenet_fast._C.cpu_fma_peak: expected 1 <= threads <= 4096 and 0 < seconds <= 60, got %d, %g", threads,
                  seconds);
    PyErr_SetString(PyExc_ValueError, msg);
    return nullptr;
  }
  double gflops = 0.0;
  Py_BEGIN_ALLOW_THREADS  // the loop runs for `seconds`: other Python threads may go on
  gflops = lenet_fast::cpu::cpu_fma_peak_gflops(threads, seconds);
  Py_END_ALLOW_THREADS
  return PyFloat_FromDouble(gflops);
}

PyObject* cpu_contended(PyObject*, PyObject*) { return PyBool_FromLong(lenet_fast::cpu::contended()); }

PyObject* build_info(PyObject*, PyObject*) {
#ifdef LENET_FAST_WITH_CUDA
  PyObject* with_cuda = Py_True;
#else
  PyObject* with_cuda = Py_False;
#endif
  return Py_BuildValue("{s:s,s:s,s:O,s:s,s:s}", "version", LENET_FAST_VERSION, "torch",
                       LENET_FAST_BUILD_TORCH, "with_cuda", with_cuda, "cuda",
                       LENET_FAST_BUILD_CUDA, "cuda_archs", LENET_FAST_CUDA_ARCHS);
}

PyObject* names(const char* const* first, size_t n) {
  PyObject* list = PyList_New(static_cast<Py_ssize_t>(n));
  for (size_t i = 0; i < n; ++i) PyList_SET_ITEM(list, static_cast<Py_ssize_t>(i), PyUnicode_FromString(first[i]));
  return list;
}

// variant.h's names and defaults, and the tanh's coefficients, for the Python side: the one
// definition that lenet_fast.variants (and through it the wrappers, model, CLIs and Triton) reads.
PyObject* variants(PyObject*, PyObject*) {
  using namespace lenet_fast;
  return Py_BuildValue(
      "{s:N,s:N,s:s,s:s,s:d,s:i,s:{s:d,s:(ddddd),s:(ddddd)}}", "activations",
      names(kActNames, std::size(kActNames)), "poolings", names(kPoolNames, std::size(kPoolNames)),
      "default_activation", LF_DEFAULT_ACTIVATION, "default_pooling", LF_DEFAULT_POOLING,
      "default_negative_slope", kDefaultNegativeSlope, "no_activation",
      static_cast<int>(Act::kNone), "tanh", "clamp", double{kTanhClamp}, "p", double{kTanhP0}, double{kTanhP1},
      double{kTanhP2}, double{kTanhP3}, double{kTanhP4}, "q", double{kTanhQ0}, double{kTanhQ1}, double{kTanhQ2},
      double{kTanhQ3}, double{kTanhQ4});
}

PyMethodDef methods[] = {
    {"cpu_isa", cpu_isa, METH_NOARGS, "The CPU kernel variant in use."},
    {"cpu_isas", cpu_isas, METH_NOARGS, "CPU kernel variants usable here, best first."},
    {"set_cpu_isa", set_cpu_isa, METH_O, "Use the named CPU kernel variant."},
    {"cpu_fma_peak", cpu_fma_peak, METH_VARARGS,
     "cpu_fma_peak(threads=1, seconds=0.1): float32 FMA GFLOP/s measured on that many threads at once, widest ISA."},
    {"cpu_contended", cpu_contended, METH_NOARGS,
     "Whether the CPU ops run on one thread for now because other work has the cores (parallel.h)."},
    {"variants", variants, METH_NOARGS, "The network variants' names and defaults, tanh's coefficients."},
    {"build_info", build_info, METH_NOARGS, "What this build of lenet_fast compiled."},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, methods};

}  // namespace

PyMODINIT_FUNC PyInit__C() { return PyModule_Create(&module); }
