"""Every lenet_fast CUDA op against the CPU kernels, forward and backward, in seconds: the GPU
check's first look (benchmarks/gpu_check.sh), so that a wrong kernel is named at once.

    CUDA_LAUNCH_BLOCKING=1 python -P benchmarks/gpu_smoke.py            # table on stdout
    python -P benchmarks/gpu_smoke.py --table summary.txt               # ... appended there too, row by row
    python -P benchmarks/gpu_smoke.py --device cpu                      # a dry run: CPU against CPU

Each check builds its inputs on the CPU (odd sizes, so that every tail and bound is exercised),
runs the op and its autograd backward on the device and on the CPU, and compares every output and
gradient: max abs error, max error relative to the result's largest magnitude, PASS or FAIL
(|device - cpu| <= 1e-5 * max(1, max|cpu|) + 1e-4 |cpu| elementwise: the CPU kernels are held to
float64 by the test suite; here only the summation order differs). An exception is a FAIL with its
first line. After an error that leaves the CUDA context unusable (an illegal address, a device-side
assert), the script starts itself again to run the remaining checks in a fresh process.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F

import lenet_fast
from lenet_fast import LeNet5, ops

O = torch.ops.lenet_fast


def _g(seed):
    return torch.Generator().manual_seed(seed)


def _r(*shape, seed=0, scale=1.0):
    return torch.randn(*shape, generator=_g(seed)) * scale


def _with_grads(fn, inputs, need):
    """fn's outputs, then the gradients of <outputs, fixed random cotangent> for inputs[i], need[i]."""
    def run(device):
        ins = [t.to(device).requires_grad_(n) if isinstance(t, torch.Tensor) and t.is_floating_point() else
               (t.to(device) if isinstance(t, torch.Tensor) else t) for t, n in zip(inputs, need)]
        out = fn(*ins)
        outs = list(out) if isinstance(out, (tuple, list)) else [out]
        diff = [o for o in outs if o.requires_grad]
        if diff:
            cots = [_r(*o.shape, seed=99 + i).to(device) for i, o in enumerate(diff)]
            grads = torch.autograd.grad(diff, [t for t, n in zip(ins, need) if n], cots)
        else:
            grads = []
        return [o.detach() for o in outs] + list(grads)
    return run


def _plain(fn, inputs):
    def run(device):
        ins = [t.to(device) if isinstance(t, torch.Tensor) else t for t in inputs]
        out = fn(*ins)
        return list(out) if isinstance(out, (tuple, list)) else [out]
    return run


def _model(batch, backend="native", input_grad=False, **variant):
    def run(device):
        torch.manual_seed(0)
        m = LeNet5(fc_backend=backend, **variant).to(device)
        x = _r(batch, 1, 28, 28, seed=5).to(device).requires_grad_(input_grad)
        y = torch.randint(0, 10, (batch,), generator=_g(6)).to(device)
        logits = m(x)
        F.cross_entropy(logits, y).backward()
        out = [logits.detach()] + [p.grad for p in m.parameters()]
        return out + ([x.grad] if input_grad else [])
    return run


def _seeded_lenet():
    torch.manual_seed(0)
    return LeNet5()


def _inference(batch):
    def run(device):
        torch.manual_seed(0)
        m = LeNet5().to(device)
        with torch.no_grad():
            return [m(_r(batch, 1, 28, 28, seed=7).to(device))]
    return run


