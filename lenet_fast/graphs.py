"""A training epoch as replays of one captured step: CUDA graphs for the device-resident loader.

At LeNet-5's size a GPU training step is a few microseconds of arithmetic behind tens of
microseconds of host work (Python, autograd, the dispatcher, one launch per kernel). Captured once
with torch.cuda.graph, a whole step -- pick the batch's indices from the epoch's permutation,
gather and normalise the uint8 images, forward, cross-entropy, backward, the optimizer (torch's
fused, capturable implementation), and the running loss and accuracy -- replays as one graph
launch. The batch position lives on the device (`offset`), so a replay needs no host input at all.

An epoch of n images in batches of B replays the full-batch graph n // B times, then, if n % B,
a second graph captured for the smaller last batch: every image is used once per epoch, as in the
eager loop, and the losses are the eager loop's from the same seed (tests/test_train.py, CUDA).

    steps = GraphedSteps(model, optimizer, loader)   # captures (CUDA) or runs eagerly (capture=False)
    stats = steps.epoch()

capture=False runs the very same step function eagerly, with the same static buffers: how the CPU
tests check this module's bookkeeping where no GPU is available.
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from . import ops
from .data import DeviceLoader

_WARMUP_STEPS = 3  # torch.cuda.graphs' advice: run the step a few times on a side stream first


class GraphedSteps:
    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, loader: DeviceLoader,
                 capture: bool = True):
        if not isinstance(loader, DeviceLoader):
            raise TypeError("GraphedSteps: needs the device-resident loader (--loader fast)")
        if capture and loader.device.type != "cuda":
            raise ValueError(f"GraphedSteps: CUDA graphs need a CUDA device, the data is on {loader.device}")
        self.model, self.optimizer, self.loader, self.capture = model, optimizer, loader, capture
        dev = loader.device
        self.n, self.batch = len(loader.labels), loader.batch_size
        self.order = torch.arange(self.n, device=dev)  # this epoch's permutation (valid indices from the start)
        self.offset = torch.zeros((), dtype=torch.int64, device=dev)
        self.loss_sum = torch.zeros((), device=dev)
        self.correct = torch.zeros((), dtype=torch.int64, device=dev)
        sizes = ([self.batch] if self.n >= self.batch else []) + ([self.n % self.batch] if self.n % self.batch else [])
        self.steps = {size: self._prepare(size) for size in sizes}

    def _step_fn(self, size: int):
        loader, model, optimizer = self.loader, self.model, self.optimizer
        positions = torch.arange(size, device=loader.device)

        def step():
            idx = self.order.index_select(0, self.offset + positions)
            x = ops.gather_normalize(loader.images, idx, loader.mean, loader.std)
            y = loader.labels.index_select(0, idx)
            if not self.capture:  # (captured: the graph rewrites the same .grad buffers each replay)
                optimizer.zero_grad(set_to_none=True)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                self.loss_sum += loss.detach()
                self.correct += (logits.detach().argmax(1) == y).sum()
                self.offset += size
        return step

    def _prepare(self, size: int):
        step = self._step_fn(size)
        if not self.capture:
            return step
        # Warm up on a side stream, then put back everything the warm-up changed (parameters,
        # optimizer state, counters), so that the first real step starts where the eager loop would.
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        saved_params = [p.detach().clone() for p in params]
        saved_state = {id(t): t.clone() for s in self.optimizer.state.values() for t in s.values()
                       if isinstance(t, torch.Tensor)}
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(_WARMUP_STEPS):
                self.offset.zero_()
                self.optimizer.zero_grad(set_to_none=True)
                step()
        torch.cuda.current_stream().wait_stream(side)
        with torch.no_grad():
            for p, v in zip(params, saved_params):
                p.copy_(v)
            for s in self.optimizer.state.values():
                for t in s.values():
                    if isinstance(t, torch.Tensor):  # state the warm-up created starts at zero (Adam, SGD)
                        t.copy_(saved_state[id(t)]) if id(t) in saved_state else t.zero_()
        self.offset.zero_()
        self.loss_sum.zero_()
        self.correct.zero_()
        self.optimizer.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            step()
        return graph.replay

    def epoch(self, bar=None) -> dict:
        """One pass over the loader's data in its next epoch order; the same dict as train.train_epoch."""
        self.model.train()
        self.order.copy_(self.loader.epoch_order())
        self.offset.zero_()
        self.loss_sum.zero_()
        self.correct.zero_()
        if self.loader.device.type == "cuda":
            torch.cuda.synchronize(self.loader.device)
        t0 = time.perf_counter()
        full, last = self.n // self.batch, self.n % self.batch
        for _ in range(full):
            self.steps[self.batch]()
            if bar is not None:
                bar.update()
        if last:
            self.steps[last]()
            if bar is not None:
                bar.update()
        if self.loader.device.type == "cuda":
            torch.cuda.synchronize(self.loader.device)
        seconds = time.perf_counter() - t0
        batches = full + (1 if last else 0)
        return {"loss": self.loss_sum.item() / max(batches, 1), "train_accuracy": self.correct.item() / max(self.n, 1),
                "seconds": seconds, "images_per_second": self.n / seconds if seconds > 0 else float("nan")}
