"""Small real models on bundled data for the probe tests: healthy twins and models with one fault."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn


def digits(n: int = 64, *, normalize: bool = True, seed: int = 0):
    X, y = load_digits(return_X_y=True)
    if normalize:
        X = (X - X.mean(0)) / (X.std(0) + 1e-8)
    idx = np.random.default_rng(seed).permutation(len(X))[:n]
    return torch.tensor(X[idx], dtype=torch.float32), torch.tensor(y[idx])


def mlp(hidden: int = 64, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))


class SmallCNN(nn.Module):
    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
        )
        self.dropout = nn.Dropout(0.1)
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        x = x.view(-1, 1, 8, 8)
        return self.head(self.dropout(self.features(x).flatten(1)))


class SmallTransformer(nn.Module):
    """Reads an 8x8 digit as 8 tokens of 8 pixels (rows)."""

    def __init__(self, d: int = 32, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.embed = nn.Linear(8, d)
        self.pos = nn.Parameter(torch.randn(1, 8, d) * 0.02)
        layer = nn.TransformerEncoderLayer(d, nhead=4, dim_feedforward=64, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.head = nn.Linear(d, 10)

    def forward(self, x):
        h = self.encoder(self.embed(x.view(-1, 8, 8)) + self.pos)
        return self.head(h.mean(dim=1))


def healthy(kind: str):
    """(model, batch, loss_fn, optimizer) for a healthy twin: mlp, cnn or transformer."""
    x, y = digits(64)
    model = {"mlp": mlp, "cnn": SmallCNN, "transformer": SmallTransformer}[kind]()
    return model, (x, y), nn.CrossEntropyLoss(), torch.optim.Adam(model.parameters(), lr=1e-3)


# -- faults --------------------------------------------------------------------------------------
# Each factory returns (model, batch, loss_fn, optimizer) with exactly one planted fault (some
# faults imply others: a model that ignores its input also cannot overfit the batch).

def _adam(model, lr=1e-3):
    return torch.optim.Adam(model.parameters(), lr=lr)


class Disconnected(nn.Module):
    """Seed 002: working_memory is computed but never used, foveation is detached, gate is zeroed."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.backbone = nn.Linear(64, 32)
        self.working_memory = nn.Linear(32, 32)
        self.foveation = nn.Linear(32, 32)
        self.gate = nn.Linear(32, 32)
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        h = torch.relu(self.backbone(x))
        _memory = self.working_memory(h)  # computed, never used
        f = self.foveation(h).detach()  # no gradient flows back
        return self.head(h + f + 0.0 * self.gate(h))  # on the path, but its gradient is exactly 0


def dead_gradients():
    x, y = digits()
    m = Disconnected()
    return m, (x, y), nn.CrossEntropyLoss(), _adam(m)


def deep(act, layers=12, width=32, gain=1.0, seed=0):
    torch.manual_seed(seed)
    mods = [nn.Linear(64, width), act()]
    for _ in range(layers - 2):
        mods += [nn.Linear(width, width), act()]
    mods.append(nn.Linear(width, 10))
    m = nn.Sequential(*mods)
    if gain != 1.0:
        with torch.no_grad():
            for p in m.parameters():
                if p.dim() == 2:
                    p.mul_(gain)
    return m


def vanishing_gradients():
    x, y = digits()
    m = deep(nn.Sigmoid, layers=12)
    return m, (x, y), nn.CrossEntropyLoss(), _adam(m)


def exploding_gradients():
    x, y = digits()
    m = deep(nn.Identity, layers=12, gain=3.0)
    return m, (x, y), nn.CrossEntropyLoss(), torch.optim.SGD(m.parameters(), lr=1e-3)


def params_not_in_optimizer():
    x, y = digits()
    m = mlp()
    opt = _adam(m)
    m[2] = nn.Linear(64, 10)  # a new head replaced after the optimizer was built
    return m, (x, y), nn.CrossEntropyLoss(), opt


def lr_too_high():
    x, y = digits()
    m = mlp()
    return m, (x, y), nn.CrossEntropyLoss(), _adam(m, lr=1.0)


def lr_too_low():
    x, y = digits()
    m = mlp()
    return m, (x, y), nn.CrossEntropyLoss(), _adam(m, lr=1e-6)


