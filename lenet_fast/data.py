"""Fashion-MNIST / MNIST for training: the IDX reader, where the files are looked for, and a loader
that keeps the whole dataset on the training device.

    images, labels = load("fashion-mnist", "train")           # uint8 (60000, 28, 28), int64 (60000,)
    loader = DeviceLoader(images, labels, batch_size=64, shuffle=True, seed=0, device="cpu")
    for x, y in loader: ...                                   # x float32 (64, 1, 28, 28) in [-1, 1]

Where the files are looked for, in order (the first directory holding all four files wins; each
file may be raw or gzipped):
    1. the `data_dir` argument (`--data-dir`): the directory itself, then its torchvision layout
       <data_dir>/FashionMNIST/raw (or MNIST/raw);
    2. $LENET_FAST_DATA_DIR, the same two ways;
    3. torchvision's layout under the tutorial's root, ./data/FashionMNIST/raw;
    4. /usr/share/datasets/fashion-mnist (Debian: apt-get install dataset-fashion-mnist).
"""
from __future__ import annotations

import gzip
import hashlib
import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from . import ops

ENV_DIR = "LENET_FAST_DATA_DIR"


@dataclass(frozen=True)
class DatasetInfo:
    torchvision_name: str  # torchvision's class and folder name
    system_dir: str | None  # where a distribution package installs the files
    classes: tuple


