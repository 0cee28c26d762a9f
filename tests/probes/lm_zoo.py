"""Small language models for the probe tests: a causal LM from torch.nn, a tiny HF GPT-2 and BERT.

All random-init from a config (no download). The text is real English: the docstrings of a few
standard-library modules, read character by character (the alphabet is string.printable).
Every factory returns (model, batch, loss_fn, optimizer) with at most one planted fault:
"collapsed_head" (an output bias that dominates), "detached_embedding", "lr_too_high",
"all_padding" (every label ignored), or None for the healthy twin.
"""

from __future__ import annotations

import argparse
import json
import logging
import string
import textwrap

import torch
import torch.nn.functional as F
from torch import nn

ALPHABET = string.printable  # 100 characters
PAD = len(ALPHABET)  # id 100: padding, outside the text's alphabet
VOCAB = len(ALPHABET) + 1
FAULTS = ("collapsed_head", "detached_embedding", "lr_too_high", "all_padding")


def text() -> str:
    docs = (json.__doc__, textwrap.__doc__, argparse.__doc__, logging.__doc__)
    return " ".join(" ".join(d.split()) for d in docs if d)


def encode(s: str) -> list[int]:
    index = {c: i for i, c in enumerate(ALPHABET)}
    return [index[c] for c in s if c in index]


def windows(b: int = 8, t: int = 33, seed: int = 0) -> torch.Tensor:
    """(b, t) token ids: b windows of the text at random offsets."""
    ids = torch.tensor(encode(text()))
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, len(ids) - t, (b,), generator=g)
    return torch.stack([ids[s:s + t] for s in starts.tolist()])


def lm_loss(out, target):
    # how people write it: a lambda-like function around F.cross_entropy (ignore_index -100)
    return F.cross_entropy(out.reshape(-1, out.shape[-1]), target.reshape(-1))


class CausalLM(nn.Module):
    """A GPT-style decoder from torch.nn: token + position embeddings, pre-norm blocks, a linear head."""

    def __init__(self, vocab: int = VOCAB, d: int = 32, layers: int = 2, heads: int = 2, ctx: int = 64,
                 dropout: float = 0.1, seed: int = 0, detach_embedding: bool = False):
        super().__init__()
        torch.manual_seed(seed)
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(ctx, d)
        layer = nn.TransformerEncoderLayer(d, heads, 4 * d, dropout, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab)
        self.detach_embedding = detach_embedding
        self.register_buffer("causal", torch.triu(torch.full((ctx, ctx), float("-inf")), 1), persistent=False)

    def forward(self, x):
        t = x.shape[1]
        e = self.tok(x)
        if self.detach_embedding:
            e = e.detach()  # the fault: the token embedding never learns
        h = self.blocks(e + self.pos(torch.arange(t, device=x.device)), mask=self.causal[:t, :t], is_causal=True)
        return self.head(self.norm(h))


def nn_lm(fault: str | None = None, seed: int = 0):
    ids = windows(seed=seed)
    x, y = ids[:, :-1], ids[:, 1:].clone()
    model = CausalLM(seed=seed, detach_embedding=fault == "detached_embedding")
    if fault == "collapsed_head":
        with torch.no_grad():
            model.head.bias[encode("q")[0]] = 30.0
    if fault == "all_padding":
        y[:] = -100
    opt = torch.optim.AdamW(model.parameters(), lr=1.0 if fault == "lr_too_high" else 3e-3)
    return model, (x, y), lm_loss, opt


def _detach_output(module, args, output):
    return output.detach()


def padded(ids: torch.Tensor, lengths: list[int]) -> dict:
    """HF-style batch: right padding with PAD, attention_mask 0 there, labels -100 there."""
    ids = ids.clone()
    mask = torch.ones_like(ids)
    for row, n in enumerate(lengths):
        ids[row, n:] = PAD
        mask[row, n:] = 0
    return {"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)}


def gpt2(fault: str | None = None, seed: int = 0):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    # untied input and output embeddings, so a detached input embedding gets no gradient at all
    config = GPT2Config(vocab_size=VOCAB, n_positions=64, n_embd=64, n_layer=2, n_head=2,
                        tie_word_embeddings=False, pad_token_id=PAD)
    model = GPT2LMHeadModel(config)
    batch = padded(windows(t=32, seed=seed), [32, 32, 28, 32, 24, 32, 30, 32])
    if fault == "collapsed_head":
        with torch.no_grad():  # GPT-2's head has no bias: the final LayerNorm's bias dominates instead
            row = model.lm_head.weight[encode("q")[0]]
            model.transformer.ln_f.bias.copy_(30.0 * row / row.norm() ** 2)  # +30 on that token's logit
    if fault == "detached_embedding":
        model.transformer.wte.register_forward_hook(_detach_output)
    if fault == "all_padding":
        batch = {"input_ids": torch.full_like(batch["input_ids"], PAD),
                 "attention_mask": torch.zeros_like(batch["attention_mask"]),
                 "labels": torch.full_like(batch["labels"], -100)}
    # 6e-4: nanoGPT's LR for GPT-2. A fresh AdamW's first step moves every weight by the LR, and
    # GPT-2 initialises c_proj with std 0.02 / sqrt(2 n_layer) = 0.01, so 1e-3 would sit right at
    # weight_update_ratio's 0.1 bound (measured 0.1003)
    opt = torch.optim.AdamW(model.parameters(), lr=1.0 if fault == "lr_too_high" else 6e-4)
    return model, batch, None, opt


def bert(fault: str | None = None, seed: int = 0, lr: float = 2e-5):
    """BertForSequenceClassification: is this window from the json docstring (1) or another (0)?"""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, num_labels=2, pad_token_id=PAD)
    model = BertForSequenceClassification(config)
    ids = torch.tensor(encode(" ".join(json.__doc__.split())))
    other = torch.tensor(encode(" ".join(argparse.__doc__.split())))
    rows = [ids[i * 40:i * 40 + 32] for i in range(4)] + [other[i * 40:i * 40 + 32] for i in range(4)]
    batch = padded(torch.stack(rows), [32, 30, 32, 26, 32, 32, 28, 32])
    batch["labels"] = torch.tensor([1, 1, 1, 1, 0, 0, 0, 0])
    if fault == "collapsed_head":
        with torch.no_grad():
            model.classifier.bias[1] = 30.0
    if fault == "detached_embedding":
        model.bert.embeddings.register_forward_hook(_detach_output)
    if fault == "all_padding":
        batch["labels"] = torch.full_like(batch["labels"], -100)
    opt = torch.optim.AdamW(model.parameters(), lr=1.0 if fault == "lr_too_high" else lr)
    return model, batch, None, opt


MODELS = {"nn_lm": nn_lm, "gpt2": gpt2, "bert": bert}

# the finding each fault must produce (a collapsed head also starts far above chance, and all
# padding blocks every other check)
EXPECTED = {"collapsed_head": "prediction_collapse", "detached_embedding": "dead_gradients",
            "lr_too_high": "lr_too_high", "all_padding": "ignored_labels"}
