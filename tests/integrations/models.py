"""Small real models on scikit-learn's digits, each with a known fault, for the watch tests."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
from sklearn.datasets import load_digits

FAULTS = ("healthy", "high_lr", "disconnected", "overfit")


def digits(n_train: int = 1200):
    X, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    X = torch.tensor(X[order] / 16.0, dtype=torch.float32)
    y = torch.tensor(y[order])
    return (X[:n_train], y[:n_train]), (X[1300:], y[1300:])


class Net(nn.Module):
    """An MLP; with `disconnected=True` its `aux` branch is computed but detached from the loss."""

    def __init__(self, width: int = 64, disconnected: bool = False):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU())
        self.aux = nn.Linear(width, width)
        self.head = nn.Linear(width, 10)
        self.disconnected = disconnected

    def forward(self, x):
        h = self.body(x)
        a = self.aux(h)
        h = h + (a.detach() * 0 if self.disconnected else 0.1 * a)
        return self.head(h)


def setup(fault: str, seed: int = 0):
    """(model, optimizer, train data, val data, epochs) for one fault."""
    torch.manual_seed(seed)
    if fault == "overfit":  # 60 examples, a wide net, no regularisation: val loss turns up early
        train, val = digits(60)
        model = Net(width=256)
        return model, torch.optim.Adam(model.parameters(), lr=3e-3), train, val, 60
    train, val = digits()
    model = Net(disconnected=fault == "disconnected")
    lr = 2.0 if fault == "high_lr" else 0.1
    return model, torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9), train, val, 6


def train(fault: str, w=None, seed: int = 0, batch: int = 64, epochs: int | None = None, make_watch=None):
    """Plain loop; `make_watch(model, opt)` builds a watch (or None: no watch). Returns (losses, watch)."""
    model, opt, (X, y), (Xv, yv), n_epochs = setup(fault, seed)
    w = make_watch(model, opt) if make_watch else None
    losses = []
    loss_fn = nn.functional.cross_entropy
    try:
        for ep in range(epochs or n_epochs):
            model.train()
            for i in range(0, len(y), batch):
                xb, yb = X[i:i + batch], y[i:i + batch]
                out = model(xb)
                loss = loss_fn(out, yb)
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(loss.item())
                if w is not None:
                    w.step(loss=loss, outputs=out, targets=yb, epoch=ep)
                    if w.should_stop:
                        break
            model.eval()
            with torch.no_grad():
                val = loss_fn(model(Xv), yv).item()
            if w is not None:
                w.log(val_loss=val, epoch=ep)
                if w.should_stop:
                    break
    except BaseException as exc:
        if w is not None:
            w.close(exc)
        raise
    if w is not None:
        w.close()
    return losses, w