class IgnoresInput(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = mlp()

    def forward(self, x):
        return self.net(x * 0.0)


def input_independent_output():
    x, y = digits()
    m = IgnoresInput()
    return m, (x, y), nn.CrossEntropyLoss(), _adam(m)


def cannot_overfit_batch():
    return input_independent_output()


def boxes(n=64, seed=0):
    """Regression targets: 4 box coordinates in [0, 1] that depend on the digit image."""
    x, y = digits(n, seed=seed)
    X, _ = load_digits(return_X_y=True)
    raw = torch.tensor(X, dtype=torch.float32)[np.random.default_rng(seed).permutation(len(X))[:n]]
    cx = (raw[:, :32].sum(1) / 300).clamp(0.05, 0.95)
    cy = (raw[:, ::2].sum(1) / 300).clamp(0.05, 0.95)
    t = torch.stack([cx - 0.02, cy - 0.02, cx + 0.02, cy + 0.02], dim=1)
    return x, t


class BoxHead(nn.Module):
    def __init__(self, scale=1.0, bias=0.0, act="sigmoid", seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Sequential(nn.Linear(64, 32), nn.ReLU())
        self.position_head = nn.Linear(32, 4)
        self.act = act
        with torch.no_grad():
            self.position_head.weight.mul_(scale)
            self.position_head.bias.fill_(bias)

    def forward(self, x):
        out = self.position_head(self.body(x))
        if self.act == "sigmoid":
            return torch.sigmoid(out)
        if self.act == "tanh":
            return torch.tanh(out)
        return out


def healthy_regression():
    x, t = boxes()
    m = BoxHead(act="none")
    return m, (x, t), nn.MSELoss(), _adam(m)


def prediction_collapse():
    # seed 001: a position head whose outputs hardly depend on the features (std ~1e-4 vs ~0.28)
    x, t = boxes()
    m = BoxHead(scale=1e-4, act="sigmoid")
    return m, (x, t), nn.MSELoss(), _adam(m)


def prediction_collapse_classes():
    x, y = digits()
    m = mlp()
    with torch.no_grad():
        m[2].bias[3] = 50.0  # every example is predicted as class 3
    return m, (x, y), nn.CrossEntropyLoss(), _adam(m)


def saturated_activations():
    # seed 002: a tanh coordinate head stuck at -1
    x, t = boxes()
    m = BoxHead(bias=-10.0, act="tanh")
    return m, (x, t * 2 - 1), nn.MSELoss(), _adam(m)


def dead_relu():
    x, y = digits()
    m = mlp()
    with torch.no_grad():
        m[0].bias.fill_(-20.0)
    return m, (x, y), nn.CrossEntropyLoss(), _adam(m)


def init_loss_mismatch():
    x, y = digits()
    m = mlp()
    with torch.no_grad():
        m[2].weight.mul_(30.0)
    return m, (x, y), nn.CrossEntropyLoss(), _adam(m)


def breast_cancer(n_pos: int, n_neg: int):
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    idx = np.concatenate([np.flatnonzero(y == 1)[:n_pos], np.flatnonzero(y == 0)[:n_neg]])
    return torch.tensor(X[idx], dtype=torch.float32), torch.tensor(y[idx])


def binary_mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(30, 16), nn.ReLU(), nn.Linear(16, 2))


def class_imbalance():
    x, y = breast_cancer(66, 34)  # seed 003: 66% / 34%
    m = binary_mlp()
    return m, (x, y), nn.CrossEntropyLoss(), _adam(m)


def healthy_binary():
    x, y = breast_cancer(50, 50)
    m = binary_mlp()
    return m, (x, y), nn.CrossEntropyLoss(), _adam(m)


class Autoencoder(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.enc = nn.Sequential(nn.Linear(64, 16), nn.ReLU())
        self.dec = nn.Linear(16, 64)

    def forward(self, x):
        return torch.sigmoid(self.dec(self.enc(x)))


def output_range_mismatch():
    # a sigmoid decoder asked to reproduce raw 0..16 pixel values
    X, _ = load_digits(return_X_y=True)
    raw = torch.tensor(X[:64], dtype=torch.float32)
    m = Autoencoder()
    return m, ((raw - 4.9) / 6.0, raw), nn.MSELoss(), _adam(m)


def healthy_autoencoder():
    X, _ = load_digits(return_X_y=True)
    raw = torch.tensor(X[:64], dtype=torch.float32)
    m = Autoencoder()
    return m, ((raw - 4.9) / 6.0, raw / 16.0), nn.MSELoss(), _adam(m)


def double_softmax():
    x, y = digits()
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10), nn.Softmax(dim=1))
    return m, (x, y), nn.CrossEntropyLoss(), _adam(m)


