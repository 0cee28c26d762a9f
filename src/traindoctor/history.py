"""Series and RunHistory: what every reader produces and every detector reads.

A metric keeps the name the user logged (`train/position_loss`, `eval_loss`, `Loss/val`) and
gets a *role*: a split (train / val / test) and a kind (loss, accuracy, lr, ...). Detectors ask
for roles, never for spellings, so one detector serves Lightning, HF, Keras and TensorBoard.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

__all__ = [
    "Series",
    "RunHistory",
    "Checkpoint",
    "infer_role",
    "split_role",
    "flatten_names",
    "ROLES",
    "HIGHER_IS_BETTER_KINDS",
]

SPLITS = ("train", "val", "test")
KINDS = ("loss", "accuracy", "error", "lr", "grad_norm", "epoch", "time", "other")
# accuracy-like scores improve upwards; losses and error metrics (MAE, EPE, perplexity) downwards
HIGHER_IS_BETTER_KINDS = frozenset({"accuracy"})
ROLES = tuple(f"{s}_{k}" for s in SPLITS for k in ("loss", "accuracy", "error")) + (
    "lr", "grad_norm", "epoch", "time", "other",
)

_SPLIT_TOKENS = {
    "train": "train", "training": "train", "trn": "train", "tr": "train",
    "val": "val", "valid": "val", "validation": "val", "eval": "val", "evaluation": "val",
    "dev": "val", "vl": "val",
    "test": "test", "testing": "test", "tst": "test",
}
_ACC_TOKENS = {
    "acc", "accuracy", "top1", "top5", "f1", "f1score", "auc", "auroc", "roc", "precision",
    "recall", "iou", "miou", "dice", "map", "map50", "bleu", "rouge", "r2", "score", "jaccard",
    "mcc", "kappa", "ap", "sacrebleu", "exact", "em",
}
_ERROR_TOKENS = {
    "mae", "mse", "rmse", "epe", "perplexity", "ppl", "wer", "cer", "error", "err", "mape",
    "smape", "nmse", "l1", "l2", "distance", "dist",
}
# average precision at an IoU threshold: AP50, mAP50, mAP50-95 ("mAP50(B)" splits as m, ap50, b)
_AP_RE = re.compile(r"m?ap\d+")
_LR_GROUP_RE = re.compile(r"lr\d+")  # one parameter group's lr: YOLOv5's x/lr0, x/lr1
_LR_TOKENS = {"lr", "learning_rate", "learningrate"}
_TIME_TOKENS = {"time", "duration", "it_s", "its", "throughput", "samples_per_second",
                "steps_per_second", "runtime", "secs", "seconds"}


def _tokens(name: str) -> list[str]:
    text = re.sub(r"([a-z])([A-Z])", r"\1_\2", name)  # trainLoss -> train_Loss
    return [t for t in re.split(r"[^a-z0-9]+", text.lower()) if t]


def infer_role(name: str) -> str:
    """Map a metric name to a role such as `val_loss`, `train_accuracy`, `lr` or `other`.

    >>> infer_role("eval_loss"), infer_role("Loss/val"), infer_role("train/position_loss")
    ('val_loss', 'val_loss', 'train_loss')
    """
    toks = _tokens(name)
    joined = "_".join(toks)
    if not toks:
        return "other"
    if joined in {"epoch", "epochs", "step", "global_step", "steps", "iteration", "iter"}:
        return "epoch" if joined.startswith("epoch") else "other"
    if joined in {"total_flos", "train_runtime", "train_samples_per_second",
                  "train_steps_per_second", "eval_runtime", "eval_samples_per_second",
                  "eval_steps_per_second"}:
        return "time" if "runtime" in joined or "second" in joined else "other"
    if any(t in _LR_TOKENS or _LR_GROUP_RE.fullmatch(t) for t in toks) or joined.startswith("lr_") \
            or "learning_rate" in joined:
        return "lr"
    if ("grad" in joined and "norm" in joined) or "gnorm" in toks:  # fairseq logs `gnorm`
        return "grad_norm"
    if any(t in _TIME_TOKENS for t in toks) or joined.endswith("per_second"):
        return "time"
    if toks[-1] in {"scale", "scaler"}:  # fp16 `loss_scale` (fairseq, apex): a factor, not a loss
        return "other"
    split = next((_SPLIT_TOKENS[t] for t in toks if t in _SPLIT_TOKENS), None)
    if split is None:
        # Keras and many scripts: "val_loss" handled above; "vloss" / "valloss" are common too
        if joined.startswith(("vloss", "valloss", "val")):
            split = "val"
    kind = None
    # an acronym is one word before the camelCase split cuts it: "IoU" -> io, u; "mAP50" -> m, ap50
    words = set(toks) | {t for t in re.split(r"[^a-z0-9]+", name.lower()) if t}
    if any("loss" in t or t in {"nll", "ce", "cross_entropy", "bce", "objective"} for t in toks):
        kind = "loss"
    elif any(t in _ACC_TOKENS or _AP_RE.fullmatch(t) for t in words) or joined.endswith(("accuracy", "acc")):
        kind = "accuracy"
    elif any(t in _ERROR_TOKENS for t in toks):
        kind = "error"
    if kind is None:
        return "other"
    # An unqualified loss is the training loss (Keras "loss", HF "loss", plain scripts).
    return f"{split or 'train'}_{kind}"


def flatten_names(mapping: Mapping, sep: str = "/", prefix: str = "", skip=None) -> dict:
    """{"val": {"loss": 1}} -> {"val/loss": 1}: nested logs and configs as flat metric names.

    `skip(d)` says which nested dicts to drop whole (W&B media entries carry a "_type").
    """
    out: dict = {}
    for k, v in mapping.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            if skip is None or not skip(v):
                out.update(flatten_names(v, sep, key + sep, skip))
        else:
            out[key] = v
    return out


def split_role(role: str) -> tuple[str | None, str]:
    """'val_loss' -> ('val', 'loss'); 'lr' -> (None, 'lr')."""
    head, _, tail = role.partition("_")
    if head in SPLITS and tail:
        return head, tail
    return None, role


@dataclass(frozen=True, eq=False)
class Series:
    """One metric's history. Arrays are read-only; `steps` are the x axis the logger used."""

    name: str
    steps: np.ndarray
    values: np.ndarray
    epochs: np.ndarray | None = None
    wall_times: np.ndarray | None = None
    role: str = ""

    def __post_init__(self) -> None:
        steps = np.asarray(self.steps, dtype=np.float64).ravel()
        values = np.asarray(self.values, dtype=np.float64).ravel()
        if steps.shape != values.shape:
            raise ValueError(
                f"series {self.name!r}: {steps.size} steps but {values.size} values"
            )
        object.__setattr__(self, "steps", _readonly(steps))
        object.__setattr__(self, "values", _readonly(values))
        for attr in ("epochs", "wall_times"):
            arr = getattr(self, attr)
            if arr is not None:
                arr = np.asarray(arr, dtype=np.float64).ravel()
                if arr.shape != steps.shape:
                    raise ValueError(f"series {self.name!r}: {attr} has {arr.size} entries, steps {steps.size}")
                if np.isnan(arr).all():
                    arr = None
                else:
                    arr = _readonly(arr)
                object.__setattr__(self, attr, arr)
        if not self.role:
            object.__setattr__(self, "role", infer_role(self.name))

    # -- role ----------------------------------------------------------------------------
    @property
    def split(self) -> str | None:
        return split_role(self.role)[0]

    @property
    def kind(self) -> str:
        return split_role(self.role)[1]

    @property
    def higher_is_better(self) -> bool:
        return self.kind in HIGHER_IS_BETTER_KINDS

    def __len__(self) -> int:
        return int(self.values.size)

    def __repr__(self) -> str:
        return f"Series({self.name!r}, role={self.role!r}, n={len(self)})"

    # -- views ---------------------------------------------------------------------------
    @property
    def has_epochs(self) -> bool:
        return self.epochs is not None

    @property
    def is_per_epoch(self) -> bool:
        """One point per epoch (a validation metric, an epoch-mean training loss)."""
        if self.epochs is None or len(self) == 0:
            return False
        ep = self.epochs[np.isfinite(self.epochs)]
        # Whole epochs only: HF's fractional epoch (9.99, the step's share of the data seen) is a
        # label on a step, not an epoch boundary, even when it was logged once an epoch.
        return ep.size == len(self) and bool((ep == np.floor(ep)).all()) and np.unique(ep).size == ep.size

    def normalized(self) -> Series:
        """Sorted by step, one value per step (the last logged wins, as after a resumed run)."""
        if len(self) == 0:
            return self
        steps = self.steps
        if np.all(np.diff(steps) > 0):
            return self
        order = np.argsort(steps, kind="stable")
        s = steps[order]
        keep = np.ones(s.size, dtype=bool)
        keep[:-1] = s[1:] != s[:-1]  # last occurrence of each step
        idx = order[keep]
        return self._take(idx)

    def finite(self) -> Series:
        mask = np.isfinite(self.values)
        return self if mask.all() else self._take(np.flatnonzero(mask))

    def _take(self, idx: np.ndarray) -> Series:
        return replace(
            self,
            steps=self.steps[idx],
            values=self.values[idx],
            epochs=None if self.epochs is None else self.epochs[idx],
            wall_times=None if self.wall_times is None else self.wall_times[idx],
        )

    def per_epoch(self) -> Series:
        """Mean of the values in each whole epoch (how Lightning's `on_epoch=True` reduces).

        Keeps the series as it is when no epochs are known or it is already one point an epoch,
        and always for a validation or test series: each of its points is a whole evaluation, and
        the mean of two evaluations is a value nobody measured.
        """
        if self.epochs is None or self.is_per_epoch or len(self) == 0 or self.split in ("val", "test"):
            return self
        ep = np.floor(self.epochs)
        ok = np.isfinite(ep) & np.isfinite(self.values)
        if not ok.any():
            return self
        uniq, inv = np.unique(ep[ok], return_inverse=True)
        sums = np.bincount(inv, weights=self.values[ok])
        counts = np.bincount(inv)
        last_step = np.zeros(uniq.size)
        np.maximum.at(last_step, inv, self.steps[ok])
        wall = None
        if self.wall_times is not None:
            wall = np.full(uniq.size, np.nan)
            np.fmax.at(wall, inv, self.wall_times[ok])
        return Series(self.name, last_step, sums / counts, uniq, wall, self.role)

    def x(self, unit: str | None = None) -> np.ndarray:
        """The x axis findings should speak in: epochs when known, else steps."""
        unit = unit or self.unit
        return self.epochs if unit == "epoch" and self.epochs is not None else self.steps

    @property
    def unit(self) -> str:
        return "epoch" if self.is_per_epoch else "step"


