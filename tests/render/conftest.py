"""Real runs for the renderer tests: a real torch training on bundled digits, logged by real writers."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def overfit_run(tmp_path_factory):
    """The demo's overfit setup: a real training logged to metrics.csv + checkpoints (about 1 s)."""
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    from traindoctor.demo import FAULTS, train

    return train(FAULTS["overfit"], tmp_path_factory.mktemp("overfit"))


@pytest.fixture(scope="session")
def overfit_report(overfit_run):
    import traindoctor as td

    return td.diagnose(overfit_run)


@pytest.fixture(scope="session")
def tb_run(tmp_path_factory):
    """A tiny overfitting MLP logged with torch.utils.tensorboard.SummaryWriter, plus a metric
    whose name is an HTML tag, so every renderer must escape what the logs say."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("tensorboard")
    from sklearn.datasets import load_digits
    from torch.utils.tensorboard import SummaryWriter

    torch.set_num_threads(1)
    torch.manual_seed(0)
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    y = torch.tensor(y)
    xt, yt, xv, yv = x[:60], y[:60], x[1000:1400], y[1000:1400]
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                                torch.nn.ReLU(), torch.nn.Linear(256, 10))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    out = tmp_path_factory.mktemp("tb")
    w = SummaryWriter(str(out))
    for epoch in range(40):
        loss = torch.nn.functional.cross_entropy(model(xt), yt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            logits = model(xv)
            vl = torch.nn.functional.cross_entropy(logits, yv).item()
            acc = (logits.argmax(1) == yv).float().mean().item()
        w.add_scalar("Loss/train", loss.item(), epoch)
        w.add_scalar("Loss/val", vl, epoch)
        w.add_scalar("Accuracy/val", acc, epoch)
        w.add_scalar("<script>alert(1)</script>", acc, epoch)
    w.close()
    return out