def checks(triton: bool):
    """(name, run(device) -> list of tensors)."""
    yes3 = (True, True, True)
    conv_in = lambda n, ic, oc, h, w: [_r(n, ic, h, w, seed=1), _r(oc, ic, 5, 5, seed=2, scale=0.2), _r(oc, seed=3, scale=0.1)]  # noqa: E731
    lin_in = lambda n, k, j: [_r(n, k, seed=1), _r(j, k, seed=2, scale=k ** -0.5), _r(j, seed=3, scale=0.1)]  # noqa: E731
    out = [
        ("conv5x5 fwd+bwd N=3 3->5 13x11 pad 1", _with_grads(lambda x, w, b: ops.conv5x5(x, w, b, 1), conv_in(3, 3, 5, 13, 11), yes3)),
        ("conv5x5 fwd+bwd N=2 16->120 5x5 (C5)", _with_grads(lambda x, w, b: ops.conv5x5(x, w, b, 0), conv_in(2, 16, 120, 5, 5), yes3)),
        ("conv5x5_act_pool fwd+bwd conv1 N=33", _with_grads(lambda x, w, b: ops.conv5x5_act_pool(x, w, b, 2), conv_in(33, 1, 6, 28, 28), (False, True, True))),
        ("conv5x5_act_pool fwd+bwd conv2 N=33", _with_grads(lambda x, w, b: ops.conv5x5_act_pool(x, w, b, 0), conv_in(33, 6, 16, 14, 14), yes3)),
        ("conv5x5_act_pool odd N=2 2->3 9x7 pad 1 +act", _with_grads(lambda x, w, b: O.conv5x5_act_pool(x, w, b, 1, True), conv_in(2, 2, 3, 9, 7), yes3)),
        ("conv5x5_act_pool save_act=False", _with_grads(lambda x, w, b: O.conv5x5_act_pool(x, w, b, 0, False)[0], conv_in(3, 6, 16, 14, 14), yes3)),
        ("conv5x5_backward_weight N=300 (chunks)", _plain(lambda g, x: O.conv5x5_backward_weight(g, x, 0), [_r(300, 16, 10, 10, seed=4), _r(300, 6, 14, 14, seed=5)])),
        ("conv5x5_backward_input N=300", _plain(lambda g, w: O.conv5x5_backward_input(g, w, 0), [_r(300, 16, 10, 10, seed=4), _r(16, 6, 5, 5, seed=5)])),
        ("conv5x5_act_pool_backward_weight N=257", _plain(lambda g, a, x: O.conv5x5_act_pool_backward_weight(g, a, x, 2),
                                                         [_r(257, 6, 14, 14, seed=4), torch.tanh(_r(257, 6, 28, 28, seed=5)), _r(257, 1, 28, 28, seed=6)])),
        ("conv5x5_backward_weight no input channels", _plain(lambda g, x: O.conv5x5_backward_weight(g, x, 0), [_r(2, 3, 1, 1, seed=4), _r(2, 0, 5, 5)])),
        ("act_pool_backward 7x9", _plain(O.act_pool_backward, [_r(3, 4, 3, 4, seed=4), torch.tanh(_r(3, 4, 7, 9, seed=5))])),
        ("avg_pool2x2 fwd+bwd 7x9", _with_grads(ops.avg_pool2x2, [_r(3, 4, 7, 9, seed=1)], (True,))),
        ("tanh fwd+bwd (every regime)", _with_grads(ops.act, [torch.linspace(-12, 12, 10001)], (True,))),
        ("linear fwd+bwd N=33 37->19", _with_grads(ops.linear, lin_in(33, 37, 19), yes3)),
        ("linear_act fwd+bwd N=33 400->120", _with_grads(ops.linear_act, lin_in(33, 400, 120), yes3)),
        ("linear_act fwd+bwd 3-D input", _with_grads(ops.linear_act, [_r(2, 3, 84, seed=1), _r(10, 84, seed=2, scale=0.1), _r(10, seed=3)], yes3)),
        ("linear_backward_weight N=4096 (bias sum)", _plain(O.linear_backward_weight, [_r(4096, 120, seed=4), _r(4096, 400, seed=5)])),
        ("linear no input features", _plain(O.linear_act, [_r(3, 0), _r(4, 0), _r(4, seed=3)])),
        ("lenet5_forward N=1", _inference(1)),
        ("lenet5_forward N=1027", _inference(1027)),
        ("lenet5_forward N=4099 (tiles of 8)", _inference(4099)),
        ("lenet5_forward uint8 N=1027", _plain(lambda im, *p: O.lenet5_forward(im, *p, 2, 0.5, 0.5),
                                               [torch.randint(0, 256, (1027, 1, 28, 28), generator=_g(10), dtype=torch.uint8)]
                                               + [t.detach() for t in _seeded_lenet().parameters()])),
        ("model train step N=33 (lenet5_forward_train/backward)", _model(33)),
        ("model train step N=5 with dL/dx", _model(5, input_grad=True)),
        ("model train step N=33 relu + max pool", _model(33, activation="relu", pooling="max")),
        ("model train step N=33 leaky_relu(0.2) + avg", _model(33, activation="leaky_relu", negative_slope=0.2)),
        ("model train step N=33 sigmoid + max pool", _model(33, activation="sigmoid", pooling="max")),
        ("conv5x5_act_pool relu + max, tied windows", _with_grads(lambda x, w, b: ops.conv5x5_act_pool(x, w, b, 2, "relu", "max"),
                                                                 [torch.round(_r(9, 1, 28, 28, seed=1) * 2) / 2,
                                                                  _r(6, 1, 5, 5, seed=2, scale=0.2), _r(6, seed=3, scale=0.1)], yes3)),
        ("gather_normalize", _plain(lambda im, i: ops.gather_normalize(im, i), [torch.randint(0, 256, (50, 1, 28, 28), generator=_g(8), dtype=torch.uint8),
                                                                          torch.randperm(50, generator=_g(9))[:37]])),
    ]
    if triton:
        from lenet_fast.triton_linear import triton_linear

        # Triton on the device against the native kernels on the CPU (Triton has no CPU backend)
        def tri(act):
            def run(device):
                fn = (lambda *a: triton_linear(*a, act)) if device != "cpu" else (ops.linear_act if act else ops.linear)
                return _with_grads(fn, lin_in(300, 84, 10), yes3)(device)
            return run
        out += [("triton_linear tanh fwd+bwd N=300 (2 dW chunks)", tri(True)), ("triton_linear fwd+bwd N=300", tri(False)),
                ("model train step N=33, Triton fc", lambda d: _model(33, "triton" if d != "cpu" else "native")(d))]
    return out


