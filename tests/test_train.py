"""python -m lenet_fast.train: a short run learns, --impl torch and --loader torchvision give the
default program's numbers, checkpoints resume exactly, metrics JSON, evaluation and errors.

Runs on a few hundred real Fashion-MNIST images when Debian's dataset-fashion-mnist is installed
(CI installs it), else on generated images."""
import json

import pytest
import torch

from lenet_fast import TorchLeNet5, train
from datasets import HAVE_REAL, SYSTEM, write_dataset

N_TRAIN, N_TEST = 512, 300


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    if HAVE_REAL:
        return SYSTEM
    return write_dataset(tmp_path_factory.mktemp("idx"), N_TRAIN, N_TEST)


def run(data_dir, *extra):
    args = ["--data-dir", str(data_dir), "--train-limit", str(N_TRAIN), "--test-limit", str(N_TEST),
            "--device", "cpu", "--no-progress", *map(str, extra)]
    return train.main(args)


def test_short_run_learns_and_writes_metrics(data_dir, tmp_path):
    out = tmp_path / "m.json"
    m = run(data_dir, "--epochs", 3, "--metrics-json", out)
    losses = [h["loss"] for h in m["history"]]
    assert losses[-1] < losses[0] * 0.8, losses
    assert m["test_accuracy"] > 0.3  # 10 classes: chance is 0.1
    saved = json.loads(out.read_text())
    for key in ("test_accuracy", "epochs", "train_seconds", "total_seconds", "images_per_second", "device",
                "impl", "loader", "dataset", "history", "confusion", "batch_size", "optimizer", "lr", "seed"):
        assert key in saved, key
    assert saved["test_accuracy"] == m["test_accuracy"] and saved["epochs"] == 3
    assert (saved["device"], saved["impl"], saved["loader"]) == ("cpu", "lenet_fast", "fast")
    assert saved["train_seconds"] <= saved["total_seconds"] and saved["images_per_second"] > 0
    assert sum(map(sum, saved["confusion"])) == saved["test_images"] == N_TEST
    assert saved["train_images"] == N_TRAIN and len(saved["history"]) == 3


def test_same_seed_same_result(data_dir):
    a, b = run(data_dir, "--epochs", 1), run(data_dir, "--epochs", 1)
    assert a["history"][0]["loss"] == b["history"][0]["loss"] and a["test_accuracy"] == b["test_accuracy"]


@pytest.mark.parametrize("variant", [("--impl", "torch"), ("--loader", "torchvision")])
def test_variants_match_the_default_program(data_dir, variant):
    """Same seed: the stock model, or the tutorial's data pipeline, trains to the same numbers
    (the model: to float32 rounding; the loader: bit for bit the same batches)."""
    if variant[1] == "torchvision":
        pytest.importorskip("torchvision")
    base = run(data_dir, "--epochs", 2)
    other = run(data_dir, "--epochs", 2, *variant)
    for h0, h1 in zip(base["history"], other["history"]):
        assert h1["loss"] == pytest.approx(h0["loss"], rel=1e-3, abs=1e-4)
        assert h1["train_accuracy"] == pytest.approx(h0["train_accuracy"], abs=2 / N_TRAIN)
    assert other["test_accuracy"] == pytest.approx(base["test_accuracy"], abs=3 / N_TEST)


def test_first_steps_match_stock_model(data_dir):
    """Step by step over the first batches, lenet_fast and the stock model see equal losses."""
    args = train.parse_args(["--data-dir", str(data_dir), "--train-limit", "256"])
    losses = {}
    for impl in ("lenet_fast", "torch"):
        model = train.build_model(impl, torch.device("cpu"), 0)
        opt = train.build_optimizer(args, model.parameters())
        loader = train.make_loader(args, "train", 64, True, torch.device("cpu"))
        losses[impl] = []
        for x, y in loader:
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses[impl].append(loss.item())
    torch.testing.assert_close(torch.tensor(losses["lenet_fast"]), torch.tensor(losses["torch"]), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("extra", [(), ("--optimizer", "sgd", "--lr", "0.05"), ("--optimizer", "adamw")])
def test_resume_is_exact(data_dir, tmp_path, extra):
    """Stopped after epoch 1 and resumed, a run ends with the weights of an uninterrupted one."""
    full, part = tmp_path / "full.pt", tmp_path / "part.pt"
    whole = run(data_dir, "--epochs", 2, "--save", full, *extra)
    run(data_dir, "--epochs", 1, "--save", part, *extra)
    resumed = run(data_dir, "--epochs", 2, "--save", part, "--resume", part, *extra)
    a, b = torch.load(full, weights_only=False), torch.load(part, weights_only=False)
    assert a["epoch"] == b["epoch"] == 2
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert resumed["test_accuracy"] == whole["test_accuracy"]
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in whole["history"]]
    TorchLeNet5().load_state_dict(a["model"], strict=True)  # the stock model takes the weights
    assert not list(tmp_path.glob(".*tmp*"))  # the atomic write left no temporary file


