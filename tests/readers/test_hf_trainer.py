"""HF Trainer trainer_state.json, written by a real transformers.Trainer on digits."""

import json
import pickle
import shutil

import pytest

import traindoctor as td
from traindoctor.readers import hf_trainer
from writers import write_hf_run


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory):
    return write_hf_run(tmp_path_factory.mktemp("hf"), epochs=3, seed=0)


def _rows(out_dir):
    hist = json.loads((out_dir / "trainer_state.json").read_text())["log_history"]
    train = [r for r in hist if "loss" in r]
    evals = [r for r in hist if "eval_loss" in r]
    summary = [r for r in hist if "train_runtime" in r]
    return train, evals, summary


def test_every_log_row_is_read_back_exactly(out_dir):
    run = td.load(out_dir.parent)
    assert run.format == "hf_trainer" and run.run == "hf_out"
    train, evals, summary = _rows(out_dir)
    assert len(summary) == 1 and len(train) == 6 and len(evals) == 3  # 66 steps, logging_steps=10
    for key in ("loss", "grad_norm", "learning_rate"):
        s = run[key]
        assert s.steps.tolist() == [r["step"] for r in train]
        assert s.values.tolist() == [r[key] for r in train]
        assert s.epochs.tolist() == [r["epoch"] for r in train]  # float epochs kept as is
    s = run["eval_loss"]
    assert s.values.tolist() == [r["eval_loss"] for r in evals]
    assert s.epochs.tolist() == [1.0, 2.0, 3.0] and s.is_per_epoch


def test_roles(out_dir):
    run = td.load(out_dir)
    assert run["loss"].role == "train_loss" and run["eval_loss"].role == "val_loss"
    assert run["learning_rate"].role == "lr" and run["grad_norm"].role == "grad_norm"
    assert run.primary("val_loss").name == "eval_loss"


def test_summary_row_is_hparams_not_a_loss_point(out_dir):
    run = td.load(out_dir)
    _, _, (summary,) = _rows(out_dir)
    assert "train_loss" not in run.series and "train_runtime" not in run.series
    assert len(run["loss"]) == 6 and summary["train_loss"] not in run["loss"].values.tolist()
    h = run.hparams
    assert h["trainer_state.train_loss"] == summary["train_loss"]
    assert h["trainer_state.train_runtime"] == summary["train_runtime"]
    state = json.loads((out_dir / "trainer_state.json").read_text())
    assert h["trainer_state.global_step"] == 66 == state["global_step"]
    assert h["trainer_state.best_metric"] == state["best_metric"]
    assert h["trainer_state.best_model_checkpoint"] == state["best_model_checkpoint"]
    assert h["trainer_state.best_global_step"] == state["best_global_step"]
    # all_results.json / eval_results.json: one-number summaries, hparams only
    assert h["results.eval_loss"] == json.loads((out_dir / "all_results.json").read_text())["eval_loss"]


def test_checkpoint_copies_are_claimed_not_read_twice(out_dir):
    runs = td.load_runs(out_dir.parent)
    assert len(runs) == 1 and set(runs[0].series) >= {"loss", "eval_loss"}
    assert not any("#" in n for n in runs[0].series)
    assert [c.step for c in runs[0].checkpoints] == [22, 44, 66]
    units = hf_trainer.discover(out_dir)
    assert units[0] == out_dir / "trainer_state.json"
    assert sorted(u.name for u in units[1:]) == ["checkpoint-22", "checkpoint-44", "checkpoint-66"]


def test_missing_final_state_reads_newest_checkpoint(out_dir, tmp_path):
    d = tmp_path / "crashed"
    shutil.copytree(out_dir, d)
    (d / "trainer_state.json").unlink()
    shutil.rmtree(d / "checkpoint-66")
    run = td.load(d)
    assert run.path == str(d)  # the output dir, not the checkpoint folder
    assert any("checkpoint-44/trainer_state.json" in n and "global_step 44" in n for n in run.notes)
    assert run["loss"].steps.tolist() == [10, 20, 30, 40] and len(run["eval_loss"]) == 2


def test_truncated_final_state_falls_back_with_a_note(out_dir, tmp_path):
    d = tmp_path / "cut"
    shutil.copytree(out_dir, d)
    text = (d / "trainer_state.json").read_text()
    (d / "trainer_state.json").write_text(text[: len(text) // 2])
    run = td.load(d)
    assert any("is not valid JSON" in n and "read checkpoint-66/trainer_state.json instead" in n for n in run.notes)
    assert len(run["loss"]) == 6 and len(run["eval_loss"]) == 3


def test_unreadable_state_without_snapshots_is_one_line_error(tmp_path):
    f = tmp_path / "trainer_state.json"
    f.write_text('{"log_history": [{"loss": 1.0, "st')
    with pytest.raises(td.InputError, match=r"trainer_state\.json: is not valid JSON") as exc:
        td.load(f)
    assert "\n" not in str(exc.value)
    f.write_text('{"global_step": 3}')
    with pytest.raises(td.InputError, match="expected HF Trainer's trainer_state.json"):
        td.load(f)


class _Tripwire:
    """Unpickling this creates a file: proves training_args.bin is never unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_training_args_bin_is_never_unpickled(out_dir, tmp_path):
    d = tmp_path / "out"
    shutil.copytree(out_dir, d)
    marker = tmp_path / "unpickled"
    for f in d.rglob("training_args.bin"):
        f.write_bytes(pickle.dumps(_Tripwire(str(marker))))
    td.diagnose(td.load(d))
    assert not marker.exists()


@pytest.mark.slow
def test_evaluated_every_n_steps_every_eval_is_a_point_and_best_checkpoint_is_named(tmp_path):
    """Evaluations every 4 steps, several an epoch: each is a point at its global step (the
    fractional epoch a label on it, never a bin), the best reported is a logged value, and the
    checkpoint the Trainer kept as best (best_model_checkpoint) is among the run's checkpoints."""
    out = write_hf_run(tmp_path, epochs=2, seed=1, eval_steps=4)
    state = json.loads((out / "trainer_state.json").read_text())
    evals = [r for r in state["log_history"] if "eval_loss" in r]
    assert len(evals) >= 8 and len({int(r["epoch"]) for r in evals}) < len(evals)  # several an epoch
    run = td.load(out)
    ev = run["eval_loss"]
    assert ev.steps.tolist() == [r["step"] for r in evals] and ev.values.tolist() == [r["eval_loss"] for r in evals]
    assert ev.epochs.tolist() == [r["epoch"] for r in evals]
    assert ev.unit == "step" and ev.per_epoch() is ev  # an evaluation is never averaged with another
    best = [c for c in run.checkpoints if c.tag == "best"]
    name = state["best_model_checkpoint"].rsplit("/", 1)[-1]
    assert len(best) == 1 and best[0].path.endswith(name) and best[0].step == int(name.split("-")[1])
    assert run.hparams["trainer_state.best_metric"] == state["best_metric"] == min(ev.values)
    logged = set(ev.values.tolist())
    for f in td.diagnose(run).findings:
        if f.metric == "eval_loss" and "best_value" in f.evidence:
            assert any(abs(f.evidence["best_value"] - v) <= 1e-3 * abs(v) for v in logged)
