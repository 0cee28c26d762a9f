"""Acceptance: rebuild the seed post-mortems' runs from the numbers they quote, in the formats
their authors used, load them with td.load and check traindoctor's diagnosis and arithmetic."""

import numpy as np
import pytest

import traindoctor as td
from evidence import title_numbers_in_evidence


def _diagnose(run):
    """td.diagnose, plus: every finding's title states only numbers that are in its evidence."""
    report = td.diagnose(run)
    for f in report.findings:
        title_numbers_in_evidence(f)
    return report


def _interp(anchors, n, noise, seed, floor=None):
    r = np.random.default_rng(seed)
    xs = sorted(anchors)
    v = np.interp(np.arange(n), xs, [anchors[k] for k in xs]) + noise * r.standard_normal(n)
    for k in xs:
        v[k] = anchors[k]
    if floor is not None:
        v = np.maximum(v, floor)
    return v


# -- seed 000: Lightning metrics.csv, best_checkpoint/ and latest_checkpoint/ beside it ----
def _seed000(tmp_path):
    val = _interp({0: 1.532, 6: 0.675, 10: 0.6064, 20: 1.042, 30: 1.316, 40: 1.951, 55: 1.509},
                  56, 0.03, 0)
    val[np.arange(56) != 10] = np.maximum(val[np.arange(56) != 10], 0.62)  # epoch 10 is the best
    train = _interp({0: 1.4, 10: 0.37, 55: 0.102}, 56, 0.005, 1, floor=0.05)
    run = tmp_path / "sequential_attention_model_hinge_loss"
    run.mkdir()
    steps_per_epoch = 50
    lines = ["epoch,step,train_loss,val_loss"]
    for e in range(56):
        step = (e + 1) * steps_per_epoch - 1
        lines.append(f"{e},{step},{train[e]:.6f},")
        lines.append(f"{e},{step},,{val[e]:.6f}")
    (run / "metrics.csv").write_text("\n".join(lines) + "\n")
    for d in ("best_checkpoint", "latest_checkpoint"):
        (run / d).mkdir()
        (run / d / "model.safetensors").write_bytes(b"")
    return run


def test_seed000_overfitting_counterfactual_and_best_checkpoint(tmp_path):
    run = td.load(_seed000(tmp_path))
    assert run.format == "lightning_csv"  # detected, not named
    report = _diagnose(run)
    [f] = report.get("overfitting")
    ev = f.evidence
    assert f.severity == td.Severity.WARNING
    assert ev["unit"] == "epoch" and ev["best_epoch"] == 10 and ev["best_value"] == 0.6064
    assert ev["final_value"] == 1.509 and ev["epochs_since_best"] == 45
    p5 = next(r for r in ev["early_stopping"] if r["patience"] == 5)
    assert p5["stop_epoch"] == 15 and p5["kept_value"] == 0.6064
    assert p5["epochs_saved"] == 40 and ev["total_checks"] == 56 and p5["pct_saved"] == 71.4
    assert ev["checkpoint"]["path"].endswith("best_checkpoint")
    actions = " ".join(x.action for x in f.fixes)
    assert "best_checkpoint" in actions and "latest_checkpoint" not in actions
    assert "saving 40 of 56 epochs (71.4%)" in actions
    assert ev["train_loss_final"] < ev["train_loss_at_best"]
    assert ev["rise_pct_of_improvement"] > 100  # 1.532 -> 0.6064 -> 1.509: most of it undone


