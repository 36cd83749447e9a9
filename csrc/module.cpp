// The Python extension module lenet_fast._C. Importing it loads this library, whose static
// initialisers register the ops (ops.cpp, cpu/*.cpp, cuda/*.cu); the few functions here only
// report and steer the build: which CPU ISA runs, and what was compiled.
#include <Python.h>

#include "cpu/kernels.h"

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

PyMethodDef methods[] = {
    {"cpu_isa", cpu_isa, METH_NOARGS, "The CPU kernel variant in use."},
    {"cpu_isas", cpu_isas, METH_NOARGS, "CPU kernel variants usable here, best first."},
    {"set_cpu_isa", set_cpu_isa, METH_O, "Use the named CPU kernel variant."},
    {"build_info", build_info, METH_NOARGS, "What this build of lenet_fast compiled."},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, methods};

}  // namespace

PyMODINIT_FUNC PyInit__C() { return PyModule_Create(&module); }
