"""lenet_fast.data: the IDX reader, where datasets are looked for, gather_normalize and the
on-device loader (against torchvision's transform and torch's DataLoader)."""
import gzip
import os

import pytest
import torch

from lenet_fast import data, ops
from datasets import idx_bytes, synthetic, write_dataset, write_idx


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_read_idx_round_trip(tmp_path, gz):
    images, labels = synthetic(37)
    torch.testing.assert_close(data.read_idx(write_idx(tmp_path / "img", images, gz)), images, rtol=0, atol=0)
    torch.testing.assert_close(data.read_idx(write_idx(tmp_path / "lbl", labels, gz)), labels, rtol=0, atol=0)


@pytest.mark.parametrize("content,match", [
    (b"", "bad magic number empty file"),
    (b"\x01\x02\x08\x01" + b"\0" * 8, "bad magic"),
    (b"\x00\x00\x0d\x01\x00\x00\x00\x01" + b"\0" * 4, "type code 0x0d"),
    (b"\x00\x00\x08\x03\x00\x00\x00\x02", "truncated IDX header"),
])
def test_read_idx_rejects_bad_headers(tmp_path, content, match):
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(content)
    with pytest.raises(data.IDXError, match=match) as e:
        data.read_idx(path)
    assert str(path) in str(e.value)


def test_read_idx_rejects_truncated_and_overlong(tmp_path):
    raw = idx_bytes(synthetic(5)[0])
    for name, content, what in (("short", raw[:-10], "truncated"), ("long", raw + b"xx", "trailing bytes"),
                                ("short.gz", gzip.compress(raw)[:-30], "not a readable gzip")):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(data.IDXError, match=what) as e:
            data.read_idx(path)
        assert str(path) in str(e.value)


def test_load_checks_files_against_each_other(tmp_path):
    images, labels = synthetic(10)
    names = data.FILES["train"]
    write_idx(tmp_path / names[0], images)
    write_idx(tmp_path / names[1], labels[:9])
    with pytest.raises(data.IDXError, match="9 labels for 10 images"):
        data.load("fashion-mnist", "train", tmp_path)
    write_idx(tmp_path / names[1], torch.full((10,), 12, dtype=torch.uint8))
    with pytest.raises(data.IDXError, match="label 12 is out of range"):
        data.load("fashion-mnist", "train", tmp_path)
    write_idx(tmp_path / names[0], images.view(10, 784))
    with pytest.raises(data.IDXError, match=r"expected images of shape \(N, 28, 28\)"):
        data.load("fashion-mnist", "train", tmp_path)


def test_search_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a = write_dataset(tmp_path / "given", 20, 10)
    b = write_dataset(tmp_path / "env", 30, 10)
    c = write_dataset(tmp_path / "root" / "FashionMNIST" / "raw", 40, 10, gz=False)
    d = write_dataset(tmp_path / "data" / "FashionMNIST" / "raw", 50, 10)
    monkeypatch.setenv(data.ENV_DIR, str(b))
    assert data.find("fashion-mnist", "train", a)[0].parent == a          # 1. --data-dir
    assert data.find("fashion-mnist", "train", tmp_path / "root")[0].parent == c  # ... its torchvision layout
    assert data.find("fashion-mnist", "train", tmp_path / "nothing")[0].parent == b  # 2. environment
    monkeypatch.delenv(data.ENV_DIR)
    assert data.find("fashion-mnist", "train")[0].parent.resolve() == d.resolve()  # 3. ./data/FashionMNIST/raw
    assert len(data.load("fashion-mnist", "train", a)[0]) == 20


def test_not_found_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(data.ENV_DIR, raising=False)
    monkeypatch.setattr(data, "DATASETS", {**data.DATASETS, "fashion-mnist": data.DatasetInfo(
        "FashionMNIST", str(tmp_path / "system"), data.DATASETS["fashion-mnist"].classes)})
    with pytest.raises(data.DatasetNotFound) as e:
        data.load("fashion-mnist", "test", tmp_path / "mine")
    msg = str(e.value)
    for where in ("mine", os.path.join("mine", "FashionMNIST", "raw"), os.path.join("data", "FashionMNIST", "raw"), "system"):
        assert where in msg
    assert "dataset-fashion-mnist" in msg and "--download" in msg and data.ENV_DIR in msg


