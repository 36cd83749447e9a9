"""IDX files for tests: written by the tests themselves, or Debian's Fashion-MNIST when installed."""
import gzip
import struct
from pathlib import Path

import torch

from lenet_fast import data

SYSTEM = Path(data.DATASETS["fashion-mnist"].system_dir)
HAVE_REAL = all((SYSTEM / f"{n}.gz").exists() or (SYSTEM / n).exists() for pair in data.FILES.values() for n in pair)


def idx_bytes(t: torch.Tensor) -> bytes:
    t = t.to(torch.uint8).contiguous()
    return struct.pack(">BBBB", 0, 0, 0x08, t.dim()) + struct.pack(f">{t.dim()}I", *t.shape) + t.numpy().tobytes()


def write_idx(path: Path, t: torch.Tensor, gz: bool = False) -> Path:
    raw = idx_bytes(t)
    path = Path(f"{path}.gz") if gz else Path(path)
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def synthetic(n: int, seed: int = 0):
    """Learnable 28x28 images: class c brightens a band of rows around 2c+4, plus noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    images = torch.randint(0, 90, (n, 28, 28), generator=g)
    for c in range(10):
        images[labels == c, 2 * c + 4: 2 * c + 8, 4:24] += 150
    return images.clamp(0, 255).to(torch.uint8), labels.to(torch.uint8)


def write_dataset(directory: Path, n_train: int = 600, n_test: int = 300, gz: bool = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
        images, labels = synthetic(n, seed)
        img_name, lbl_name = data.FILES[split]
        write_idx(directory / img_name, images, gz)
        write_idx(directory / lbl_name, labels, gz)
    return directory