def unnormalized_inputs():
    X, y = load_digits(return_X_y=True)
    x = torch.tensor(X[:64] / 16.0 * 255.0, dtype=torch.float32)  # 0..255 pixels
    m = mlp()
    return m, (x, torch.tensor(y[:64])), nn.CrossEntropyLoss(), _adam(m)


def nan_inputs():
    x, y = digits()
    x[3, 5] = float("nan")
    m = mlp()
    return m, (x, y), nn.CrossEntropyLoss(), _adam(m)


def weight_update_ratio():
    return lr_too_high()


# -- losses for weak_loss_gradient -----------------------------------------------------------------

def giou_loss(pred, target, eps=1e-7):
    """Generalized IoU loss (Rezatofighi et al. 2019) for (x1, y1, x2, y2) boxes, mean over the batch."""
    x1 = torch.maximum(pred[:, 0], target[:, 0])
    y1 = torch.maximum(pred[:, 1], target[:, 1])
    x2 = torch.minimum(pred[:, 2], target[:, 2])
    y2 = torch.minimum(pred[:, 3], target[:, 3])
    inter = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
    area_p = (pred[:, 2] - pred[:, 0]).clamp(min=0) * (pred[:, 3] - pred[:, 1]).clamp(min=0)
    area_t = (target[:, 2] - target[:, 0]) * (target[:, 3] - target[:, 1])
    union = area_p + area_t - inter
    iou = inter / (union + eps)
    cx1 = torch.minimum(pred[:, 0], target[:, 0])
    cy1 = torch.minimum(pred[:, 1], target[:, 1])
    cx2 = torch.maximum(pred[:, 2], target[:, 2])
    cy2 = torch.maximum(pred[:, 3], target[:, 3])
    enclose = (cx2 - cx1) * (cy2 - cy1)
    return (1 - iou + (enclose - union) / (enclose + eps)).mean()


class SmallBoxes(nn.Module):
    """Seed 001: tiny ground-truth boxes, predictions clustered as small boxes at the centre."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.head = nn.Linear(64, 4)
        self.register_buffer("centre", torch.tensor([0.49, 0.49, 0.51, 0.51]))

    def forward(self, x):
        return self.centre + 0.01 * self.head(x)


def tiny_boxes(n=64):
    x, _ = digits(n)
    g = torch.Generator().manual_seed(0)
    corner = torch.rand(n, 2, generator=g) * 0.3  # top-left region, far from the centre
    return x, torch.cat([corner, corner + torch.tensor([0.026, 0.04])], dim=1)


def weak_loss_gradient():
    x, t = tiny_boxes()
    m = SmallBoxes()
    return m, (x, t), giou_loss, _adam(m)


def healthy_box_l1():
    x, t = tiny_boxes()
    m = SmallBoxes()
    return m, (x, t), nn.SmoothL1Loss(beta=0.1), _adam(m)


def seed000_loss(pred, target):
    """Seed 000's spatial loss with the 0.1 threshold: quadratic inside, linear outside, not continuous."""
    d = (pred - target).abs().sum(dim=-1)
    return torch.where(d < 0.1, d ** 2, 0.1 * d + 0.01).mean()


def piecewise_loss():
    x, t = boxes()
    x, t = x, t[:, :1]
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 1))
    return m, (x, t), seed000_loss, _adam(m)


FAULTS = {
    "dead_gradients": dead_gradients,
    "vanishing_gradients": vanishing_gradients,
    "exploding_gradients": exploding_gradients,
    "params_not_in_optimizer": params_not_in_optimizer,
    "lr_too_high": lr_too_high,
    "lr_too_low": lr_too_low,
    "cannot_overfit_batch": cannot_overfit_batch,
    "prediction_collapse": prediction_collapse,
    "input_independent_output": input_independent_output,
    "saturated_activations": saturated_activations,
    "dead_relu": dead_relu,
    "init_loss_mismatch": init_loss_mismatch,
    "class_imbalance": class_imbalance,
    "output_range_mismatch": output_range_mismatch,
    "double_softmax": double_softmax,
    "unnormalized_inputs": unnormalized_inputs,
    "nan_inputs": nan_inputs,
    "weak_loss_gradient": weak_loss_gradient,
    "weight_update_ratio": weight_update_ratio,
}

HEALTHY = {
    "mlp": lambda: healthy("mlp"),
    "cnn": lambda: healthy("cnn"),
    "transformer": lambda: healthy("transformer"),
    "regression": healthy_regression,
    "binary": healthy_binary,
    "autoencoder": healthy_autoencoder,
    "box_l1": healthy_box_l1,
}
