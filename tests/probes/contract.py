"""The probe contract: everything probe() could touch is captured and compared bit for bit."""

from __future__ import annotations

import copy
import random

import numpy as np
import torch


def capture(model, optimizer) -> dict:
    state = {
        "params": [(n, p.detach().clone()) for n, p in model.named_parameters()],
        "param_ids": [id(p) for p in model.parameters()],
        "grads": [(n, None if p.grad is None else p.grad.detach().clone(), id(p.grad))
                  for n, p in model.named_parameters()],
        "buffers": [(n, b.detach().clone()) for n, b in model.named_buffers()],
        "modes": [(n, m.training) for n, m in model.named_modules()],
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": np.random.get_state(),
        "python_rng": random.getstate(),
    }
    if optimizer is not None:
        state["opt"] = copy.deepcopy(optimizer.state_dict())
        state["lrs"] = [g["lr"] for g in optimizer.param_groups]
        state["opt_tensor_ids"] = [id(v) for st in optimizer.state.values() for v in st.values()
                                   if isinstance(v, torch.Tensor)]
        state["opt_attrs"] = {k: v for k, v in vars(optimizer).items() if isinstance(v, (bool, int, float))}
    return state


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        if not (isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape):
            return False
        if a.is_floating_point():  # bit for bit, so NaN weights compare equal to themselves
            as_int = {8: torch.int64, 4: torch.int32, 2: torch.int16}[a.element_size()]
            return torch.equal(a.contiguous().view(as_int), b.contiguous().view(as_int))
        return torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    return a == b


def assert_unchanged(before: dict, after: dict) -> None:
    for key in before:
        if key == "numpy_rng":
            assert all(_same(x, y) for x, y in zip(before[key], after[key])), key
            continue
        assert _same(before[key], after[key]), f"probe changed {key}"


def prepare(model, batch, loss_fn, optimizer, steps: int = 2):
    """Give the optimizer real state (step counts, moments) and leave .grad populated, as mid-training.

    batch: (x, y) with loss_fn, or an HF-style dict whose model returns .loss.
    """
    if optimizer is None or (loss_fn is None and not isinstance(batch, dict)):
        return

    def loss():
        if isinstance(batch, dict):
            return model(**batch).loss
        x, y = batch
        return loss_fn(model(x), y)

    lrs = [g["lr"] for g in optimizer.param_groups]
    for g in optimizer.param_groups:  # state without moving the weights (keeps a planted fault intact)
        g["lr"] = 1e-9
    for _ in range(steps):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    for g, lr in zip(optimizer.param_groups, lrs):
        g["lr"] = lr
    loss().backward()