def compare(got, want):
    """(max abs error, max abs error / max |want|, ok) over every pair of tensors."""
    worst_abs = worst_rel = 0.0
    ok = len(got) == len(want)
    for g, w in zip(got, want):
        g, w = g.detach().cpu().double(), w.detach().double()
        if g.shape != w.shape:
            return float("nan"), float("nan"), False
        if w.numel() == 0:
            continue
        scale = max(1.0, w.abs().max().item())
        err = (g - w).abs()
        worst_abs = max(worst_abs, err.max().item())
        worst_rel = max(worst_rel, err.max().item() / max(w.abs().max().item(), 1e-30))
        ok = ok and bool((err <= 1e-5 * scale + 1e-4 * w.abs()).all())
    return worst_abs, worst_rel, ok


def _context_usable(device) -> bool:
    if device == "cpu":
        return True
    try:
        torch.cuda.synchronize()
        torch.zeros(1, device=device).add_(1).item()
        return True
    except Exception:  # noqa: BLE001 - any error here means the context is gone
        return False


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--table", help="also append the table here, row by row")
    p.add_argument("--no-triton", action="store_true")
    p.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)  # resuming in a fresh process
    p.add_argument("--failed", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    device = args.device
    if device.startswith("cuda") and not lenet_fast.cuda_available():
        raise SystemExit("gpu_smoke: no usable CUDA GPU, or no CUDA kernels in this build (python -m lenet_fast.info)")
    triton = device != "cpu" and not args.no_triton
    if triton:
        from lenet_fast import triton_linear

        triton = triton_linear.available(device)[0]
    table = open(args.table, "a") if args.table else None

    def emit(line):
        print(line, flush=True)
        if table:
            table.write(line + "\n")
            table.flush()

    all_checks = checks(triton)
    if args.start == 0:
        emit(f"smoke: {len(all_checks)} checks of lenet_fast on {device} against its CPU kernels")
        emit(f"{'check':<55} {'max abs':>10} {'max rel':>10}  result")
    failed = args.failed
    for i in range(args.start, len(all_checks)):
        name, run = all_checks[i]
        t0 = time.perf_counter()
        try:
            want = run("cpu")
            got = run(device)
            if device != "cpu":
                torch.cuda.synchronize()
            abs_err, rel_err, ok = compare(got, want)
            emit(f"{name:<55} {abs_err:>10.2e} {rel_err:>10.2e}  {'PASS' if ok else 'FAIL'}"
                 f"  ({time.perf_counter() - t0:.1f} s)")
            failed += not ok
        except Exception as e:  # noqa: BLE001 - a failing kernel is a row of the table, not the end
            failed += 1
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
            emit(f"{name:<55} {'-':>10} {'-':>10}  FAIL  {type(e).__name__}: {first}")
            if not _context_usable(device):
                if i + 1 < len(all_checks):
                    emit(f"(the CUDA context is unusable after '{name}'; the remaining checks run in a new process)")
                    if table:
                        table.close()
                    sys.stdout.flush()
                    cmd = [sys.executable, "-P", os.path.abspath(__file__), "--device", device, "--start", str(i + 1),
                           "--failed", str(failed)] + (["--table", args.table] if args.table else []) + \
                        (["--no-triton"] if args.no_triton else [])
                    os.execv(sys.executable, cmd)
                break
    emit(f"smoke: {len(all_checks) - failed} of {len(all_checks)} checks passed")
    if table:
        table.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