def test_evaluate_checkpoint(data_dir, tmp_path):
    pytest.importorskip("matplotlib")
    ckpt, png, out = tmp_path / "c.pt", tmp_path / "conf.png", tmp_path / "eval.json"
    trained = run(data_dir, "--epochs", 1, "--save", ckpt)
    m = run(data_dir, "--evaluate", ckpt, "--confusion", png, "--metrics-json", out)
    assert m["test_accuracy"] == trained["test_accuracy"]
    assert png.read_bytes()[:4] == b"\x89PNG" and json.loads(out.read_text())["test_accuracy"] == m["test_accuracy"]
    # A bare state_dict (as the stock model saves it) evaluates too, with either model.
    torch.save(torch.load(ckpt, weights_only=False)["model"], tmp_path / "sd.pt")
    assert run(data_dir, "--evaluate", tmp_path / "sd.pt", "--impl", "torch")["test_accuracy"] == pytest.approx(
        m["test_accuracy"], abs=2 / N_TEST)


@pytest.mark.parametrize("variant", [("relu", "max"), ("leaky_relu", "avg")])
def test_variant_trains_like_its_stock_twin(data_dir, tmp_path, variant):
    """--activation/--pooling: the lenet_fast model and the stock twin train to the same numbers,
    the metrics and the checkpoint record the variant, and --evaluate / --resume take it from
    the checkpoint."""
    activation, pooling = variant
    flags = ("--activation", activation, "--pooling", pooling, "--negative-slope", 0.2)
    ckpt = tmp_path / "v.pt"
    fast = run(data_dir, "--epochs", 2, "--save", ckpt, *flags)
    stock = run(data_dir, "--epochs", 2, "--impl", "torch", *flags)
    assert (fast["activation"], fast["pooling"], fast["negative_slope"]) == (activation, pooling, 0.2)
    for h0, h1 in zip(fast["history"], stock["history"]):
        assert h1["loss"] == pytest.approx(h0["loss"], rel=1e-3, abs=1e-4)
    losses = [h["loss"] for h in fast["history"]]
    assert losses[1] < losses[0]
    evaluated = run(data_dir, "--evaluate", ckpt)  # no flags: the checkpoint's variant
    assert evaluated["activation"] == activation and evaluated["test_accuracy"] == fast["test_accuracy"]
    state = torch.load(ckpt, weights_only=False)
    TorchLeNet5(activation=activation, pooling=pooling, negative_slope=0.2).load_state_dict(state["model"], strict=True)
    resumed = run(data_dir, "--epochs", 3, "--resume", ckpt)
    assert resumed["pooling"] == pooling and len(resumed["history"]) == 3


def test_errors(data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match="does not exist"):
        run(data_dir, "--evaluate", tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit, match="not a readable checkpoint"):
        run(data_dir, "--evaluate", tmp_path / "junk.pt")
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="no CUDA GPU"):
            run(data_dir, "--device", "cuda")
    with pytest.raises(SystemExit):
        run(data_dir, "--batch-size", 0)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """--loader torchvision caches uncompressed copies; keep them out of the user's home."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def test_download_failure_is_clear(tmp_path, monkeypatch):
    """--download where nothing can be fetched ends in an error that says what to do instead."""
    pytest.importorskip("torchvision")
    import torchvision

    from lenet_fast import data

    def offline(*a, **k):
        raise OSError("no network")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(data.DatasetNotFound, match="no network.*--data-dir"):
        train.main(["--dataset", "mnist", "--data-dir", str(tmp_path), "--download", "--device", "cpu", "--no-progress"])


def test_cli_missing_data_is_one_clear_line(tmp_path, monkeypatch):
    """From the command line, missing data ends with the search list and exit status 1, no traceback."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import lenet_fast

    env = {**os.environ, "PYTHONPATH": str(Path(lenet_fast.__file__).resolve().parents[1])}
    env.pop("LENET_FAST_DATA_DIR", None)
    r = subprocess.run([sys.executable, "-m", "lenet_fast.train", "--dataset", "mnist", "--data-dir", str(tmp_path),
                        "--no-progress"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 1
    assert "were not found. Looked in:" in r.stderr and str(tmp_path) in r.stderr and "Traceback" not in r.stderr
