"""Train and evaluate LeNet-5 on Fashion-MNIST, as the reference tutorial does, on lenet_fast.

    python -m lenet_fast.train                                 # the tutorial's recipe, best device
    python -m lenet_fast.train --impl torch --loader torchvision   # the tutorial's own pipeline
    python -m lenet_fast.train --save ckpt.pt                  # checkpoint after every epoch
    python -m lenet_fast.train --resume ckpt.pt --epochs 20    # continue where it stopped
    python -m lenet_fast.train --evaluate ckpt.pt --confusion confusion.png
    python -m lenet_fast.train --activation relu --pooling max   # a variant (tutorial sections 5.2, 7)
    torchrun --nproc-per-node 2 -m lenet_fast.train            # data-parallel (DDP): gloo / NCCL

The recipe (defaults): images scaled to [-1, 1] ((x/255 - 0.5)/0.5), batches of 64 shuffled each
epoch, Adam with lr 1e-3, cross-entropy, 10 epochs, then accuracy on the 10,000 test images.

--impl lenet_fast (default) uses lenet_fast.LeNet5; --impl torch the stock nn-module LeNet-5.
--loader fast (default) keeps the dataset on the device as uint8 and gathers + normalises each
batch in one op; --loader torchvision is the tutorial's DataLoader (PIL image -> ToTensor ->
Normalize per sample). Both read the same files, shuffle from the same seed and feed the model
bit-identical pixels, so the two speed-ups can be measured separately inside one program. Every
combination builds its optimizer the same way (torch's fused implementation where it has one).

--activation (tanh, relu, leaky_relu with --negative-slope, sigmoid) and --pooling (avg, max) pick
the network's variant, for either --impl; a checkpoint records its variant, and --resume and
--evaluate use it unless told otherwise.

Under torchrun (WORLD_SIZE > 1) the run is data-parallel with DistributedDataParallel: gloo on CPUs,
NCCL on GPUs (rank i on cuda:LOCAL_RANK). --batch-size stays the global batch: every rank draws the
same seeded permutation and takes its own contiguous part of each batch (each image once per epoch
across the ranks), and each rank's loss is its share of the global batch's mean, so the gradients
are the single-process run's to float32 rounding. Only rank 0 prints, evaluates and writes
checkpoints and metrics; checkpoints hold the plain model, so a distributed run resumes in a single
process and the other way round. A rank that fails ends the run: its error is printed with its
rank, torchrun stops the others, and --dist-timeout bounds any wait on a rank that went silent.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

import lenet_fast
from lenet_fast import LeNet5, TorchLeNet5, data, variants

CHECKPOINT_FORMAT = 1


# ------------------------------------------------------------------------------ pieces

@dataclass(frozen=True)
class Dist:
    """This process's place in a data-parallel run (rank 0 of 1 without one)."""
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def main(self) -> bool:
        return self.rank == 0


def dist_from_env() -> Dist:
    """The torchrun environment (WORLD_SIZE, RANK, LOCAL_RANK), or a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    return Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def init_distributed(d: Dist, device: torch.device, timeout_s: float) -> Dist:
    """Joins the process group: NCCL for CUDA devices, gloo for the CPU."""
    import torch.distributed as dist

    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s),
                            **({"device_id": device} if device.type == "cuda" else {}))
    return Dist(d.rank, d.world, d.local_rank, backend)


def _fail_point(d: Dist, step: int) -> None:
    """LENET_FAST_FAIL_AT="rank:step" makes that rank raise at that training step (0-based, counted
    over the run): how the tests check that a failing rank ends the run instead of hanging it."""
    spec = os.environ.get("LENET_FAST_FAIL_AT")
    if spec and spec == f"{d.rank}:{step}":
        raise RuntimeError(f"LENET_FAST_FAIL_AT={spec}: failing rank {d.rank} at step {step} on purpose")


def pick_device(name: str, impl: str, d: Dist = Dist()) -> torch.device:
    """The device by name; under torchrun "auto" and "cuda" mean this rank's GPU, cuda:LOCAL_RANK."""
    if name == "auto":
        usable = lenet_fast.cuda_available() if impl == "lenet_fast" else torch.cuda.is_available()
        name = "cuda" if usable else "cpu"
    if name == "cuda" and d.world > 1:
        name = f"cuda:{d.local_rank}"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit(f"train: --device {name}: no CUDA GPU is visible to torch")
        if impl == "lenet_fast" and not lenet_fast.cuda_available():
            raise SystemExit(f"train: --device {name}: this lenet_fast build has no CUDA kernels "
                             "(python -m lenet_fast.info says why); use --device cpu or --impl torch")
    return device


