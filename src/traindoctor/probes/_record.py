"""Record saturating and ReLU ops during a forward pass, named by the module running them.

The recorder is a TorchFunctionMode, so it sees nn.Tanh/nn.ReLU modules and functional calls
(torch.tanh, F.relu, x.clamp(...)) alike. It runs during the probe's one shared forward/backward
(the base pass), so the activation checks cost no forward pass of their own.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

SATURATING = {"tanh": (-1.0, 1.0), "sigmoid": (0.0, 1.0), "hardtanh": (-1.0, 1.0), "relu6": (0.0, 6.0),
              "clamp": None, "clip": None}
RELU = {"relu"}


@dataclass
class Call:
    site: str  # "module.path:tanh"
    op: str
    out: object  # detached output tensor
    low: float | None
    high: float | None


def _op_name(func) -> str | None:
    name = getattr(func, "__name__", "") or ""
    name = name.rstrip("_") if name.endswith("_") and not name.startswith("_") else name
    if name in SATURATING or name in RELU:
        return name
    return None


def _bounds(op, args, kwargs):
    if op in ("clamp", "clip"):
        lo = kwargs.get("min", args[1] if len(args) > 1 else None)
        hi = kwargs.get("max", args[2] if len(args) > 2 else None)
        return (float(lo) if isinstance(lo, (int, float)) else None,
                float(hi) if isinstance(hi, (int, float)) else None)
    if op == "hardtanh":
        lo = kwargs.get("min_val", args[1] if len(args) > 1 else -1.0)
        hi = kwargs.get("max_val", args[2] if len(args) > 2 else 1.0)
        return float(lo), float(hi)
    if op in SATURATING:
        return SATURATING[op]
    return None, None


@contextmanager
def recording(model, calls: list):
    """Append a Call to `calls` for every saturating/ReLU op the model runs inside the block."""
    import torch
    from torch.overrides import TorchFunctionMode

    stack: list[str] = []
    counts: dict[str, int] = {}

    class Recorder(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            op = _op_name(func)
            if op and isinstance(out, torch.Tensor) and out.is_floating_point():
                where = stack[-1] if stack else "(root)"
                key = f"{where}:{op}"
                counts[key] = counts.get(key, 0) + 1
                site = key if counts[key] == 1 else f"{key}#{counts[key]}"
                lo, hi = _bounds(op, args, kwargs)
                calls.append(Call(site, op, out.detach(), lo, hi))
            return out

    handles = []
    for name, mod in model.named_modules():
        label = name or "(root)"
        handles.append(mod.register_forward_pre_hook(lambda m, a, label=label: stack.append(label)))
        handles.append(mod.register_forward_hook(lambda m, a, o: _pop(stack)))
    try:
        with Recorder():
            yield calls
    finally:
        for h in handles:
            h.remove()


def _pop(stack: list) -> None:
    # a forward hook's return value replaces the module's output: return None explicitly
    if stack:
        stack.pop()
