"""The routes people ship a trained LeNet5 by: ONNX (ONNX Runtime runs the export), TorchScript
tracing, torch.export with AOTInductor. (The C++ side of AOTInductor: examples/aoti_cpp, run by
ctest.) Every route is checked against eager lenet_fast / stock PyTorch under the project's
accuracy rule, at more than one batch size."""
import copy
import importlib.util
import itertools
import warnings

import pytest
import torch

from lenet_fast import LeNet5, TorchLeNet5, ops, variants
from helpers import assert_matches_reference

_MISSING = [m for m in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(m) is None]
needs_onnx = pytest.mark.skipif(bool(_MISSING), reason=f"ONNX export needs {', '.join(_MISSING)} "
                                                       "(pip install onnx onnxscript onnxruntime)")
VARIANTS = list(itertools.product(variants.ACTIVATIONS, variants.POOLINGS))


def _trained_like(size=28, activation="tanh", pooling="avg", seed=0):
    """An eval-mode model with random weights, and its stock twin holding the same weights."""
    torch.manual_seed(seed)
    fast = LeNet5(input_size=size, activation=activation, pooling=pooling).eval()
    stock = TorchLeNet5(activation=activation, pooling=pooling).eval()
    if size == 32:
        stock.conv1.padding = (0, 0)
    stock.load_state_dict(fast.state_dict())
    return fast, stock


def _check_logits(got, fast, stock, x, name):
    with torch.no_grad():
        want = fast(x)
        assert_matches_reference(got, stock(x), copy.deepcopy(stock).double()(x.double()), name)
    return want


# ---- ONNX --------------------------------------------------------------------------------------

def _onnx_session(program, tmp_path):
    import onnxruntime

    path = tmp_path / "model.onnx"
    program.save(str(path))
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _run_onnx(session, x):
    return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])


def _export_onnx(model, x, **kwargs):
    import lenet_fast.onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's progress and deprecation notes
        return lenet_fast.onnx.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},),
                                      verbose=False, **kwargs)


@needs_onnx
@pytest.mark.parametrize("size", [28, 32])
@pytest.mark.parametrize("activation,pooling", VARIANTS, ids=[f"{a}-{p}" for a, p in VARIANTS])
def test_onnx_runtime_matches_eager(activation, pooling, size, tmp_path):
    fast, stock = _trained_like(size, activation, pooling)
    # As people write it: an eval-mode model whose parameters require grad, grad mode on.
    program = _export_onnx(fast, torch.randn(4, 1, size, size))
    kinds = [node.op_type for node in program.model.graph]
    assert not [k for k in kinds if k.startswith("lenet")], kinds
    assert kinds.count("Conv") == 2 and kinds.count("Gemm") == 3, kinds
    assert kinds.count({"avg": "AveragePool", "max": "MaxPool"}[pooling]) == 2, kinds
    session = _onnx_session(program, tmp_path)
    for batch in (1, 17):  # one export, a dynamic batch
        x = torch.randn(batch, 1, size, size)
        got = _run_onnx(session, x)
        want = _check_logits(got, fast, stock, x, f"onnx {activation}-{pooling} {size} batch {batch}")
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def _node_kinds(program):
    return [node.op_type for node in program.model.graph]


@needs_onnx
def test_onnx_export_in_training_mode_is_the_inference_graph(tmp_path):
    fast, stock = _trained_like()
    with torch.no_grad():
        inference_graph = _node_kinds(_export_onnx(fast, torch.randn(2, 1, 28, 28)))
    fast.train()
    program = _export_onnx(fast, torch.randn(2, 1, 28, 28))
    assert fast.training and _node_kinds(program) == inference_graph
    session = _onnx_session(program, tmp_path)
    x = torch.randn(5, 1, 28, 28)
    _check_logits(_run_onnx(session, x), fast, stock, x, "onnx of a training-mode model")