def build_model(impl: str, device: torch.device, seed: int, activation: str = variants.DEFAULT_ACTIVATION,
                pooling: str = variants.DEFAULT_POOLING,
                negative_slope: float = variants.DEFAULT_NEGATIVE_SLOPE) -> torch.nn.Module:
    """The model, initialised from `seed`: both impls start from identical weights."""
    torch.manual_seed(seed)
    variant = dict(activation=activation, pooling=pooling, negative_slope=negative_slope)
    model = LeNet5(**variant) if impl == "lenet_fast" else TorchLeNet5(**variant)
    return model.to(device)


VARIANT_DEFAULTS = variants.DEFAULTS


def resolve_variant(args, checkpoint_args: dict | None = None) -> None:
    """Fills the variant arguments left unset: from the checkpoint being resumed or evaluated if it
    records them, else the tutorial's network."""
    for key, default in VARIANT_DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, (checkpoint_args or {}).get(key, default))


def variant_of(args) -> dict:
    return {key: getattr(args, key) for key in VARIANT_DEFAULTS}


def build_optimizer(args, params, device: torch.device | None = None) -> torch.optim.Optimizer:
    """torch's fused implementation where it has one; on CUDA also capturable (its step counter on
    the device), so that a CUDA graph can hold it -- eager and graphed runs use the same optimizer."""
    params = list(params)
    capturable = {"capturable": True} if device is not None and device.type == "cuda" and args.optimizer != "sgd" else {}
    if args.optimizer == "adam":
        make = lambda **kw: torch.optim.Adam(params, lr=args.lr, weight_decay=args.weight_decay or 0.0, **capturable, **kw)
    elif args.optimizer == "adamw":
        wd = 0.01 if args.weight_decay is None else args.weight_decay  # AdamW's own default
        make = lambda **kw: torch.optim.AdamW(params, lr=args.lr, weight_decay=wd, **capturable, **kw)
    else:
        make = lambda **kw: torch.optim.SGD(params, lr=args.lr, momentum=args.momentum,
                                            weight_decay=args.weight_decay or 0.0, **kw)
    try:  # one kernel for all parameters instead of a Python loop over them
        return make(fused=True)
    except (RuntimeError, ValueError, TypeError):
        return make()


class TorchvisionLoader:
    """The tutorial's DataLoader, with the state_dict/load_state_dict of DeviceLoader (its
    shuffling generator), moving each batch to the device as the tutorial does."""

    def __init__(self, args, split, batch_size, shuffle, device):
        limit = args.train_limit if split == "train" else args.test_limit
        self.loader = data.torchvision_loader(args.dataset, split, batch_size, shuffle, args.seed, args.data_dir,
                                              args.workers, limit)
        self.device = device

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for x, y in self.loader:
            yield x.to(self.device), y.to(self.device)

    def state_dict(self):
        return {"generator": self.loader.generator.get_state()}

    def load_state_dict(self, state):
        self.loader.generator.set_state(state["generator"])


def make_loader(args, split, batch_size, shuffle, device, d: Dist = Dist()):
    if args.loader == "torchvision":
        return TorchvisionLoader(args, split, batch_size, shuffle, device)
    images, labels = load_split(args, split)
    return data.DeviceLoader(images, labels, batch_size, shuffle, seed=args.seed, device=device,
                             shard=(d.rank, d.world) if split == "train" else (0, 1))


def load_split(args, split):
    try:
        images, labels = data.load(args.dataset, split, args.data_dir)
    except data.DatasetNotFound:
        if not args.download:
            raise
        data.download(args.dataset, args.data_dir)
        images, labels = data.load(args.dataset, split, args.data_dir)
    limit = args.train_limit if split == "train" else args.test_limit
    return (images[:limit], labels[:limit]) if limit else (images, labels)


