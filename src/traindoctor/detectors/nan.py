"""nan_loss: the first non-finite loss value, with what happened just before it.

NaN/inf losses poison every later step, so the first one is what matters; the learning rate,
gradient norm and loss trend right before it usually say why (Goodfellow et al., Deep Learning,
sec. 8.2.4: exploding gradients; an LR past the stability limit).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..finding import Finding, Fix
from ..history import RunHistory, Series
from ..registry import detector
from ._sources import AMP, ANOMALY, PASCANU
from ._util import fmt, sig, xval

LOSS_ROLES = ("train_loss", "val_loss", "test_loss")


def _at_or_before(s: Series | None, step: float) -> float | None:
    """Last finite value of s logged at or before `step`."""
    if s is None or len(s) == 0:
        return None
    m = (s.steps <= step) & np.isfinite(s.values)
    if not m.any():
        return None
    return float(s.values[np.flatnonzero(m)[-1]])


@detector("nan_loss", requires=(LOSS_ROLES,))
def nan_loss(
    history: RunHistory,
    *,
    lookback: int = 10,  # points before the NaN used to describe the trend
    grad_ratio: float = 10.0,  # grad norm 10x its earlier median counts as exploding
) -> Iterable[Finding]:
    """A loss became NaN or infinite: the first such step and what preceded it."""
    hits = []
    for s in history.series.values():
        if s.role not in LOSS_ROLES or len(s) == 0:
            continue
        bad = np.flatnonzero(~np.isfinite(s.values))
        if bad.size:
            hits.append((float(s.steps[bad[0]]), s.name != getattr(history.primary("train_loss"), "name", None),
                         s.name, s, bad))
    if not hits:
        return
    hits.sort(key=lambda h: h[:3])
    step, _, name, s, bad = hits[0]
    i = int(bad[0])
    unit = "epoch" if s.epochs is not None and np.isfinite(s.epochs[i]) and s.is_per_epoch else "step"
    where = float(s.epochs[i]) if unit == "epoch" else step
    before = s.values[:i][np.isfinite(s.values[:i])][-lookback:]
    ev: dict = {
        "unit": unit,
        f"first_{unit}": xval(where),
        "first_step": xval(step),
        "value": float(s.values[i]),
        "nonfinite_points": int(bad.size),
        "points": len(s),
        "finite_after": int(np.isfinite(s.values[i:]).sum()),
        "other_series_nonfinite": [h[2] for h in hits[1:]][:10],
        "thresholds": {"lookback": lookback, "grad_ratio": grad_ratio},
    }
    if unit != "epoch" and s.epochs is not None and np.isfinite(s.epochs[i]):
        # the contract's key whenever the epoch is known: an epoch is a label on every point
        ev["first_epoch"] = xval(s.epochs[i])
    notes = []
    if before.size:
        ev["last_finite_value"] = sig(before[-1])
        ev["trend_points"] = int(before.size)
        if before.size >= 2:
            ev["trend_from"] = sig(before[0])
            change = before[-1] - before[0]
            ev["trend_change"] = sig(change)
            direction = "rising" if change > 0 else "falling or flat"
            notes.append(f"over the last {before.size} finite points the loss went from "
                         f"{fmt(before[0])} to {fmt(before[-1])} ({direction})")
    lr = history.primary("lr")
    lr_v = _at_or_before(lr, step)
    if lr_v is not None:
        ev["lr"] = sig(lr_v)
        notes.append(f"the learning rate was {fmt(lr_v)}")
    gn = history.primary("grad_norm")
    gn_v = _at_or_before(gn, step)
    exploding = False
    if gn_v is not None:
        ev["grad_norm"] = sig(gn_v)
        earlier = gn.values[(gn.steps < step) & np.isfinite(gn.values)]
        if earlier.size >= 3:
            med = float(np.median(earlier))
            ev["grad_norm_median_before"] = sig(med)
            exploding = not np.isfinite(gn_v) or (med > 0 and gn_v >= grad_ratio * med)
            ev["grad_norm_exploding"] = bool(exploding)
        notes.append(f"the gradient norm was {fmt(gn_v)}" + (
            f" ({fmt(ev['grad_norm_median_before'])} median before)" if "grad_norm_median_before" in ev else ""))
    word = "NaN" if np.isnan(s.values[i]) else "infinite"
    title = f"{name} became {word} at {unit} {xval(where)}"
    expl = (f"{name} is {word} from {unit} {xval(where)} on ({bad.size} of {len(s)} points non-finite). "
            + ("Just before: " + "; ".join(notes) + ". " if notes else "")
            + "Everything trained after the first NaN is garbage: the weights are NaN too.")
    fixes = [
        Fix("Lower the learning rate (or add warmup)" + (f" from {fmt(lr_v)}" if lr_v is not None else ""),
            "the most common cause of a loss blowing up to NaN", None),
        Fix("Clip gradients", "keeps one bad batch from destroying the weights"
            + (" (the gradient norm was exploding)" if exploding else ""),
            "torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)  # Lightning: "
            "Trainer(gradient_clip_val=1.0)"),
        Fix("Look for log(0), division by zero or NaN inputs; locate the first NaN op",
            "anomaly mode names the operation that produced it",
            "torch.autograd.set_detect_anomaly(True)"),
        Fix("In mixed precision, use bf16 or a GradScaler", "fp16 overflows at 65504", None),
    ]
    yield Finding("nan_loss", "error", title, metric=name, evidence=ev,
                  steps=(xval(where), xval(where)), explanation=expl, fixes=fixes)


# What the check means, how it decides and what fixes it: `traindoctor explain` reads this.
DOCS = {
    "nan_loss": {
        "summary": "a loss became NaN or infinite",
        "meaning": "Once a loss is NaN every later update is NaN too: the weights are ruined, and "
                   "every finding about what follows is explained by it. Causes: LR too high, "
                   "log(0) or division by zero in the loss, fp16 overflow, bad inputs.",
        "detection": "The first step at which a loss series is not finite (its step, and its epoch "
                     "when known), with the LR, gradient norm and loss trend just before.",
        "fixes": ["Lower the LR and clip gradients",
                  "Guard the loss: clamp before log, add eps to divisions",
                  "Use torch.autograd.set_detect_anomaly(True) for one run to find the operation",
                  "With fp16, use torch.amp.GradScaler or bf16"],
        "sources": [ANOMALY, AMP, PASCANU],
    },
}