class _Uint8Net(torch.nn.Module):
    """What serving raw images looks like: uint8 in, logits out, normalisation in the graph."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, images):
        return self.net.forward_uint8(images)


@needs_onnx
@pytest.mark.parametrize("grad", [True, False], ids=["grad", "no_grad"])
def test_onnx_forward_uint8(grad, tmp_path):
    fast, stock = _trained_like()
    with torch.set_grad_enabled(grad):
        program = _export_onnx(_Uint8Net(fast), torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8))
    kinds = _node_kinds(program)
    assert kinds[:3] == ["Cast", "Div", "Sub"] and kinds.count("Conv") == 2, kinds  # normalised in the graph
    session = _onnx_session(program, tmp_path)
    for batch in (1, 17):
        images = torch.randint(0, 256, (batch, 1, 28, 28), dtype=torch.uint8)
        got = session.run(None, {session.get_inputs()[0].name: images.numpy()})[0]
        with torch.no_grad():
            x = (images.float() / 255 - 0.5) / 0.5  # ToTensor() + Normalize((0.5,), (0.5,))
            assert torch.equal(ops.gather_normalize(images, torch.arange(batch), 0.5, 0.5), x)
        _check_logits(torch.from_numpy(got), fast, stock, x, f"onnx uint8 batch {batch}")


class _OpsNet(torch.nn.Module):
    """Every other translated op, as someone building their own network from lenet_fast.ops would."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2 = torch.nn.Conv2d(1, 6, 5, padding=2), torch.nn.Conv2d(6, 16, 5)
        self.f1, self.f2 = torch.nn.Linear(16 * 5 * 5, 32), torch.nn.Linear(32, 10)

    def forward(self, x):
        h = ops.conv5x5_act_pool(x, self.c1.weight, self.c1.bias, 2, "relu", "max")
        h = ops.avg_pool2x2(ops.act(ops.conv5x5(h, self.c2.weight, self.c2.bias, 0), "sigmoid"))
        h = ops.linear_act(h.flatten(1), self.f1.weight, self.f1.bias, "leaky_relu", 0.2)
        return ops.linear(h, self.f2.weight, self.f2.bias)

    def stock(self, x):
        f = torch.nn.functional
        h = f.max_pool2d(f.relu(self.c1(x)), 2)
        h = f.avg_pool2d(torch.sigmoid(self.c2(h)), 2)
        return self.f2(f.leaky_relu(self.f1(h.flatten(1)), 0.2))


@needs_onnx
def test_onnx_translations_of_the_single_ops(tmp_path):
    torch.manual_seed(0)
    net = _OpsNet().eval()
    session = _onnx_session(_export_onnx(net, torch.randn(2, 1, 28, 28)), tmp_path)
    for batch in (1, 17):
        x = torch.randn(batch, 1, 28, 28)
        with torch.no_grad():
            stock32, ref64 = net.stock(x), copy.deepcopy(net).double().stock(x.double())
            assert_matches_reference(_run_onnx(session, x), stock32, ref64, f"onnx ops batch {batch}")


@needs_onnx
def test_onnx_export_of_the_triton_backend_says_what_to_do():
    from lenet_fast import triton_linear

    if not triton_linear.HAVE_TRITON:
        pytest.skip("triton is not installed")
    import lenet_fast.onnx

    model, x = LeNet5(fc_backend="triton").eval(), torch.randn(2, 1, 28, 28)
    what_to_do = r"fc_backend='triton'\) cannot be exported to ONNX.*fc_backend='native'"
    with pytest.raises(ValueError, match=what_to_do):
        _export_onnx(torch.nn.Sequential(model), x)  # refused before any tracing
    with pytest.raises(Exception, match=what_to_do), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), dynamo=True, custom_translation_table=lenet_fast.onnx.translations())


# ---- TorchScript tracing -----------------------------------------------------------------------