def _progress(total, desc, enabled):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, leave=False, unit="batch", dynamic_ncols=True)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_epoch(model, loader, optimizer, device, desc="", progress=True, d: Dist = Dist(), first_step=0) -> dict:
    """One pass over `loader`; loss is the mean of the batch losses (as the tutorial prints it).

    Data-parallel (d.world > 1): each rank's loss is the sum over its part of the batch divided by
    the global batch's size, times the world size that DistributedDataParallel's averaging divides
    by, so every step's gradient is the global batch's mean, as in one process; the epoch's loss and
    accuracy are summed over the ranks at the end (one all_reduce)."""
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    sizes = loader.global_batch_sizes() if d.world > 1 else None
    bar = _progress(len(loader), desc, progress)
    _sync(device)
    t0 = time.perf_counter()
    for step, (x, y) in enumerate(loader):
        _fail_point(d, first_step + step)
        logits = model(x)
        if sizes is None:
            loss = F.cross_entropy(logits, y)
        else:
            loss = F.cross_entropy(logits, y, reduction="sum") * (d.world / sizes[step])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        # Accumulated on the device: no host round trip per step.
        loss_sum += loss.detach() / d.world
        correct += (logits.detach().argmax(1) == y).sum()
        seen += len(y)
        if bar is not None:
            bar.update()
    if d.world > 1:
        import torch.distributed as dist

        totals = torch.stack([loss_sum.double(), correct.double()])
        dist.all_reduce(totals)
        loss_sum, correct, seen = totals[0], totals[1], sum(sizes)
    _sync(device)
    seconds = time.perf_counter() - t0
    if bar is not None:
        bar.close()
    return {"loss": loss_sum.item() / max(len(loader), 1), "train_accuracy": correct.item() / max(seen, 1),
            "seconds": seconds, "images_per_second": seen / seconds if seconds > 0 else float("nan")}


@torch.inference_mode()
def evaluate(model, loader, num_classes=10) -> dict:
    """Accuracy, mean loss and the confusion matrix (rows: true class, columns: predicted)."""
    model.eval()
    device = loader.device
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)
    loss_sum = torch.zeros((), device=device)
    n = 0
    for x, y in _eval_batches(model, loader):
        logits = model.forward_uint8(x, loader.mean, loader.std) if x.dtype == torch.uint8 else model(x)
        loss_sum += F.cross_entropy(logits, y, reduction="sum")
        confusion += torch.bincount(y * num_classes + logits.argmax(1), minlength=num_classes * num_classes)
        n += len(y)
    confusion = confusion.view(num_classes, num_classes).cpu()
    return {"test_accuracy": confusion.diag().sum().item() / max(n, 1), "test_loss": loss_sum.item() / max(n, 1),
            "test_images": n, "confusion": confusion.tolist()}


def _eval_batches(model, loader):
    """The device-resident test set for lenet_fast's model: uint8 slices that its forward_uint8
    normalises inside (one kernel a batch on CUDA); otherwise the loader's normalised batches."""
    if isinstance(model, LeNet5) and isinstance(loader, data.DeviceLoader) and not loader.shuffle:
        for start in range(0, len(loader.labels), loader.batch_size):
            yield loader.images[start:start + loader.batch_size], loader.labels[start:start + loader.batch_size]
    else:
        yield from loader


