"""probe() on language models and HF models: sequence labels, padding, label shift, wrappers.

A causal LM from torch.nn, a tiny HF GPT-2 and a tiny HF BERT classifier (random init, no
download): the healthy twin is clean, and each planted fault is named; the model, optimizer and RNG
state are left bit-identical every time.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import traindoctor as td
from traindoctor.probes.labels import ignore_index_of

from . import lm_zoo
from .contract import assert_unchanged, capture, prepare

pytest.importorskip("transformers")
pytestmark = pytest.mark.slow


def run(model, batch, loss_fn, opt, **kwargs):
    """Probe after giving the optimizer mid-training state; check the restore contract."""
    labels = batch["labels"] if isinstance(batch, dict) else batch[1]
    if bool((labels != -100).any()):  # an all-padding batch has a NaN loss: nothing to prepare with
        prepare(model, batch, loss_fn, opt)
    before = capture(model, opt)
    report = td.probe(model, batch, loss_fn=loss_fn, optimizer=opt, **kwargs)
    assert_unchanged(before, capture(model, opt))
    for f in report.findings:
        assert f.code != "internal_error", f.evidence
        assert "thresholds" in f.evidence, f.code
    report.to_json()
    return report


@pytest.mark.parametrize("name", sorted(lm_zoo.MODELS))
def test_healthy_twin_is_clean(name):
    report = run(*lm_zoo.MODELS[name]())
    assert not report.fails("warning"), [(f.code, f.title) for f in report.findings]
    # every check that applies ran: nothing skipped for budget, none left out for the batch's shape
    reasons = {s.code: s.reason for s in report.skipped}
    assert not [c for c, r in reasons.items() if "budget" in r], reasons
    for code in ("prediction_collapse", "init_loss_mismatch", "class_imbalance", "cannot_overfit_batch",
                 "lr_too_high", "lr_too_low", "double_softmax", "input_independent_output"):
        assert code not in reasons, (code, reasons.get(code))


@pytest.mark.parametrize("fault", lm_zoo.FAULTS)
@pytest.mark.parametrize("name", sorted(lm_zoo.MODELS))
def test_fault_is_named(name, fault):
    report = run(*lm_zoo.MODELS[name](fault))
    code = lm_zoo.EXPECTED[fault]
    assert code in report.codes(), (report.codes(), [(s.code, s.reason) for s in report.skipped])
    assert report.get(code)[0].severity.value in ("warning", "error")
    if fault == "lr_too_high" and name != "bert":
        # the sweep ran on a few sequences: 128 predictions = 4 of the 8 rows of 32 tokens
        assert report.get(code)[0].evidence["range_test_examples"] == 4


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("name", ["nn_lm", "gpt2"])
def test_healthy_language_models_over_seeds(name, seed):
    report = run(*lm_zoo.MODELS[name](seed=seed))
    assert not report.fails("warning"), [(f.code, f.title) for f in report.findings]


def test_collapsed_lm_head_quotes_entropies_and_shares():
    report = run(*lm_zoo.nn_lm("collapsed_head"))
    f = report.get("prediction_collapse")[0]
    ev = f.evidence
    assert ev["predicted_class"] == lm_zoo.encode("q")[0] and ev["predicted_top_share"] == 1.0
    assert ev["prediction_entropy_nats"] == 0.0 and ev["label_entropy_nats"] > 2.5
    assert ev["label_top_share"] < 0.3 and ev["positions"] == 8 * 32 and ev["per_example"] == 32
    assert str(ev["label_entropy_nats"]) in f.title
    # chance level from the class dimension, for a plain function around F.cross_entropy
    init = report.get("init_loss_mismatch")[0].evidence
    assert init["chance_loss"] == round(math.log(lm_zoo.VOCAB), 3) and init["loss_matches_cross_entropy"]
    assert init["class_dim"] == 2 and init["labelled_positions"] == 256


def test_hf_causal_lm_loss_is_recognised_with_its_label_shift():
    report = run(*lm_zoo.gpt2("collapsed_head"))
    init = report.get("init_loss_mismatch")[0].evidence
    assert init["loss_kind"] == "ce" and init["label_shift"] == 1 and init["loss_matches_cross_entropy"]
    assert init["labelled_positions"] == 8 * 31 - 14  # shifted labels, padding (-100) left out
    assert report.meta["loss_source"] == "model"


def test_bert_fine_tuning_lr_is_not_judged_by_the_range_test():
    # the case: BertForSequenceClassification at 2e-5, where the sweep prefers ~100x-1000x more
    report = run(*lm_zoo.bert())
    [f] = report.get("lr_too_low")
    assert f.evidence["ratio"] >= f.evidence["thresholds"]["min_ratio"]
    assert f.severity.value == "info" and f.evidence["judged"] is False
    assert "upper bound" in f.evidence["can_tell"] and "fine-tuning LR" in f.evidence["cannot_tell"]
    assert not any("Raise" in fix.action for fix in f.fixes) and "cannot judge" in f.title


def test_pretrained_is_told_from_the_config_and_a_tiny_lr_from_scratch_is_still_judged(tmp_path):
    model, batch, _, _ = lm_zoo.bert()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-8)  # below the fine-tuning range: judged
    f = td.probe(model, batch, optimizer=opt, checks=["lr_too_low"]).get("lr_too_low")[0]
    assert f.severity.value == "warning" and "judged" not in f.evidence and f.evidence["ratio"] >= 1000
    model.save_pretrained(tmp_path)  # a local round trip: from_pretrained records where it came from
    pretrained = type(model).from_pretrained(tmp_path)
    opt = torch.optim.AdamW(pretrained.parameters(), lr=1e-8)
    f = td.probe(pretrained, batch, optimizer=opt, checks=["lr_too_low"]).get("lr_too_low")[0]
    assert f.severity.value == "info" and f.evidence["judged"] is False and "loaded from" in f.evidence["fine_tuning"]


def test_labelled_padding_is_named():
    model, batch, _, opt = lm_zoo.gpt2()
    batch["labels"] = batch["input_ids"].clone()  # padding positions not set to -100
    f = run(model, batch, None, opt, checks=["class_imbalance"]).get("class_imbalance")[0]
    assert f.severity.value == "warning" and "padding" in f.title
    assert f.evidence["labelled_padding"] == 14 and f.evidence["padding_label_values"] == [lm_zoo.PAD]
    assert "masked_fill(attention_mask == 0, -100)" in f.fixes[0].code


def test_mostly_padding_is_named_but_masked_lm_is_not():
    model, batch, _, opt = lm_zoo.gpt2()
    batch = lm_zoo.padded(batch["input_ids"], [2] * 8)  # 2 tokens of text per 32-token row
    f = run(model, batch, None, opt, checks=["ignored_labels"]).get("ignored_labels")[0]
    assert f.severity.value == "warning" and f.evidence["ignored"] == 8 * 30
    assert f.evidence["padding_percent_of_ignored"] == 100.0 and "padding" in f.title
    # BERT's masked LM ignores 85% of the labels by design, scattered inside the attended text
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    mlm = BertForMaskedLM(BertConfig(vocab_size=lm_zoo.VOCAB, hidden_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=64))
    ids = lm_zoo.windows(t=32)
    chosen = torch.rand(ids.shape, generator=torch.Generator().manual_seed(0)) < 0.15
    batch = {"input_ids": ids.masked_fill(chosen, 0), "attention_mask": torch.ones_like(ids),
             "labels": ids.masked_fill(~chosen, -100)}
    report = run(mlm, batch, None, torch.optim.AdamW(mlm.parameters(), lr=1e-4),
                 checks=["ignored_labels", "class_imbalance", "init_loss_mismatch"])
    assert not report.has("ignored_labels") and not report.has("class_imbalance"), report.codes()
    assert not report.fails("warning")


def test_a_dominant_token_in_the_labels_is_named():
    model, (x, y), loss_fn, opt = lm_zoo.nn_lm()
    y[:, 10:] = lm_zoo.PAD  # right padding kept in the labels, no attention mask to tell
    f = run(model, (x, y), loss_fn, opt, checks=["class_imbalance"]).get("class_imbalance")[0]
    assert f.severity.value == "warning" and f.evidence["top_token"] == lm_zoo.PAD
    assert f.evidence["top_token_percent"] == round(100 * 22 / 32, 2)


def test_ignore_index_comes_from_the_loss():
    assert ignore_index_of(nn.CrossEntropyLoss(ignore_index=7)) == 7
    assert ignore_index_of(functools.partial(F.cross_entropy, ignore_index=3)) == 3
    assert ignore_index_of(lm_zoo.lm_loss) == -100
    model, (x, y), _, opt = lm_zoo.nn_lm()
    y[:] = lm_zoo.PAD
    loss_fn = functools.partial(lambda out, t, ignore_index: F.cross_entropy(
        out.reshape(-1, out.shape[-1]), t.reshape(-1), ignore_index=ignore_index), ignore_index=lm_zoo.PAD)
    report = td.probe(model, (x, y), loss_fn=loss_fn, optimizer=opt)
    assert report.codes() == ["ignored_labels"] and report.get("ignored_labels")[0].evidence["ignore_index"] == 100


def test_torch_compile_wrapper_is_unwrapped_without_compiling():
    model, batch, loss_fn, opt = lm_zoo.nn_lm("detached_embedding")
    compiled = torch.compile(model)
    prepare(model, batch, loss_fn, opt)
    before = capture(compiled, opt)
    report = td.probe(compiled, batch, loss_fn=loss_fn, optimizer=opt, checks=["dead_gradients"])
    assert_unchanged(before, capture(compiled, opt))
    assert report.source["wrappers"] == ["OptimizedModule"] and report.source["model"] == "CausalLM"
    assert report.get("dead_gradients")[0].evidence["modules"] == ["tok"]


def test_distributed_data_parallel_is_unwrapped(tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        model, batch, loss_fn, opt = lm_zoo.nn_lm("detached_embedding")
        # a model with a dead module needs find_unused_parameters=True to train under DDP at all
        ddp = nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
        prepare(ddp, batch, loss_fn, opt)
        before = capture(ddp, opt)
        report = td.probe(ddp, batch, loss_fn=loss_fn, optimizer=opt)
        assert_unchanged(before, capture(ddp, opt))
    finally:
        dist.destroy_process_group()
    assert report.source["wrappers"] == ["DistributedDataParallel"]
    assert report.get("dead_gradients")[0].evidence["modules"] == ["tok"]  # named without "module."
