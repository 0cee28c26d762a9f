"""The shared probe context: one parsed batch, one cached forward/backward, and state save/restore.

Every check reads from a ProbeContext instead of running its own forward pass; expensive shared
results (the base gradients and the activations recorded in the same pass, the one-step experiment
that reuses the base gradient, the LR sweep) are computed at most once, on first use. The
multi-step experiments (the LR sweep, overfitting) run on a few examples of the batch (`sub_batch`),
so on a language model they cost a fraction of a training step each. Experiments that change parameters do so in place and the
runner restores everything afterwards from a bit-exact snapshot (pytorch-lr-finder's approach:
cache the state, experiment, restore).
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError

# Every forward pass of the probe starts from this seed, so dropout masks are identical between the
# "before" and "after" passes it compares, and the probe gives the same answer twice.
PROBE_SEED = 0


# -- batch and output parsing ------------------------------------------------------------------

def split_batch(batch) -> tuple[Any, Any, str]:
    """(inputs, targets, kind): a tensor, an (inputs, targets) pair, or an HF-style dict."""
    import torch

    if isinstance(batch, torch.Tensor):
        return batch, None, "tensor"
    if isinstance(batch, Mapping):
        return dict(batch), batch.get("labels"), "dict"
    if isinstance(batch, (tuple, list)):
        if len(batch) == 2:
            return batch[0], batch[1], "pair"
        if len(batch) == 1:
            return batch[0], None, "pair"
    raise InputError(None, f"batch must be a tensor, an (inputs, targets) tuple/list or a dict of tensors; "
                           f"got {type(batch).__name__}"
                           + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else "")
                           + "; pass one batch from your DataLoader")


def to_device(obj, device):
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, Mapping):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return type(obj)(to_device(v, device) for v in obj)
    return obj


def extract_output(out) -> tuple[Any, Any]:
    """(predictions, model_loss) from a tensor, tuple, dict or HF-style output object."""
    import torch

    if isinstance(out, torch.Tensor):
        return out, None
    if isinstance(out, Mapping):
        loss = out.get("loss")
        pred = out.get("logits")
        if pred is None:
            pred = next((v for k, v in out.items() if k != "loss" and isinstance(v, torch.Tensor)), None)
        return pred, loss
    if isinstance(out, (tuple, list)):
        first = out[0] if out else None
        return (first if isinstance(first, torch.Tensor) else None), None
    return getattr(out, "logits", None), getattr(out, "loss", None)


def call_model(model, inputs):
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):  # ((piece, puzzle), targets): model(piece, puzzle)
        return model(*inputs)
    return model(inputs)


def batch_size(inputs) -> int | None:
    import torch

    if isinstance(inputs, torch.Tensor):
        return int(inputs.shape[0]) if inputs.dim() else None
    values = inputs.values() if isinstance(inputs, Mapping) else inputs if isinstance(inputs, (tuple, list)) else ()
    for v in values:
        if isinstance(v, torch.Tensor) and v.dim():
            return int(v.shape[0])
    return None


def map_inputs(inputs, fn, *, skip_keys=("labels",)):
    """Apply fn to every batch-first tensor of the inputs (not to the labels)."""
    import torch

    if isinstance(inputs, torch.Tensor):
        return fn(inputs)
    if isinstance(inputs, Mapping):
        return {k: (fn(v) if isinstance(v, torch.Tensor) and v.dim() and k not in skip_keys else v)
                for k, v in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(fn(v) if isinstance(v, torch.Tensor) and v.dim() else v for v in inputs)
    return inputs


def input_tensors(inputs) -> list:
    import torch

    if isinstance(inputs, torch.Tensor):
        return [inputs]
    if isinstance(inputs, Mapping):
        return [v for k, v in inputs.items() if isinstance(v, torch.Tensor) and k != "labels"]
    if isinstance(inputs, (tuple, list)):
        return [v for v in inputs if isinstance(v, torch.Tensor)]
    return []


def unwrap(model) -> tuple:
    """(module that computes, names of the wrappers removed): DistributedDataParallel/DataParallel
    keep the model in .module and torch.compile in ._orig_mod, with the same parameters. Probing the
    inner module runs no gradient all-reduce (no other rank is waiting) and triggers no compilation."""
    import torch

    wrappers = []
    while True:
        inner = getattr(model, "_orig_mod", None) if type(model).__name__ == "OptimizedModule" else None
        if inner is None and isinstance(model, (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)):
            inner = model.module
        if not isinstance(inner, torch.nn.Module):
            return model, wrappers
        wrappers.append(type(model).__name__)
        model = inner


def take(obj, n: int, k: int):
    """The first k examples: every tensor whose first dimension is the batch size n is sliced."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj[:k] if obj.dim() and obj.shape[0] == n else obj
    if isinstance(obj, Mapping):
        return {key: take(v, n, k) for key, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return type(obj)(take(v, n, k) for v in obj)
    return obj


# -- state snapshot ----------------------------------------------------------------------------

@dataclass
class Snapshot:
    params: list
    buffers: list
    modes: list
    optimizer: Any
    rng: dict


def snapshot(model, optimizer) -> Snapshot:
    import torch

    params = [(p, p.detach().clone(), None if p.grad is None else p.grad.detach().clone(), p.grad)
              for p in model.parameters()]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    modes = [(m, m.training) for m in model.modules()]
    opt = None
    if optimizer is not None:
        opt = {
            # (original tensor, copy of its values): restore writes the values back into the same
            # objects, so anything holding a reference to the state (CUDA graphs, fused kernels) stays valid
            "state": {p: {k: ((v, v.detach().clone()) if isinstance(v, torch.Tensor) else (None, copy.deepcopy(v)))
                          for k, v in s.items()} for p, s in optimizer.state.items()},
            "groups": [{k: copy.deepcopy(v) for k, v in g.items() if k != "params"}
                       for g in optimizer.param_groups],
            "group_params": [list(g["params"]) for g in optimizer.param_groups],
            "attrs": {k: v for k, v in vars(optimizer).items()
                      if isinstance(v, (bool, int, float, str)) or v is None},
        }
    rng = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return Snapshot(params, buffers, modes, opt, rng)


def restore(snap: Snapshot, optimizer) -> None:
    import torch

    with torch.no_grad():
        for p, data, grad, grad_obj in snap.params:
            p.copy_(data)
            if grad is None:
                p.grad = None
            else:
                # put the user's own grad tensor object back, with its original values
                if grad_obj is not None and grad_obj.shape == grad.shape:
                    grad_obj.copy_(grad)
                    p.grad = grad_obj
                else:
                    p.grad = grad
        for b, data in snap.buffers:
            b.copy_(data)
    for m, training in snap.modes:
        m.training = training
    restore_optimizer(snap, optimizer)
    torch.set_rng_state(snap.rng["torch"])
    np.random.set_state(snap.rng["numpy"])
    random.setstate(snap.rng["python"])
    if "cuda" in snap.rng:
        torch.cuda.set_rng_state_all(snap.rng["cuda"])


def restore_optimizer(snap: Snapshot, optimizer) -> None:
    import torch

    if optimizer is not None and snap.optimizer is not None:
        o = snap.optimizer
        optimizer.state.clear()
        with torch.no_grad():
            for p, saved in o["state"].items():
                entry = {}
                for k, (orig, value) in saved.items():
                    if orig is None:
                        entry[k] = copy.deepcopy(value)
                    elif orig.shape == value.shape and orig.dtype == value.dtype:
                        orig.copy_(value)
                        entry[k] = orig
                    else:
                        entry[k] = value.clone()
                optimizer.state[p] = entry
        for g, saved, params in zip(optimizer.param_groups, o["groups"], o["group_params"]):
            for k in [k for k in g if k != "params" and k not in saved]:
                del g[k]
            g.update(saved)
            g["params"] = params
        for k, v in o["attrs"].items():
            setattr(optimizer, k, v)


def restore_params(snap: Snapshot) -> None:
    """Put parameters and buffers back between experiments (grads and optimizer stay as they are)."""
    import torch

    with torch.no_grad():
        for p, data, _, _ in snap.params:
            p.copy_(data)
        for b, data in snap.buffers:
            b.copy_(data)


def clone_optimizer(optimizer):
    """A fresh optimizer of the same class, hyper-parameters and state, on the same parameters.

    Stepping a copy leaves the user's optimizer object untouched (no step counters, no scheduler
    bookkeeping). Optimizers whose constructor will not take param groups alone raise here.
    """
    groups = [{**{k: copy.deepcopy(v) for k, v in g.items() if k != "params"}, "params": list(g["params"])}
              for g in optimizer.param_groups]
    new = type(optimizer)(groups)
    new.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    return new


# -- the context -------------------------------------------------------------------------------

@dataclass
class Base:
    """The shared forward/backward at the current parameters."""

    pred: Any  # detached predictions
    loss: float | None
    loss_source: str  # "loss_fn", "model" or "none"
    grads: dict  # param name -> detached grad tensor or None (only params that require grad)
    error: str | None = None
    seconds: float = 0.0  # wall time of the pass: the probe's unit of cost (about one training step)


# Karpathy ("A Recipe for Training Neural Networks", 2019) overfits "a few examples (e.g. as little
# as two)": the multi-step experiments use at most 8 examples and 128 predictions, at least two
# examples with one label each or one sequence (a 128-token sequence is 128 predictions). On the 17M
# language model of benchmarks/probe.py a step on one of its 8 sequences costs about 0.14 training
# steps and Adam(3e-3) lowers its loss 10x in 8 steps (2 sequences: 13 steps at 0.24 each).
SUB_BATCH_EXAMPLES = 8
SUB_BATCH_PREDICTIONS = 128

_SAME = object()


@dataclass
class ProbeContext:
    model: Any
    inputs: Any
    targets: Any
    loss_fn: Any
    optimizer: Any
    device: Any
    deadline: float
    snap: Snapshot
    batch_kind: str = "pair"
    cache: dict = field(default_factory=dict)
    # with no budget= given, the deadline grows to this many base passes (training-step
    # equivalents) once the base pass is timed, so a large model is not cut short by a fixed
    # number of seconds; None: the deadline is fixed
    step_budget: float | None = None
    start: float = field(default_factory=time.perf_counter)

    # -- basics ------------------------------------------------------------------------------
    def time_left(self) -> float:
        return self.deadline - time.perf_counter()

    def seeded(self) -> None:
        import torch

        torch.manual_seed(PROBE_SEED)

    def named_trainable(self) -> list:
        return [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]

    def forward(self, inputs=None, *, grad: bool = False, targets=_SAME):
        """(pred, loss tensor or None) for the given inputs (default: the batch), seeded."""
        import torch

        self.seeded()
        with torch.set_grad_enabled(grad):
            out = call_model(self.model, self.inputs if inputs is None else inputs)
            pred, model_loss = extract_output(out)
            loss = self.compute_loss(pred, model_loss, self.targets if targets is _SAME else targets)
        return pred, loss

    def compute_loss(self, pred, model_loss, targets=_SAME):
        targets = self.targets if targets is _SAME else targets
        if self.loss_fn is not None and targets is not None and pred is not None:
            return self.loss_fn(pred, targets)
        if model_loss is not None:
            return model_loss
        return None

    @property
    def loss_source(self) -> str:
        return self.base.loss_source

    # -- the shared forward/backward ---------------------------------------------------------
    @property
    def base(self) -> Base:
        if "base" not in self.cache:
            self.cache["base"] = self._compute_base()
            if self.step_budget is not None:
                self.deadline = max(self.deadline, self.start + self.step_budget * self.cache["base"].seconds)
        return self.cache["base"]

    def _compute_base(self) -> Base:
        import torch

        from ._record import recording

        t0 = time.perf_counter()
        calls: list = []
        self.seeded()
        with torch.enable_grad():
            # the activation checks read the ops recorded here: no forward pass of their own
            with recording(self.model, calls):
                out = call_model(self.model, self.inputs)
            pred, model_loss = extract_output(out)
            loss = self.compute_loss(pred, model_loss)  # outside the recorder: loss ops are not activations
        self.cache["calls"] = calls
        source = ("loss_fn" if self.loss_fn is not None and self.targets is not None
                  else "model" if loss is not None else "none")
        grads: dict = {}
        if loss is not None and loss.dim() == 0 and loss.requires_grad:
            named = self.named_trainable()
            # autograd.grad leaves the user's .grad untouched; allow_unused gives None for
            # parameters the loss does not reach at all
            gs = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
            grads = {n: (None if g is None else g.detach()) for (n, _), g in zip(named, gs)}
        elif loss is not None and loss.dim() == 0:
            grads = {n: None for n, _ in self.named_trainable()}
        return Base(
            pred=None if pred is None else pred.detach(),
            loss=None if loss is None or loss.dim() != 0 else float(loss.detach()),
            loss_source=source,
            grads=grads,
            error=None if loss is None or loss.dim() == 0 else
            f"the loss has shape {tuple(loss.shape)}; a scalar is needed (use reduction='mean')",
            seconds=time.perf_counter() - t0,
        )

    def loss_value(self, inputs=None, targets=_SAME) -> float | None:
        """Loss at the current parameters (a fresh seeded forward, no grad); default: the batch."""
        _, loss = self.forward(inputs, grad=False, targets=targets)
        return None if loss is None else float(loss.detach())

    # -- a few examples for the multi-step experiments -----------------------------------------
    def sub_batch(self) -> tuple:
        """(inputs, targets, k, n): the first k of the batch's n examples (see SUB_BATCH_*)."""
        if "sub_batch" not in self.cache:
            n = batch_size(self.inputs) or 0
            per = 1
            t = self.targets
            if t is not None and getattr(t, "dim", lambda: 0)() and t.shape[0] == n and n:
                per = max(1, t.numel() // n)
            k = min(n, max(2 if per == 1 else 1, min(SUB_BATCH_EXAMPLES, SUB_BATCH_PREDICTIONS // per)))
            if k <= 0 or k >= n:
                self.cache["sub_batch"] = (self.inputs, self.targets, n, n)
            else:
                self.cache["sub_batch"] = (take(self.inputs, n, k), take(self.targets, n, k), k, n)
        return self.cache["sub_batch"]

    def sub_step(self, optimizer, params) -> float:
        """One optimizer step on the sub-batch; returns the loss before it."""
        inputs, targets, _, _ = self.sub_batch()
        optimizer.zero_grad(set_to_none=True)
        _, loss = self.forward(inputs, grad=True, targets=targets)
        value = float(loss.detach())
        if math.isfinite(value):
            loss.backward(inputs=params)
            optimizer.step()
        return value

    # -- one optimizer step with the user's optimizer (cached) ---------------------------------
    def one_step(self) -> dict:
        if "one_step" not in self.cache:
            self.cache["one_step"] = self._one_step()
        return self.cache["one_step"]

    def _one_step(self) -> dict:
        """One step of (a copy of) the user's optimizer on the whole batch.

        The gradient at the current parameters is the base pass's, so the step costs an optimizer
        update and one forward for the loss after it.
        """
        import torch

        opt = self.optimizer_copy()
        named = self.named_trainable()
        base = self.base
        before = {n: p.detach().clone() for n, p in named}
        for n, p in named:
            g = base.grads.get(n)
            p.grad = None if g is None else g.clone()
        opt.step()
        for _, p in named:
            p.grad = None
        after_loss = self.loss_value()
        with torch.no_grad():
            ratios = {}
            for n, p in named:
                w = float(before[n].norm())
                dw = float((p.detach() - before[n]).norm())
                ratios[n] = (dw, w)
        self.reset_experiment()
        return {"loss_before": base.loss, "loss_after": after_loss, "updates": ratios}

    def optimizer_copy(self):
        try:
            return clone_optimizer(self.optimizer)
        except Exception:  # an optimizer with a custom constructor: use it, reset_experiment restores it
            self.cache["used_user_optimizer"] = True
            return self.optimizer

    def reset_experiment(self) -> None:
        """Weights (and the user's optimizer, if an experiment had to step it) back to the snapshot."""
        restore_params(self.snap)
        if self.cache.get("used_user_optimizer"):
            restore_optimizer(self.snap, self.optimizer)


# -- small helpers shared by the checks ----------------------------------------------------------

def r4(x):
    """Round to 4 significant digits: evidence and titles quote the same rounded number."""
    if x is None:
        return None
    x = float(x)
    if not math.isfinite(x) or x == 0:
        return x
    return float(f"{x:.4g}")


def module_of(param_name: str) -> str:
    """`encoder.layers.0.linear1.weight` -> `encoder.layers.0.linear1` (the owning module path)."""
    return param_name.rpartition(".")[0] or "(root)"


def need_loss(ctx, code: str):
    """A Skip when there is no scalar loss to differentiate, else None."""
    from ..finding import Skip

    base = ctx.base
    if base.error:
        return Skip(code, base.error)
    if base.loss is None:
        return Skip(code, "no loss: pass loss_fn= and (inputs, targets), or a model that returns a loss")
    return None