def _readonly(arr: np.ndarray) -> np.ndarray:
    arr = np.array(arr, copy=True) if arr.flags.writeable and arr.base is not None else arr
    arr.flags.writeable = False
    return arr


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint found beside the logs. Never opened: the name tells epoch/step/tag."""

    path: str
    epoch: int | None = None
    step: int | None = None
    tag: str | None = None  # "best", "last", "latest" when the name says so

    def to_dict(self) -> dict:
        return {"path": self.path, "epoch": self.epoch, "step": self.step, "tag": self.tag}


@dataclass(frozen=True)
class RunHistory:
    """Everything read from one run: its series, where they came from, hparams, checkpoints."""

    series: Mapping[str, Series]
    path: str = ""
    format: str = ""
    run: str = ""
    hparams: Mapping[str, Any] = field(default_factory=dict)
    checkpoints: tuple[Checkpoint, ...] = ()
    notes: tuple[str, ...] = ()  # e.g. "events file truncated after step 4100 (crashed run?)"
    files: Mapping[str, str] = field(default_factory=dict)  # series name -> the file it was read from
    parse_stats: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # file -> lines understood
    # What the logger says about the run itself: "RUNNING", "FINISHED", "FAILED", "KILLED" (MLflow's
    # RunStatus), "" when the format does not record it. A crashed run is what people come with.
    status: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)  # run id, name, experiment, times, tags

    def __post_init__(self) -> None:
        object.__setattr__(self, "series", dict(self.series))
        object.__setattr__(self, "checkpoints", tuple(self.checkpoints))
        object.__setattr__(self, "notes", tuple(self.notes))
        object.__setattr__(self, "meta", dict(self.meta))

    @classmethod
    def from_dict(cls, data: Mapping[str, Iterable[float]], **kwargs) -> RunHistory:
        """Build a run from plain lists, one value per step or epoch (handy in notebooks/tests).

        `epochs=True` says the index is the epoch number.
        """
        per_epoch = kwargs.pop("epochs", False)
        series = {}
        for name, vals in data.items():
            v = np.asarray(list(vals), dtype=np.float64)
            idx = np.arange(v.size, dtype=np.float64)
            series[name] = Series(name, idx, v, idx if per_epoch else None)
        return cls(series, **kwargs)

    # -- lookups -------------------------------------------------------------------------
    def __getitem__(self, name: str) -> Series:
        try:
            return self.series[name]
        except KeyError:
            raise KeyError(
                f"no series named {name!r}; this run has: {', '.join(sorted(self.series)) or 'none'}"
            ) from None

    def __contains__(self, name: str) -> bool:
        return name in self.series

    def names(self) -> list[str]:
        return list(self.series)

    def with_roles(self, roles: Mapping[str, str]) -> RunHistory:
        """Override the inferred role of some series, e.g. {"val/epe": "val_loss"}."""
        unknown = [n for n in roles if n not in self.series]
        if unknown:
            raise KeyError(
                f"cannot set a role for {', '.join(unknown)}: no such series; "
                f"this run has: {', '.join(sorted(self.series))}"
            )
        bad = [r for r in roles.values() if r not in ROLES]
        if bad:
            raise ValueError(f"unknown role {bad[0]!r}; roles are: {', '.join(ROLES)}")
        new = {n: (replace(s, role=roles[n]) if n in roles else s) for n, s in self.series.items()}
        return replace(self, series=new)

    def by_role(self, role: str) -> list[Series]:
        return [s for s in self.series.values() if s.role == role]

    def has_role(self, role: str) -> bool:
        return any(s.role == role and len(s) > 0 for s in self.series.values())

    def primary(self, role: str) -> Series | None:
        """The series that best stands for a role: `val_loss` over `val_loss_x`, the total
        over its components, the epoch-level over the step-level, the longest otherwise."""
        cands = [s for s in self.series.values() if s.role == role and len(s) > 0]
        if not cands:
            return None
        canon = role.replace("_", "")

        def rank(s: Series) -> tuple:
            toks = _tokens(s.name)
            flat = "".join(toks)
            exact = flat in {canon, canon.replace("val", "valid"), "eval" + role.split("_")[-1],
                             role.split("_")[-1]}
            total = "total" in toks or "overall" in toks
            epoch_level = "epoch" in toks
            step_level = "step" in toks
            return (not exact, not total, not epoch_level, step_level, len(toks), -len(s), s.name)

        return sorted(cands, key=rank)[0]

    def normalized(self) -> RunHistory:
        return replace(self, series={n: s.normalized() for n, s in self.series.items()})

    def source(self) -> dict:
        extra = {k: v for k, v in (("status", self.status), ("meta", self.meta)) if v}
        out = {
            "path": self.path,
            "format": self.format,
            "run": self.run,
            "metrics": [
                {"name": s.name, "role": s.role, "points": len(s), "unit": s.unit,
                 **({"file": self._rel(self.files[n])} if n in self.files else {})}
                for n, s in self.series.items()
            ],
            "checkpoints": [c.to_dict() for c in self.checkpoints],
            "notes": list(self.notes),
            **extra,
        }
        if self.parse_stats:
            out["files"] = [{"path": self._rel(f), **dict(st)} for f, st in self.parse_stats.items()]
        return out

    def _rel(self, file: str) -> str:
        """A series' file relative to the run folder when it lies inside it."""
        import os

        if not self.path:
            return file
        rel = os.path.relpath(file, self.path)
        return file if rel.startswith("..") else rel
