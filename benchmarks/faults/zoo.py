"""The zoo: six small tasks that need no download, and the fault operators of expected.py.

`build(task, op, seed)` returns a Setup: the model, its optimizer and loss, the data and the
training plan, with the fault `op` injected (op "clean" is the clean twin). Every model is a
small MLP (trunk -> head) so one training takes a second or two on one CPU core.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

TASKS = ("digits", "breast_cancer", "wine", "signal1d", "boxes", "charlm")
CLASSIFY = ("digits", "breast_cancer", "wine", "signal1d")
# which operators apply to which task (a softmax head on a box regressor is not the same fault)
COMMON = ("lr_high", "lr_low", "few_epochs", "many_epochs", "wrong_optimizer", "heavy_reg", "no_reg",
          "missing_zero_grad", "zero_init", "frozen", "disconnected", "detached")
OPS = {
    **{t: COMMON + ("label_noise", "unbalanced", "softmax_ce", "wrong_loss") for t in CLASSIFY},
    "boxes": COMMON + ("tanh_unscaled", "giou_disjoint", "no_input_norm"),
    "charlm": COMMON + ("softmax_ce", "wrong_loss"),
}
OPS["breast_cancer"] += ("no_input_norm",)
OPS["wine"] += ("no_input_norm",)
OPS["signal1d"] += ("no_input_norm",)


@dataclass
class Setup:
    task: str
    op: str
    seed: int
    kind: str  # "cls", "box" or "lm"
    model: nn.Module
    optimizer: torch.optim.Optimizer
    loss_fn: object
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    epochs: int
    batch_size: int = 64
    zero_grad: bool = True
    notes: dict = field(default_factory=dict)


class Net(nn.Module):
    """trunk -> head, with the model-level faults as switches."""

    def __init__(self, n_in, n_out, *, hidden=64, dropout=0.1, head_act=None, detach=False,
                 disconnected=False, vocab=None, context=None):
        super().__init__()
        self.embed = nn.Embedding(vocab, 16) if vocab else None
        width = 16 * context if vocab else n_in
        self.trunk = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout),
                                   nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.head = nn.Linear(hidden, n_out)
        self.head_act = head_act
        self.detach = detach
        # seed 002's "working_memory": a module whose output never reaches the loss
        self.side = nn.Linear(width, hidden) if disconnected else None

    def forward(self, x):
        if self.embed is not None:
            x = self.embed(x).flatten(1)
        h = self.trunk(x)
        if self.side is not None:
            _ = torch.relu(self.side(x))  # computed, then dropped: the bug
        if self.detach:
            h = h.detach()
        out = self.head(h)
        if self.head_act == "softmax":
            out = torch.softmax(out, dim=-1)
        elif self.head_act == "tanh":
            out = torch.tanh(out)
        elif self.head_act == "sigmoid":
            out = torch.sigmoid(out)
        return out


# -- data ------------------------------------------------------------------------------------
def _standardise(x_tr, x_va):
    mu, sd = x_tr.mean(0), x_tr.std(0)
    sd = np.where(sd > 1e-6, sd, 1.0)  # digits has pixels that are 0 in every training image
    return (x_tr - mu) / sd, (x_va - mu) / sd


def _split(x, y, rng, val_frac=0.3):
    idx = rng.permutation(len(x))
    n_val = int(len(x) * val_frac)
    return x[idx[n_val:]], y[idx[n_val:]], x[idx[:n_val]], y[idx[:n_val]]


def _sklearn(name):
    from sklearn import datasets

    d = {"digits": datasets.load_digits, "breast_cancer": datasets.load_breast_cancer,
         "wine": datasets.load_wine}[name]()
    return d.data.astype(np.float32), d.target.astype(np.int64)


def _signal1d(rng, n=1500, length=40):
    """MNIST-1D-like (Greydanus 2020): 10 templates, randomly shifted, scaled, with noise."""
    templates = rng.normal(0, 1, (10, 12)).cumsum(1)
    y = rng.integers(0, 10, n)
    x = np.zeros((n, length), np.float32)
    for i, c in enumerate(y):
        pos = rng.integers(0, length - 12)
        x[i, pos:pos + 12] = templates[c] * rng.uniform(0.8, 1.2)
    x += rng.normal(0, 0.3, x.shape)
    return x.astype(np.float32), y.astype(np.int64)


def _boxes(rng, n=1000, size=16, tiny=False):
    """Where is the object (seeds 000/001): one bright rectangle on noise; target its corners in [0, 1]."""
    x = rng.uniform(0, 60, (n, size, size)).astype(np.float32)
    y = np.zeros((n, 4), np.float32)
    for i in range(n):
        w, h = (1, 1) if tiny else rng.integers(3, 8, 2)
        x0, y0 = rng.integers(0, size - w + 1), rng.integers(0, size - h + 1)
        x[i, y0:y0 + h, x0:x0 + w] = 255.0
        y[i] = (x0 / size, y0 / size, (x0 + w) / size, (y0 + h) / size)
    return x.reshape(n, -1), y


_LM_MODULES = ("argparse", "json", "logging", "re", "subprocess", "textwrap", "unittest", "collections",
               "functools", "itertools", "inspect", "pickle", "typing", "difflib", "heapq", "random",
               "statistics", "string", "decimal", "fractions", "pathlib", "shutil", "tempfile", "zipfile")


def _charlm(context=8, n_chars=24000):
    """A tiny character LM on the docstrings of the standard library: text every Python install has."""
    import importlib

    text = "\n".join(importlib.import_module(m).__doc__ or "" for m in _LM_MODULES)[:n_chars]
    vocab = sorted(set(text))
    index = {c: i for i, c in enumerate(vocab)}
    ids = np.array([index[c] for c in text], np.int64)
    x = np.stack([ids[i:i + context] for i in range(len(ids) - context)])
    y = ids[context:]
    return x, y, len(vocab)


# -- the builder ------------------------------------------------------------------------------
BASE_LR = 3e-3
EPOCHS = {"digits": 8, "breast_cancer": 12, "wine": 30, "signal1d": 25, "boxes": 10, "charlm": 4}


def build(task: str, op: str, seed: int) -> Setup:
    if op != "clean" and op not in OPS[task]:
        raise ValueError(f"operator {op!r} does not apply to task {task!r}; it takes {OPS[task]}")
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    kind = "box" if task == "boxes" else "lm" if task == "charlm" else "cls"
    vocab = context = None
    if task in ("digits", "breast_cancer", "wine"):
        x, y = _sklearn(task)
    elif task == "signal1d":
        x, y = _signal1d(rng)
    elif task == "boxes":
        x, y = _boxes(rng, tiny=op == "giou_disjoint")
    else:
        x, y, vocab = _charlm()
        context = 8
    if kind == "lm":  # contiguous split: the validation text is text the model has not seen
        cut = int(len(x) * 0.8)
        x_tr, y_tr, x_va, y_va = x[:cut], y[:cut], x[cut:], y[cut:]
    else:
        x_tr, y_tr, x_va, y_va = _split(x, y, rng)

    epochs, dropout, wd, lr = EPOCHS[task], 0.1, 1e-4, BASE_LR
    if op in ("many_epochs", "no_reg", "label_noise"):
        # memorisation needs a small training split and time: keep 25 % of the training rows
        keep = rng.permutation(len(x_tr))[: max(40, len(x_tr) // 4)]
        x_tr, y_tr = x_tr[keep], y_tr[keep]
        epochs *= 6 if op == "many_epochs" else 3
        if op == "no_reg":
            dropout, wd = 0.0, 0.0
    if op == "few_epochs":
        epochs = max(1, epochs // 8)
    if op == "label_noise":  # DeepCrime TCL: 40 % of the training labels replaced at random
        flip = rng.random(len(y_tr)) < 0.4
        y_tr = y_tr.copy()
        y_tr[flip] = rng.permutation(y_tr[flip])
    if op == "unbalanced":  # DeepCrime TUD: class 0 keeps all rows, the others 5 % of theirs
        keep = (y_tr == y_tr.min()) | (rng.random(len(y_tr)) < 0.05)
        x_tr, y_tr = x_tr[keep], y_tr[keep]
    if op == "heavy_reg":
        dropout, wd = 0.7, 1.0
    if kind != "lm" and op != "no_input_norm":
        x_tr, x_va = _standardise(x_tr, x_va)
    elif op == "no_input_norm" and task == "signal1d":  # a raw sensor: offset and gain not removed
        x_tr, x_va = x_tr * 40 + 500, x_va * 40 + 500
    if kind == "box" and op == "tanh_unscaled":  # targets in pixels, head still a tanh
        y_tr, y_va = y_tr * 16, y_va * 16

    n_in = x_tr.shape[1]
    n_out = {"cls": int(y.max()) + 1, "box": 4, "lm": vocab}[kind]
    head_act = {"softmax_ce": "softmax", "tanh_unscaled": "tanh", "giou_disjoint": "sigmoid"}.get(op)
    model = Net(n_in, n_out, dropout=dropout, head_act=head_act, detach=op == "detached",
                disconnected=op == "disconnected", vocab=vocab, context=context)
    if op == "zero_init":  # DeepCrime WCI: every weight and bias set to zero
        with torch.no_grad():
            for name, p in model.named_parameters():
                if not name.startswith("embed."):  # an embedding is a lookup table, not a layer's init
                    p.zero_()
    if op == "lr_high":
        lr = BASE_LR * 300
    elif op == "lr_low":
        lr = BASE_LR / 1000
    params = model.head.parameters() if op == "frozen" else model.parameters()
    if op == "wrong_optimizer":  # plain SGD at the LR the run was tuned for with Adam
        optimizer = torch.optim.SGD(params, lr=lr, weight_decay=wd)
    else:
        optimizer = torch.optim.Adam(params, lr=lr, weight_decay=wd)

    if kind == "box":
        loss_fn = giou_loss if op == "giou_disjoint" else nn.MSELoss() if op == "tanh_unscaled" else nn.SmoothL1Loss(beta=0.05)
    elif op == "wrong_loss":
        loss_fn = nn.NLLLoss()  # DeepCrime LCH: NLLLoss on raw logits (it expects log-probabilities)
    else:
        loss_fn = nn.CrossEntropyLoss()

    def t(a, dtype=None):
        return torch.as_tensor(a, dtype=dtype)

    return Setup(task, op, seed, kind, model, optimizer, loss_fn, t(x_tr, torch.long if kind == "lm" else torch.float32),
                 t(y_tr), t(x_va, torch.long if kind == "lm" else torch.float32), t(y_va), epochs,
                 batch_size=256 if kind == "lm" else 64, zero_grad=op != "missing_zero_grad")


def giou_loss(pred, target):
    """1 - GIoU (Rezatofighi et al., CVPR 2019), boxes as (x0, y0, x1, y1); seed 001's loss."""
    px0, py0 = torch.minimum(pred[:, 0], pred[:, 2]), torch.minimum(pred[:, 1], pred[:, 3])
    px1, py1 = torch.maximum(pred[:, 0], pred[:, 2]), torch.maximum(pred[:, 1], pred[:, 3])
    tx0, ty0, tx1, ty1 = target.unbind(1)
    iw = (torch.minimum(px1, tx1) - torch.maximum(px0, tx0)).clamp(min=0)
    ih = (torch.minimum(py1, ty1) - torch.maximum(py0, ty0)).clamp(min=0)
    inter = iw * ih
    union = (px1 - px0) * (py1 - py0) + (tx1 - tx0) * (ty1 - ty0) - inter
    iou = inter / union.clamp(min=1e-9)
    cw = torch.maximum(px1, tx1) - torch.minimum(px0, tx0)
    ch = torch.maximum(py1, ty1) - torch.minimum(py0, ty0)
    hull = (cw * ch).clamp(min=1e-9)
    return (1 - (iou - (hull - union) / hull)).mean()
