"""The seed post-mortems as acceptance tests: rebuild the fault they describe, probe it, compare."""

from __future__ import annotations

import torch
from torch import nn

import traindoctor as td

from . import zoo
from .contract import assert_unchanged, capture


class Seed002(nn.Module):
    """Seed 002: an LSTM working memory computed but unused, a detached foveation, tanh heads stuck at -1."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.backbone = nn.Linear(64, 32)
        self.working_memory = nn.LSTM(32, 32, batch_first=True)
        self.foveation = nn.Linear(32, 32)
        self.x_head = nn.Linear(32, 1)
        self.y_head = nn.Linear(32, 1)
        with torch.no_grad():
            self.x_head.bias.fill_(-8.0)
            self.y_head.bias.fill_(-8.0)

    def forward(self, x):
        h = torch.relu(self.backbone(x))
        _memory, _ = self.working_memory(h.unsqueeze(1))
        h = h + self.foveation(h).detach()
        return torch.cat([torch.tanh(self.x_head(h)), torch.tanh(self.y_head(h))], dim=1)


def test_seed002_zero_gradient_modules_and_stuck_tanh():
    x, t = zoo.boxes()
    t = t[:, :2] * 2 - 1  # coordinates in [-1, 1] as in the seed
    model = Seed002()
    base = [p for n, p in model.named_parameters() if n.startswith("backbone")]
    new = [p for n, p in model.named_parameters() if not n.startswith("backbone")]
    # the seed's optimizer: 1e-3 for the backbone, 5x for the new modules
    opt = torch.optim.Adam([{"params": base, "lr": 1e-3}, {"params": new, "lr": 5e-3}])
    before = capture(model, opt)
    report = td.probe(model, (x, t), loss_fn=nn.MSELoss(), optimizer=opt)
    assert_unchanged(before, capture(model, opt))
    dead = report.get("dead_gradients")[0]
    assert dead.evidence["modules"] == ["working_memory", "foveation"]
    assert dead.evidence["dead_numel"] == sum(p.numel() for p in model.working_memory.parameters()) + 32 * 32 + 32
    sat = report.get("saturated_activations")[0]
    assert {s["site"] for s in sat.evidence["sites"]} == {"(root):tanh", "(root):tanh#2"}
    assert all(s["mean"] == -1.0 for s in sat.evidence["sites"])  # stuck at -1, -1
    assert report.has("prediction_collapse") and report.has("cannot_overfit_batch")


def test_seed001_collapsed_box_predictions():
    # seed 001: pred std ~1e-4 while the ground-truth coordinates have std ~0.28
    g = torch.Generator().manual_seed(1)
    x, _ = zoo.digits(64)
    corner = torch.rand(64, 2, generator=g) * 0.95
    t = torch.cat([corner, corner + 0.026], dim=1)
    model = zoo.BoxHead(scale=3e-3, act="sigmoid")
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    report = td.probe(model, (x, t), loss_fn=nn.SmoothL1Loss(), optimizer=opt)
    f = report.get("prediction_collapse")[0]
    assert 0.2 < f.evidence["target_std"] < 0.35
    assert f.evidence["pred_std"] < 1e-3 and f.evidence["ratio"] < f.evidence["thresholds"]["min_std_ratio"]
    assert str(f.evidence["pred_std"]) in f.title and str(f.evidence["target_std"]) in f.title
