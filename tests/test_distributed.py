"""Data-parallel training: `torchrun --nproc-per-node 2 -m lenet_fast.train` on the CPU with gloo
against one process with the same global batch, its checkpoint resumed in a single process, the
loader's shards, and a rank that fails ending the run with a message instead of a hang."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import lenet_fast
from lenet_fast import data, train
from datasets import HAVE_REAL, SYSTEM, write_dataset

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")
N_TRAIN, N_TEST = 301, 100  # 301 = 4 batches of 64 and one of 45: a short last batch, split 23 + 22
ROOT = Path(lenet_fast.__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    if HAVE_REAL:
        return SYSTEM
    return write_dataset(tmp_path_factory.mktemp("idx"), N_TRAIN, N_TEST)


def _args(data_dir, out, *extra):
    return ["--data-dir", str(data_dir), "--train-limit", str(N_TRAIN), "--test-limit", str(N_TEST), "--device",
            "cpu", "--no-progress", "--epochs", "2", "--batch-size", "64", "--metrics-json", str(out / "m.json"),
            "--save", str(out / "ckpt.pt"), *map(str, extra)]


def _torchrun(nproc, args, cwd, env_extra=None, timeout=240):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env_extra or {})}
    env.pop("WORLD_SIZE", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
           "-m", "lenet_fast.train", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("variant", [(), ("--activation", "relu", "--pooling", "max")], ids=["tanh-avg", "relu-max"])
def test_two_gloo_ranks_match_one_process(data_dir, tmp_path, variant):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    torch.set_num_threads(1)
    try:
        single = train.main(_args(data_dir, one, *variant))
    finally:
        torch.set_num_threads(os.cpu_count() or 1)
    r = _torchrun(2, _args(data_dir, two, *variant), tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stdout.count("epoch   1/2") == 1, "only rank 0 prints"
    assert "2 ranks (gloo)" in r.stdout
    multi = json.loads((two / "m.json").read_text())
    assert (multi["world_size"], multi["backend"]) == (2, "gloo")
    # The same steps: every epoch's mean loss and accuracy, and the weights after them, to float32
    # rounding (the two ranks sum their halves of each batch in another order than one process).
    for h1, h2 in zip(single["history"], multi["history"]):
        assert h2["loss"] == pytest.approx(h1["loss"], rel=1e-5), (h1["loss"], h2["loss"])
        assert h2["train_accuracy"] == pytest.approx(h1["train_accuracy"], abs=1.5 / N_TRAIN)
    a = torch.load(one / "ckpt.pt", weights_only=False)["model"]
    b = torch.load(two / "ckpt.pt", weights_only=False)["model"]
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=2e-6, msg=lambda m: f"{k}: {m}")
    assert multi["test_accuracy"] == pytest.approx(single["test_accuracy"], abs=1.5 / N_TEST)


def test_distributed_checkpoint_resumes_in_one_process_and_back(data_dir, tmp_path):
    """A checkpoint of a 2-rank run continues in one process, and one process's in 2 ranks; both
    end where an uninterrupted single-process run ends, to float32 rounding."""
    whole, part, back = tmp_path / "whole", tmp_path / "part", tmp_path / "back"
    for p in (whole, part, back):
        p.mkdir()
    torch.set_num_threads(1)
    try:
        train.main(_args(data_dir, whole, "--epochs", 3))
        r = _torchrun(2, _args(data_dir, part, "--epochs", 1), tmp_path)
        assert r.returncode == 0, r.stderr[-3000:]
        train.main(_args(data_dir, part, "--epochs", 2, "--resume", part / "ckpt.pt"))  # 1 process continues
    finally:
        torch.set_num_threads(os.cpu_count() or 1)
    r = _torchrun(2, _args(data_dir, part, "--epochs", 3, "--resume", part / "ckpt.pt"), tmp_path)  # and 2 again
    assert r.returncode == 0, r.stderr[-3000:]
    a = torch.load(whole / "ckpt.pt", weights_only=False)
    b = torch.load(part / "ckpt.pt", weights_only=False)
    assert a["epoch"] == b["epoch"] == 3
    for k in a["model"]:
        torch.testing.assert_close(b["model"][k], a["model"][k], rtol=1e-4, atol=2e-6, msg=lambda m: f"{k}: {m}")


def test_a_failing_rank_ends_the_run_with_a_message(data_dir, tmp_path):
    t0 = time.monotonic()
    r = _torchrun(2, _args(data_dir, tmp_path, "--dist-timeout", 60), tmp_path, {"LENET_FAST_FAIL_AT": "1:2"})
    assert r.returncode != 0
    assert time.monotonic() - t0 < 60, "the surviving rank waited for the failed one"
    assert "lenet_fast.train: rank 1 of 2 failed: RuntimeError: LENET_FAST_FAIL_AT=1:2" in r.stderr
    assert not (tmp_path / "m.json").exists()


def test_shards_cover_every_image_once(tmp_path):
    images = torch.randint(0, 256, (301, 28, 28), dtype=torch.uint8)
    labels = torch.arange(301) % 10
    whole = data.DeviceLoader(images, labels, 64, True, seed=3)
    parts = [data.DeviceLoader(images, labels, 64, True, seed=3, shard=(r, 3)) for r in range(3)]
    batches = list(whole)
    sharded = list(zip(*parts))
    assert len(batches) == len(sharded) == 5
    for (x, y), shards in zip(batches, sharded):
        torch.testing.assert_close(torch.cat([s[0] for s in shards]), x, rtol=0, atol=0)
        assert torch.equal(torch.cat([s[1] for s in shards]), y)
        assert [len(s[1]) for s in shards] == [len(y) // 3 + (r < len(y) % 3) for r in range(3)]
    assert parts[0].global_batch_sizes() == [64, 64, 64, 64, 45]
    with pytest.raises(ValueError, match="shard"):
        data.DeviceLoader(images, labels, 64, True, shard=(2, 2))


def test_distributed_refuses_what_it_does_not_do(data_dir, tmp_path):
    r = _torchrun(2, _args(data_dir, tmp_path, "--loader", "torchvision"), tmp_path)
    assert r.returncode != 0 and "--loader fast" in r.stderr