def _trace(model, x):
    with warnings.catch_warnings():
        # The trace's check raises when the graphs differ but only warns when the outputs do: make
        # that an error. Ignored: torch.jit's deprecation, and the input-shape check's warning.
        warnings.filterwarnings("error", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Converting a tensor to a Python boolean", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        return torch.jit.trace(model, x)


@pytest.mark.parametrize("grad", [True, False], ids=["grad", "no_grad"])
def test_trace_of_an_eval_model_holds_the_inference_op(grad, tmp_path):
    fast, stock = _trained_like()
    with torch.set_grad_enabled(grad):
        traced = _trace(fast, torch.randn(4, 1, 28, 28))  # the trace's own check must pass
    graph = str(traced.graph)
    assert "lenet_fast::lenet5_forward(" in graph and "lenet5_forward_train" not in graph, graph
    path = tmp_path / "lenet5.pt"
    traced.save(str(path))
    loaded = torch.jit.load(str(path))
    for batch in (1, 17):
        x = torch.randn(batch, 1, 28, 28)
        with torch.no_grad():
            assert torch.equal(loaded(x), fast(x))
        _check_logits(loaded(x), fast, stock, x, f"traced batch {batch}")


@pytest.mark.parametrize("grad", [True, False], ids=["grad", "no_grad"])
def test_trace_of_forward_uint8(grad):
    fast, stock = _trained_like()
    with torch.set_grad_enabled(grad):
        traced = _trace(_Uint8Net(fast), torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8))
    assert "lenet5_forward_train" not in str(traced.graph)
    images = torch.randint(0, 256, (17, 1, 28, 28), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.equal(traced(images), fast.forward_uint8(images))


@pytest.mark.parametrize("grad", [True, False], ids=["grad", "no_grad"])
def test_trace_of_a_training_model_holds_the_training_op(grad):
    fast, _ = _trained_like()
    fast.train()
    with torch.set_grad_enabled(grad):
        traced = _trace(fast, torch.randn(4, 1, 28, 28))
    assert "lenet_fast::lenet5_forward_train(" in str(traced.graph)
    x, y = torch.randn(9, 1, 28, 28), torch.randint(0, 10, (9,))
    torch.nn.functional.cross_entropy(traced(x), y).backward()
    traced_grads = [p.grad.clone() for p in fast.parameters()]
    fast.zero_grad()
    torch.nn.functional.cross_entropy(fast(x), y).backward()
    for (name, p), g in zip(fast.named_parameters(), traced_grads):
        assert torch.equal(g, p.grad), name


# ---- torch.export and AOTInductor (Python) -----------------------------------------------------

@pytest.mark.parametrize("grad", [True, False], ids=["grad", "no_grad"])  # the training op / the inference op
def test_torch_export_save_load(grad, tmp_path):
    fast, _ = _trained_like()
    batch = torch.export.Dim("batch", min=1)
    with torch.set_grad_enabled(grad):
        program = torch.export.export(fast, (torch.randn(4, 1, 28, 28),), dynamic_shapes=({0: batch},))
    op = "lenet5_forward_train" if grad else "lenet5_forward.default"
    assert op in str(program.graph), program.graph
    torch.export.save(program, str(tmp_path / "lenet5.pt2"))
    loaded = torch.export.load(str(tmp_path / "lenet5.pt2")).module()
    for n in (1, 8, 33):
        x = torch.randn(n, 1, 28, 28)
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), fast(x), rtol=0, atol=0)


@pytest.mark.slow
def test_aoti_compile_and_package(tmp_path):
    fast, stock = _trained_like()
    batch = torch.export.Dim("batch", min=1, max=1024)
    with torch.no_grad():
        program = torch.export.export(fast, (torch.randn(8, 1, 28, 28),), dynamic_shapes=({0: batch},))
        path = torch._inductor.aoti_compile_and_package(program, package_path=str(tmp_path / "lenet5.pt2"))
    runner = torch._inductor.aoti_load_package(path)
    for n in (1, 8, 33):
        x = torch.randn(n, 1, 28, 28)
        got = runner(x)
        with torch.no_grad():
            torch.testing.assert_close(got, fast(x), rtol=0, atol=0)
        _check_logits(got, fast, stock, x, f"aoti batch {n}")