def test_gather_normalize_is_torchvisions_transform():
    """Bit for bit what ToTensor() + Normalize((0.5,), (0.5,)) make of every pixel value."""
    transforms = pytest.importorskip("torchvision.transforms")
    from PIL import Image

    images = torch.arange(256, dtype=torch.uint8).repeat(4).view(4, 1, 16, 16)
    images[1] = images[1].flip(-1)
    index = torch.tensor([3, 1, 1, 0, 2])
    out = ops.gather_normalize(images, index)
    t = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
    want = torch.stack([t(Image.fromarray(images[i, 0].numpy(), mode="L")) for i in index])
    assert out.dtype == torch.float32 and out.shape == (5, 1, 16, 16)
    assert torch.equal(out, want)
    assert torch.equal(ops.gather_normalize(images, index, 0.1307, 0.3081),
                       images[index].float().div(255).sub(0.1307).div(0.3081))
    strided = images.permute(0, 1, 3, 2)  # non-contiguous input
    assert torch.equal(ops.gather_normalize(strided, index), strided[index].float().div(255).sub(0.5).div(0.5))
    assert ops.gather_normalize(images, torch.empty(0, dtype=torch.long)).shape == (0, 1, 16, 16)


@pytest.mark.parametrize("images,index,match", [
    (torch.zeros(4, 28, 28), torch.arange(2), "expected images to be uint8"),
    (torch.zeros(4, 28, 28, dtype=torch.uint8), torch.arange(2, dtype=torch.int32), "1-D int64"),
    (torch.zeros(4, 28, 28, dtype=torch.uint8), torch.tensor([0, 4]), r"index\[1\] = 4 is out of range for 4"),
    (torch.zeros(4, 28, 28, dtype=torch.uint8), torch.tensor([-1]), "out of range"),
])
def test_gather_normalize_errors(images, index, match):
    with pytest.raises(RuntimeError, match=f"lenet_fast::gather_normalize: .*{match}"):
        ops.gather_normalize(images, index)



def test_device_loader_epochs():
    images, labels = synthetic(70)
    loader = data.DeviceLoader(images, labels.long(), batch_size=16, shuffle=True, seed=3)
    assert len(loader) == 5
    epochs = []
    for _ in range(2):
        xs, ys = zip(*loader)
        assert [len(y) for y in ys] == [16, 16, 16, 16, 6]
        x, y = torch.cat(xs), torch.cat(ys)
        # every image exactly once, with its own label
        order = [int((images.float().div(255).sub(0.5).div(0.5) == xi).flatten(1).all(1).nonzero()[0]) for xi in x[:, 0]]
        assert sorted(order) == list(range(70)) and torch.equal(y, labels.long()[order])
        epochs.append(order)
    assert epochs[0] != epochs[1]  # reshuffled each epoch
    again = data.DeviceLoader(images, labels.long(), batch_size=16, shuffle=True, seed=3)
    state = again.state_dict()
    first = torch.cat([y for _, y in again])
    again.load_state_dict(state)  # rewinding the generator replays the epoch
    assert torch.equal(torch.cat([y for _, y in again]), first)
    plain = data.DeviceLoader(images, labels.long(), batch_size=64, shuffle=False)
    assert torch.equal(torch.cat([y for _, y in plain]), labels.long())


def test_device_loader_matches_torch_dataloader(tmp_path):
    """On the CPU the fast loader yields the very batches of the tutorial's pipeline from one seed."""
    pytest.importorskip("torchvision")
    write_dataset(tmp_path, 150, 20)
    images, labels = data.load("fashion-mnist", "train", tmp_path)
    fast = data.DeviceLoader(images, labels, batch_size=32, shuffle=True, seed=5)
    tv = data.torchvision_loader("fashion-mnist", "train", 32, True, 5, tmp_path)
    for epoch in range(3):
        for (x, y), (xt, yt) in zip(fast, tv, strict=True):
            assert torch.equal(x, xt) and torch.equal(y, yt), f"epoch {epoch}"


def test_gather_normalize_devices(device):
    images = torch.randint(0, 256, (33, 1, 28, 28), dtype=torch.uint8, device=device)
    index = torch.randperm(33, device=device)[:17]
    out = ops.gather_normalize(images, index)
    assert out.device == images.device
    # The reference on the CPU, as torchvision computes it (a CUDA x / 255 may round differently).
    assert torch.equal(out.cpu(), images.cpu()[index.cpu()].float().div(255).sub(0.5).div(0.5))


def test_device_loader_on_device(device):
    images, labels = synthetic(50)
    loader = data.DeviceLoader(images, labels.long(), batch_size=16, shuffle=True, seed=1, device=device)
    ys = torch.cat([y for _, y in loader])
    assert ys.device.type == device and sorted(ys.tolist()) == sorted(labels.tolist())


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """--loader torchvision caches uncompressed copies; keep them out of the user's home."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