# -- seed 004: TensorBoard events via SummaryWriter -------------------------------------------
def _seed004(tmp_path):
    pytest.importorskip("torch.utils.tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    r = np.random.default_rng(4)
    val = _interp({0: 24.0, 4: 18.0, 8: 16.0}, 51, 0.0, 4)
    val[9:] = 16.0 + np.abs(0.35 * r.standard_normal(42)) + 0.15  # "16-17, no improvement"
    train = _interp({0: 22.0, 8: 14.0, 50: 10.4}, 51, 0.08, 5)
    train[50] = 10.4
    w = SummaryWriter(str(tmp_path / "v3"))
    for e in range(51):
        w.add_scalar("Loss/train", float(train[e]), e)
        w.add_scalar("Loss/val", float(val[e]), e)
    w.close()
    return tmp_path / "v3"


def test_seed004_stalled_validation_patience_15_and_gap(tmp_path):
    run_dir = _seed004(tmp_path)
    run = td.load(run_dir)
    assert run.format == "tensorboard"
    report = _diagnose(run)
    [f] = report.get("overfitting")
    ev = f.evidence
    unit = ev["unit"]
    assert ev[f"best_{unit}"] == 8 and ev["best_value"] == 16.0
    p15 = next(r for r in ev["early_stopping"] if r["patience"] == 15)
    assert p15[f"stop_{unit}"] == 23 and p15[f"{unit}s_saved"] == 27 and p15["checks_saved"] == 27
    assert ev[f"final_{unit}"] == 50
    # 24 -> 16 then flat while train fell 14 -> 10.4: the gap widened by about half the gain
    assert f.severity == td.Severity.WARNING and ev["kind"] == "stalled"
    assert ev["gap_widening_pct_of_improvement"] >= 100 * ev["thresholds"]["min_undo"]
    [gap] = report.get("train_val_gap")
    assert gap.evidence["train_at_end"] == 10.4 and gap.evidence["best_val"] == 16.0


# -- seed 003: "Epoch N Train - Loss: x" text log, flat ~0.40 over 50 epochs -------------------
def _seed003(tmp_path):
    r = np.random.default_rng(3)
    tr = 0.40 + 0.004 * r.standard_normal(50)
    va = 0.41 + 0.004 * r.standard_normal(50)
    lines = []
    for e in range(50):
        lines.append(f"Epoch {e} Train - Loss: {tr[e]:.4f}")
        lines.append(f"Epoch {e} Val - Loss: {va[e]:.4f}")
    path = tmp_path / "training_fold0.log"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_seed003_plateau_since_epoch_0(tmp_path):
    path = _seed003(tmp_path)
    report = _diagnose(td.load(path))
    flat = [f for f in report.get("plateau") if f.severity == td.Severity.WARNING]
    assert flat, report.codes()
    f = flat[0]
    unit = f.evidence["unit"]
    assert f.evidence[f"since_{unit}"] == 0 and f.evidence["flat_points"] == 50
    assert abs(f.evidence["level"] - 0.40) < 0.02


# -- seed 001: Lightning progress bar, position loss stuck at 1.000, then plateau at ~0.6 -----
def _bar(epoch, i, total, **metrics):
    kv = ", ".join(f"{k}={v:.3f}" for k, v in metrics.items())
    pct = int(100 * i / total)
    return (f"Epoch {epoch}:   {pct}%|          | {i}/{total} [{i // 60:02d}:{i % 60:02d}<33:00:00, "
            f" 0.82it/s, v_num=3, {kv}]")


def _seed001(tmp_path, phase):
    r = np.random.default_rng(1)
    chunks = []
    for i in range(1, 801):
        rot = 1.4 + 0.05 * r.standard_normal()
        if phase == "stuck":
            pos = 1.0
        else:  # after adding SmoothL1: ~1.1 -> ~0.6 in 10 batches, then flat 0.60-0.62
            pos = 0.61 + 0.5 * np.exp(-i / 3) + 0.005 * r.standard_normal()
        chunks.append("\r" + _bar(0, i, 97000, **{"train/position_loss": pos,
                                                  "train/rotation_loss": rot,
                                                  "train/total_loss": pos + rot}))
    path = tmp_path / f"train_{phase}.log"
    path.write_text("".join(chunks) + "\n")
    return path


def test_seed001_position_loss_stuck_at_one(tmp_path):
    path = _seed001(tmp_path, "stuck")
    report = _diagnose(td.load(path))
    stuck = [f for f in report.get("loss_constant") if f.metric == "train/position_loss"]
    assert stuck, report.codes()
    ev = stuck[0].evidence
    assert ev["value"] == 1.0 and ev["points"] >= 790
    assert "train/rotation_loss" in ev["others_moving"]
    assert stuck[0].severity.rank >= td.Severity.WARNING.rank


def test_seed001_later_plateau_near_0_6(tmp_path):
    path = _seed001(tmp_path, "plateau")
    report = _diagnose(td.load(path))
    flat = [f for f in report.get("plateau") if f.metric == "train/position_loss"
            or abs(f.evidence["level"] - 0.61) < 0.05]
    assert flat, report.codes()
    assert abs(flat[0].evidence["level"] - 0.61) < 0.02
    assert flat[0].severity == td.Severity.WARNING


# -- issue 5: the Markdown report states each seed's diagnosis with the right numbers ----------
@pytest.mark.parametrize(
    "build, first_for, must_say",
    [
        (_seed000, "overfitting", ["since its best at epoch 10 (0.6064 -> 1.509)", "best_checkpoint",
                                   "would have stopped at epoch 15", "saving 40 of 56 epochs (71.4%)",
                                   "| 5 | 15 | 10 | 0.6064 | 40 |"]),
        (_seed004, "overfitting", ["best at step 8 (16)", "train 10.4 vs val", "| 15 | 23 | 8 | 16 | 27 |"]),
        (_seed003, "plateau", ["Train Loss has not improved meaningfully since epoch 0 (50 of 50 points",
                               "Val Loss has not improved meaningfully since epoch 0 (50 of 50 points"]),
        (lambda d: _seed001(d, "stuck"), "loss_constant",
         ["train/position_loss is stuck at 1 for 800 points", "0.82 steps/s",
          "32.86 h per epoch of 97000 steps"]),
    ],
    ids=["000", "004", "003", "001"],
)
def test_markdown_report_states_the_seed_diagnosis(tmp_path, build, first_for, must_say):
    report = _diagnose(td.load(build(tmp_path)))
    md = report.to_markdown()
    first = next(line for line in md.splitlines() if line.startswith("**First thing to do:**"))
    assert f"(for `{first_for}`)" in first, first
    for text in must_say:
        assert text in md, text