def save_checkpoint(path, model, optimizer, loader, epoch, args, history):
    """Everything a resumed run needs, written atomically (a temporary file, then a rename)."""
    state = {
        "format": CHECKPOINT_FORMAT,
        "model": model.state_dict(),  # loads with strict=True into the stock LeNet-5 too
        "optimizer": optimizer.state_dict(),
        "epoch": epoch,  # epochs completed
        "rng": {"torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "loader": loader.state_dict()},
        "args": {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool, type(None)))},
        "history": history,
    }
    _write_atomically(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain data only
    except FileNotFoundError:
        raise SystemExit(f"train: checkpoint {path} does not exist") from None
    except Exception as e:  # a truncated or foreign file
        raise SystemExit(f"train: {path} is not a readable checkpoint ({type(e).__name__}: {e})") from None
    if isinstance(state, dict) and "model" not in state and all(isinstance(v, torch.Tensor) for v in state.values()):
        state = {"model": state}  # a bare state_dict (e.g. saved from the stock model)
    if not isinstance(state, dict) or "model" not in state:
        raise SystemExit(f"train: {path} holds neither a lenet_fast checkpoint nor a state_dict")
    return state


def plot_confusion(confusion, classes, path, title):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("train: matplotlib is not installed; no confusion-matrix plot (pip install matplotlib)", file=sys.stderr)
        return
    c = torch.tensor(confusion, dtype=torch.float64)
    frac = c / c.sum(1, keepdim=True).clamp(min=1)
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    im = ax.imshow(frac.numpy(), cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            if c[i, j]:
                ax.text(j, i, int(c[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if frac[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, label="fraction of the true class")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _write_atomically(path, write):
    """write(tmp) to a temporary file beside `path`, then rename it over `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


def write_json(path, obj):
    _write_atomically(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=1)))


def _report_evaluation(args, model, device, t_start, extra):
    loader = make_loader(args, "test", args.eval_batch_size, False, device)
    result = evaluate(model, loader, len(data.DATASETS[args.dataset].classes))
    classes = data.DATASETS[args.dataset].classes
    conf = torch.tensor(result["confusion"])
    per_class = (conf.diag() / conf.sum(1).clamp(min=1)).tolist()
    result["per_class_accuracy"] = dict(zip(classes, per_class))
    if args.confusion:
        plot_confusion(result["confusion"], classes, args.confusion,
                       f"{args.dataset} test set: {100 * result['test_accuracy']:.2f}% correct")
    total = time.perf_counter() - t_start
    metrics = {**extra, "test_accuracy": result["test_accuracy"], "test_loss": result["test_loss"],
               "test_images": result["test_images"], "total_seconds": total,
               "per_class_accuracy": result["per_class_accuracy"], "confusion": result["confusion"],
               "device": str(device), "impl": args.impl, "loader": args.loader, "dataset": args.dataset,
               **variant_of(args),
               "torch": torch.__version__, "lenet_fast": lenet_fast.build_info()["version"],
               "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    return metrics


# -------------------------------------------------------------------------------- main

def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m lenet_fast.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=10, help="total epochs (a resumed run continues up to this)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--eval-batch-size", type=int, default=1000)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--optimizer", choices=("adam", "adamw", "sgd"), default="adam")
    p.add_argument("--momentum", type=float, default=0.9, help="sgd only")
    p.add_argument("--weight-decay", type=float, default=None, help="default 0 (adamw: 0.01)")
    p.add_argument("--device", default="auto", help="auto (CUDA when lenet_fast can use it), cpu, cuda, cuda:1, ...")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dataset", choices=tuple(data.DATASETS), default="fashion-mnist")
    p.add_argument("--data-dir", help=f"directory of the IDX files (also ${data.ENV_DIR}; see lenet_fast.data)")
    p.add_argument("--download", action="store_true", help="fetch the dataset through torchvision if it is not found")
    p.add_argument("--impl", choices=("lenet_fast", "torch"), default="lenet_fast")
    p.add_argument("--activation", choices=variants.ACTIVATIONS,
                   help=f"after every hidden layer (default: the checkpoint's, else {variants.DEFAULT_ACTIVATION}, "
                        "the tutorial's)")
    p.add_argument("--pooling", choices=variants.POOLINGS,
                   help=f"2x2 pooling (default: the checkpoint's, else {variants.DEFAULT_POOLING})")
    p.add_argument("--negative-slope", type=float, help="leaky_relu's slope, >= 0 (default: the checkpoint's, else "
                                                        f"{variants.DEFAULT_NEGATIVE_SLOPE})")
    p.add_argument("--loader", choices=("fast", "torchvision"), default="fast")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers for --loader torchvision (tutorial: 0)")
    p.add_argument("--train-limit", type=int, default=None, help="use only the first N training images")
    p.add_argument("--test-limit", type=int, default=None, help="use only the first N test images")
    p.add_argument("--save", help="write a checkpoint here after every epoch")
    p.add_argument("--resume", help="continue from this checkpoint")
    p.add_argument("--evaluate", metavar="CHECKPOINT", help="only score this checkpoint on the test set")
    p.add_argument("--confusion", metavar="PNG", help="write the test confusion matrix as a PNG")
    p.add_argument("--metrics-json", metavar="PATH", help="write the run's metrics here")
    p.add_argument("--no-cuda-graph", action="store_true",
                   help="on CUDA with --loader fast, run each training step eagerly instead of replaying a "
                        "captured CUDA graph of it")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bars (they are shown only on a terminal anyway)")
    p.add_argument("--dist-timeout", type=float, default=300.0,
                   help="under torchrun: seconds a rank waits for the others before the run fails (default 300)")
    args = p.parse_args(argv)
    for name in ("epochs", "batch_size", "eval_batch_size"):
        if getattr(args, name) < (0 if name == "epochs" else 1):
            p.error(f"--{name.replace('_', '-')} must be at least {0 if name == 'epochs' else 1}")
    if args.lr <= 0:
        p.error("--lr must be positive")
    if args.negative_slope is not None and not 0 <= args.negative_slope < float("inf"):
        p.error("--negative-slope must be finite and >= 0")
    return args


def main(argv=None) -> dict | None:
    """Trains (or evaluates) as the arguments say; returns the metrics (None on ranks other than 0
    of a data-parallel run)."""
    d = dist_from_env()
    if d.world == 1:
        return _main(argv, d)
    try:
        result = _main(argv, d)
        import torch.distributed as dist

        # Every rank done before any tears the group down: a rank that destroys its gloo group while
        # a peer still talks to it can abort at exit ("terminate called without an active
        # exception"). Only on success: a failed rank never arrives.
        if dist.is_available() and dist.is_initialized():
            dist.barrier()
        return result
    except BaseException as e:  # name the rank: torchrun's own report of a child's failure is long
        if not isinstance(e, SystemExit) or e.code not in (0, None):
            print(f"lenet_fast.train: rank {d.rank} of {d.world} failed: {type(e).__name__}: {e}",
                  file=sys.stderr, flush=True)
        raise
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def _main(argv, d: Dist) -> dict | None:
    t_start = time.perf_counter()
    args = parse_args(argv)
    device, d = _setup(args, d)
    if args.evaluate:
        return _evaluate_checkpoint(args, device, t_start)
    model, optimizer, loader, start_epoch, history = _prepare_training(args, device, d)
    train_seconds = _train_epochs(args, model, optimizer, loader, device, d, start_epoch, history)
    if not d.main:
        return None
    return _report_training(args, model, loader, device, d, t_start, start_epoch, history, train_seconds)


def _say(d: Dist, *a, **k) -> None:
    if d.main:
        print(*a, **k)


def _setup(args, d: Dist) -> tuple[torch.device, Dist]:
    """This process's device and, under torchrun, its place in the joined process group."""
    device = pick_device(args.device, args.impl, d)
    if d.world > 1:
        if args.evaluate:
            raise SystemExit("train: --evaluate runs in one process; start it without torchrun")
        if args.loader != "fast":
            raise SystemExit("train: a data-parallel run uses --loader fast (each rank slices the one seeded "
                             "permutation); --loader torchvision is single-process")
        d = init_distributed(d, device, args.dist_timeout)
    return device, d


def _evaluate_checkpoint(args, device, t_start) -> dict:
    """--evaluate: the checkpoint's test-set scores, printed per class."""
    state = load_checkpoint(args.evaluate)
    resolve_variant(args, state.get("args"))
    model = build_model(args.impl, device, args.seed, **variant_of(args))
    model.load_state_dict(state["model"])
    m = _report_evaluation(args, model, device, t_start, {"checkpoint": str(args.evaluate),
                                                           "epochs": state.get("epoch")})
    print(f"{args.evaluate}: test accuracy {100 * m['test_accuracy']:.2f}% on {m['test_images']} images "
          f"(loss {m['test_loss']:.4f})")
    for name, acc in m["per_class_accuracy"].items():
        print(f"  {name:<12} {100 * acc:6.2f}%")
    if args.metrics_json:
        write_json(args.metrics_json, m)
    return m


def _prepare_training(args, device, d: Dist):
    """(model, optimizer, training loader, epochs already done, their history), resumed from
    --resume when given."""
    state = load_checkpoint(args.resume) if args.resume else None
    resolve_variant(args, state.get("args") if state else None)
    _announce(args, device, d)
    model = build_model(args.impl, device, args.seed, **variant_of(args))
    optimizer = build_optimizer(args, model.parameters(), device)
    loader = make_loader(args, "train", args.batch_size, True, device, d)
    start_epoch, history = _resume(args, state, model, optimizer, loader, d) if args.resume else (0, [])
    return model, optimizer, loader, start_epoch, history


def _announce(args, device, d: Dist) -> None:
    described = "" if variant_of(args) == VARIANT_DEFAULTS else (
        f", {args.activation}" + (f"({args.negative_slope})" if args.activation == "leaky_relu" else "")
        + f" + {args.pooling} pooling")
    parallel = f", {d.world} ranks ({d.backend})" if d.world > 1 else ""
    _say(d, f"lenet_fast.train: {args.dataset}, impl {args.impl}{described}, loader {args.loader}, device {device}"
         f"{parallel}, {args.optimizer} lr {args.lr}, batch {args.batch_size}, seed {args.seed}", flush=True)


def _resume(args, state, model, optimizer, loader, d: Dist) -> tuple[int, list]:
    """Loads the checkpoint's weights, optimizer, RNG and loader states; returns (epochs done, history)."""
    if "optimizer" not in state or "rng" not in state:
        raise SystemExit(f"train: {args.resume} has weights only; --resume needs a checkpoint written by --save")
    old = state.get("args", {})
    for key in ("dataset", "batch_size", "optimizer", "lr", "seed", "loader", *VARIANT_DEFAULTS):
        if key in old and old[key] != getattr(args, key) and d.main:
            print(f"train: note: --{key.replace('_', '-')} is {getattr(args, key)!r} now, "
                  f"{old[key]!r} in the checkpoint", file=sys.stderr)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"]["torch"])
    if state["rng"].get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    loader.load_state_dict(state["rng"]["loader"])
    start_epoch, history = state["epoch"], list(state.get("history", []))
    _say(d, f"resumed from {args.resume} after epoch {start_epoch}")
    return start_epoch, history


def _train_epochs(args, model, optimizer, loader, device, d: Dist, start_epoch, history) -> float:
    """The epochs from start_epoch to --epochs, each appended to `history` and checkpointed
    (--save); returns the seconds spent training."""
    plain = model  # what checkpoints hold: the module itself, not its DDP wrapper
    if d.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    graphed = None
    if device.type == "cuda" and isinstance(loader, data.DeviceLoader) and not args.no_cuda_graph \
            and start_epoch < args.epochs and d.world == 1:  # (data-parallel steps run eagerly)
        from .graphs import GraphedSteps

        graphed = GraphedSteps(model, optimizer, loader)  # captured once, replayed every step
    progress = not args.no_progress and sys.stderr.isatty() and d.main
    train_seconds = 0.0
    for epoch in range(start_epoch, args.epochs):
        desc = f"epoch {epoch + 1}/{args.epochs}"
        if graphed is not None:
            bar = _progress(len(loader), desc, progress)
            stats = graphed.epoch(bar)
            if bar is not None:
                bar.close()
        else:
            stats = train_epoch(model, loader, optimizer, device, desc, progress, d, epoch * len(loader))
        stats["epoch"] = epoch + 1
        history.append(stats)
        train_seconds += stats["seconds"]
        _say(d, f"epoch {epoch + 1:>3}/{args.epochs}  loss {stats['loss']:.4f}  train acc "
             f"{100 * stats['train_accuracy']:6.2f}%  {stats['seconds']:7.2f} s  "
             f"{stats['images_per_second']:>9,.0f} img/s", flush=True)
        if args.save and d.main:
            save_checkpoint(args.save, plain, optimizer, loader, epoch + 1, args, history)
    return train_seconds


def _report_training(args, model, loader, device, d: Dist, t_start, start_epoch, history, train_seconds) -> dict:
    """The trained model's test-set scores and the run's figures: printed, and --metrics-json."""
    n_train = len(loader.labels) if hasattr(loader, "labels") else len(loader.loader.dataset)
    epochs_run = args.epochs - start_epoch
    m = _report_evaluation(args, model, device, t_start, {
        "epochs": args.epochs, "epochs_this_run": epochs_run, "train_seconds": train_seconds,
        "images_per_second": n_train * epochs_run / train_seconds if train_seconds else None})
    m.update(batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr, seed=args.seed,
             train_images=n_train, history=history, resumed_from=args.resume, world_size=d.world,
             backend=d.backend)
    print(f"test accuracy {100 * m['test_accuracy']:.2f}%  ({m['test_images']} images)   "
          f"training {train_seconds:.2f} s, total {m['total_seconds']:.2f} s", flush=True)
    if args.metrics_json:
        write_json(args.metrics_json, m)
    return m


if __name__ == "__main__":
    try:
        main()
    except (data.DatasetNotFound, data.IDXError) as e:  # the message says it all; no traceback
        sys.exit(f"lenet_fast.train: {e}")