DATASETS = {
    "fashion-mnist": DatasetInfo(
        "FashionMNIST", "/usr/share/datasets/fashion-mnist",
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")),
    "mnist": DatasetInfo("MNIST", None, tuple(str(d) for d in range(10))),
}
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_DTYPES = {0x08: (torch.uint8, 1)}  # IDX type code -> (dtype, bytes); the MNIST family is uint8


class DatasetNotFound(FileNotFoundError):
    """No directory holds the dataset's files; the message lists where it looked."""


class IDXError(ValueError):
    """A file is not a valid IDX file of the expected shape; the message names the file."""


# ------------------------------------------------------------------------------------ IDX

def _read_bytes(path: Path) -> bytes:
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":  # gzip, whatever the name says
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise IDXError(f"{path}: not a readable gzip file ({e}); the download may be truncated") from None
    return raw


def read_idx(path: str | os.PathLike) -> Tensor:
    """Reads one IDX file (raw or gzipped) into a uint8 tensor of the shape its header gives."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise IDXError(f"{path}: not an IDX file (bad magic number {data[:4].hex() or 'empty file'}; "
                       "expected 0000 followed by a type code and the number of dimensions)")
    code, ndim = data[2], data[3]
    if code not in _DTYPES:
        raise IDXError(f"{path}: IDX type code 0x{code:02x} is not supported (expected 0x08, unsigned bytes)")
    if ndim == 0 or len(data) < 4 + 4 * ndim:
        raise IDXError(f"{path}: truncated IDX header ({ndim} dimensions, {len(data)} bytes)")
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    dtype, size = _DTYPES[code]
    want = math.prod(dims) * size
    body = len(data) - 4 - 4 * ndim
    if body != want:
        raise IDXError(f"{path}: the header says {' x '.join(map(str, dims))} = {want} bytes of data, the file "
                       f"holds {body} ({'truncated' if body < want else 'trailing bytes'})")
    return torch.frombuffer(bytearray(data[4 + 4 * ndim:]), dtype=dtype).reshape(dims)


def _find_file(directory: Path, name: str) -> Path | None:
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def candidate_dirs(dataset: str, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The directories searched for `dataset`, in order."""
    info = DATASETS[dataset]
    dirs = []
    for root in (data_dir, os.environ.get(ENV_DIR)):
        if root:
            dirs += [Path(root), Path(root) / info.torchvision_name / "raw"]
    dirs.append(Path("data") / info.torchvision_name / "raw")
    if info.system_dir:
        dirs.append(Path(info.system_dir))
    return dirs


def find(dataset: str, split: str, data_dir=None) -> tuple[Path, Path]:
    """(images file, labels file) of one split, from the first directory that has both."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    names = FILES[split]
    for d in candidate_dirs(dataset, data_dir):
        found = [_find_file(d, n) for n in names]
        if all(found):
            return found[0], found[1]
    looked = "\n".join(f"  {d}" for d in candidate_dirs(dataset, data_dir))
    how = ("apt-get install dataset-fashion-mnist (Debian), " if DATASETS[dataset].system_dir else "")
    raise DatasetNotFound(
        f"{dataset} {split} files ({' and '.join(names)}, raw or .gz) were not found. Looked in:\n{looked}\n"
        f"Get them with: {how}--download (through torchvision, needs a network), or put the IDX files in a "
        f"directory and pass --data-dir DIR or set {ENV_DIR}=DIR.")


def load(dataset: str = "fashion-mnist", split: str = "train", data_dir=None) -> tuple[Tensor, Tensor]:
    """uint8 images (N, 28, 28) and int64 labels (N,) of one split, checked against each other."""
    img_path, lbl_path = find(dataset, split, data_dir)
    images, labels = read_idx(img_path), read_idx(lbl_path)
    if images.dim() != 3 or images.shape[1:] != (28, 28):
        raise IDXError(f"{img_path}: expected images of shape (N, 28, 28), got {tuple(images.shape)}")
    if labels.dim() != 1:
        raise IDXError(f"{lbl_path}: expected a 1-D label file, got shape {tuple(labels.shape)}")
    if labels.shape[0] != images.shape[0]:
        raise IDXError(f"{lbl_path}: {labels.shape[0]} labels for {images.shape[0]} images in {img_path}")
    classes = len(DATASETS[dataset].classes)
    if labels.numel() and int(labels.max()) >= classes:
        raise IDXError(f"{lbl_path}: label {int(labels.max())} is out of range for {classes} classes")
    return images, labels.long()


def download(dataset: str, data_dir=None) -> Path:
    """Fetches the dataset through torchvision into <data_dir or ./data>/<Name>/raw."""
    import torchvision

    root = Path(data_dir or "data")
    cls = getattr(torchvision.datasets, DATASETS[dataset].torchvision_name)
    try:
        for train in (True, False):
            cls(root=str(root), train=train, download=True)
    except Exception as e:  # offline, blocked, or a partial download
        raise DatasetNotFound(f"downloading {dataset} into {root} through torchvision failed "
                              f"({type(e).__name__}: {e}); without a network, put the IDX files in a "
                              f"directory and pass --data-dir DIR") from e
    return root / DATASETS[dataset].torchvision_name / "raw"


# ---------------------------------------------------------------------------------- loader

class DeviceLoader:
    """Batches of a uint8 dataset kept whole on `device`.

    Each epoch draws a fresh permutation on the device from a seeded generator (so a run is
    reproducible, and resumable through `state_dict`; on the CPU it is the very order torch's
    DataLoader draws from the same seed), and each batch is gathered and normalised
    by one op (lenet_fast.ops.gather_normalize: bit for bit torchvision's ToTensor + Normalize).
    No per-sample Python work, no host-to-device copies after the first.
    """

    def __init__(self, images: Tensor, labels: Tensor, batch_size: int, shuffle: bool, seed: int = 0,
                 device: str | torch.device = "cpu", mean: float = 0.5, std: float = 0.5,
                 shard: tuple[int, int] = (0, 1)):
        """shard = (rank, world): for data-parallel training, yield only this rank's part of each
        batch. Every rank draws the same permutation (same seed), and batch b's images
        order[b B : (b + 1) B] are cut into `world` contiguous parts as evenly as they go (the
        first len % world parts one longer); rank r takes part r. So each image is seen once per
        epoch across the ranks, and batch_size is the global batch."""
        if batch_size < 1:
            raise ValueError(f"DeviceLoader: batch_size must be at least 1, got {batch_size}")
        rank, world = shard
        if not 0 <= rank < world:
            raise ValueError(f"DeviceLoader: shard must be (rank, world) with 0 <= rank < world, got {shard}")
        self.shard = (rank, world)
        self.device = torch.device(device)
        self.images = images.to(self.device).unsqueeze(1).contiguous()  # (N, 1, 28, 28) uint8
        self.labels = labels.to(self.device)
        self.batch_size, self.shuffle, self.mean, self.std = batch_size, shuffle, mean, std
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        self._order = torch.arange(len(self.labels), device=self.device)

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def _permutation(self, n: int) -> Tensor:
        g = self.generator
        if self.device.type != "cpu":
            return torch.randperm(n, device=self.device, generator=g)
        # On the CPU, draw exactly what torch's DataLoader(shuffle=True, generator=g) draws per
        # epoch (its iterator's base seed, its sampler's permutation, and the empty remainder
        # permutation the sampler computes when exhausted), so --loader fast and --loader
        # torchvision visit the images in the same order from the same seed.
        torch.empty((), dtype=torch.int64).random_(generator=g)
        order = torch.randperm(n, generator=g)
        torch.randperm(n, generator=g)
        return order

    def epoch_order(self) -> Tensor:
        """The sample order of the next epoch (drawing it advances the generator, as iterating does)."""
        return self._permutation(len(self.labels)) if self.shuffle else self._order

    def global_batch_sizes(self) -> list[int]:
        """The size of every batch of an epoch across all shards (the last may be short)."""
        n = len(self.labels)
        return [min(self.batch_size, n - start) for start in range(0, n, self.batch_size)]

    def __iter__(self):
        n = len(self.labels)
        order = self.epoch_order()
        rank, world = self.shard
        for start in range(0, n, self.batch_size):
            idx = order[start:start + self.batch_size]
            if world > 1:
                size, extra = divmod(len(idx), world)
                lo = rank * size + min(rank, extra)
                idx = idx[lo:lo + size + (rank < extra)]
            yield ops.gather_normalize(self.images, idx, self.mean, self.std), self.labels.index_select(0, idx)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


def torchvision_loader(dataset: str, split: str, batch_size: int, shuffle: bool, seed: int, data_dir=None,
                       workers: int = 0, limit: int | None = None):
    """The tutorial's own pipeline: a torchvision dataset (PIL image -> ToTensor -> Normalize, one
    sample at a time) in a DataLoader, read from the same files as the fast loader (only the
    first `limit` samples, if given)."""
    import torchvision
    from torch.utils.data import DataLoader
    from torchvision import transforms

    root = _torchvision_root(dataset, data_dir)
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
    cls = getattr(torchvision.datasets, DATASETS[dataset].torchvision_name)
    ds = cls(root=str(root), train=split == "train", download=False, transform=transform)
    if limit:
        ds = torch.utils.data.Subset(ds, range(min(limit, len(ds))))
    g = torch.Generator()
    g.manual_seed(seed)
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=g, num_workers=workers)


def _torchvision_root(dataset: str, data_dir=None) -> Path:
    """A root that torchvision can read: the files' own if they are already in its layout (raw,
    uncompressed), else a cache folder of uncompressed copies (torchvision reads raw files only)."""
    info = DATASETS[dataset]
    paths = [p for split in FILES for p in find(dataset, split, data_dir)]
    if all(p.parent.name == "raw" and p.parent.parent.name == info.torchvision_name and p.suffix != ".gz" for p in paths):
        return paths[0].parent.parent.parent
    # One cache folder per set of source files (path, size, time), so that no other source's
    # copies are ever picked up.
    key = hashlib.sha1(repr([(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in paths]).encode())
    cache = (Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lenet_fast" / "torchvision"
             / key.hexdigest()[:16])
    raw = cache / info.torchvision_name / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for p in paths:
        dest = raw / p.name.removesuffix(".gz")
        if not dest.exists():
            tmp = dest.with_suffix(".tmp")
            tmp.write_bytes(_read_bytes(p))
            os.replace(tmp, dest)
    return cache
