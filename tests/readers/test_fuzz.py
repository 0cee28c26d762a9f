"""Never a traceback, never a hang: real logs, mutated at random, end in a RunHistory or an InputError.

The seeds are the structured logs of the calibration corpus (../shared/corpus, read-only: HF
trainer_state.json, TensorBoard events, Lightning/Keras/ultralytics CSV, detectron2 and MMEngine
JSON lines) and logs this test writes in the exact formats of Keras' CSVLogger, Lightning's
CSVLogger, detectron2's JSONWriter and mmcv's TextLoggerHook. Each case applies what crashes and
bad disks do to a file: cut it short, flip bytes, splice in garbage or a run of NULs, add a line of
100,000 digits (past Python's 4300-digit int limit and the csv module's field limit). A fixed seed
makes every case reproducible; a failure names the case, the seed file and the mutation.

The per-case alarm only turns a hang into a failure; nothing here asserts how fast a read is.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import traceback
from pathlib import Path

import numpy as np
import pytest

import traindoctor as td
from traindoctor.history import RunHistory

CORPUS = Path(__file__).resolve().parents[2].parent.parent / "shared" / "corpus"
CORPUS = Path(os.environ.get("TRAINDOCTOR_CORPUS", CORPUS if CORPUS.is_dir() else "/work/shared/corpus"))
CASES = 1000
MAX_SEED_BYTES = 128 * 1024  # keeps 1000 reads quick; a bigger file's damage is the same damage
HANG_SECONDS = 20  # generous: only a hang (minutes, forever) trips it, never a slow machine


class Hang(Exception):
    pass


def _written_seeds(tmp: Path) -> list[tuple[str, bytes]]:
    """Small logs in each tool's exact format, from a real softmax regression on digits."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    w = np.zeros((64, 10))
    hist = []
    for epoch in range(12):
        z = x[:1400] @ w
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        loss = float(-np.log(p[np.arange(1400), y[:1400]]).mean())
        acc = float((p.argmax(1) == y[:1400]).mean())
        p[np.arange(1400), y[:1400]] -= 1
        w -= 0.5 * x[:1400].T @ p / 1400
        zv = x[1400:] @ w
        vacc = float((zv.argmax(1) == y[1400:]).mean())
        hist.append((epoch, loss, acc, vacc))
    keras = "epoch,accuracy,loss,val_accuracy\r\n" + "".join(f"{e},{a!r},{lo!r},{v!r}\r\n" for e, lo, a, v in hist)
    lightning = "epoch,step,train_loss,val_acc\n" + "".join(
        f"{e},{e * 10 + k},{lo * (1 + 0.01 * k)!r},\n" for e, lo, _, _ in hist for k in range(3)) + "".join(
        f"{e},{e * 10 + 2},,{v!r}\n" for e, _, _, v in hist)
    d2 = "".join(json.dumps({"iteration": 20 * e + 19, "total_loss": lo, "loss_cls": lo * 0.7, "lr": 0.02,
                             "time": 0.1, **({"bbox/AP": 100 * v} if e % 4 == 3 else {})}, sort_keys=True) + "\n"
                 for e, lo, _, v in hist)
    mmcv = json.dumps({"env_info": "Python 3.8", "seed": 0}) + "\n" + "".join(
        json.dumps({"mode": "train", "epoch": e + 1, "iter": 50, "lr": 0.02, "loss": round(lo, 5), "time": 0.2}) + "\n"
        + json.dumps({"mode": "val", "epoch": e + 1, "iter": 397, "lr": 0.02, "bbox_mAP": round(v, 3)}) + "\n"
        for e, lo, _, v in hist)
    return [("training.log", keras.encode()), ("version_0/metrics.csv", lightning.encode()),
            ("output/metrics.json", d2.encode()), ("work/20230101_000000.log.json", mmcv.encode())]


def _corpus_seeds() -> list[tuple[str, bytes]]:
    if not CORPUS.is_dir():
        return []
    out = []
    for case in sorted(CORPUS.iterdir()):
        if not case.is_dir() or case.name.startswith("text"):
            continue  # plain-text logs are the text reader's (tests/readers/test_textlog*.py)
        for f in sorted(case.rglob("*")):
            if f.is_file() and f.name != "expect.json" and f.stat().st_size <= MAX_SEED_BYTES:
                rel = Path(*f.relative_to(case).parts[-2:])  # keep the names readers look for
                out.append((str(rel), f.read_bytes()))
    return out


def _mutate(rng: np.random.Generator, data: bytes) -> tuple[bytes, str]:
    """One or two of the damages a crash or a bad disk does."""
    what = []
    for _ in range(1 + int(rng.random() < 0.3)):
        kind = rng.choice(["cut", "flip", "garbage", "nul", "digits", "longnum"])
        n = len(data)
        at = int(rng.integers(0, n + 1))
        if kind == "cut":
            data = data[:at]
        elif kind == "flip":
            arr = bytearray(data)
            for i in rng.integers(0, max(n, 1), int(rng.integers(1, 20))):
                if i < len(arr):
                    arr[i] = int(rng.integers(0, 256))
            data = bytes(arr)
        elif kind == "garbage":
            data = data[:at] + rng.bytes(int(rng.integers(1, 4000))) + data[at:]
        elif kind == "nul":
            data = data[:at] + b"\x00" * int(rng.integers(1, 70000)) + data[at:]
        elif kind == "longnum":  # a number grown past Python's 4300-digit int limit, in place
            m = re.search(rb"\d+", data[at:])
            if m:
                data = data[:at + m.start()] + b"7" * 5000 + data[at + m.end():]
        else:  # a line of 100,000 digits at a line start
            nl = data.rfind(b"\n", 0, at) + 1
            digits = b"1" * 100_000 if rng.random() < 0.5 else b"0." + b"9" * 100_000
            data = data[:nl] + digits + b"\n" + data[nl:]
        what.append(f"{kind}@{at}")
    return data, "+".join(what)


def _alarm(signum, frame):
    raise Hang()


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs SIGALRM")
def test_mutated_real_logs_end_in_a_history_or_an_input_error(tmp_path):
    seeds = _corpus_seeds() + _written_seeds(tmp_path)
    assert len(seeds) >= 4
    rng = np.random.default_rng(int(os.environ.get("TRAINDOCTOR_FUZZ_SEED", "20240531")))
    failures = []
    outcomes = {"history": 0, "input_error": 0}
    old = signal.signal(signal.SIGALRM, _alarm)
    try:
        for case in range(CASES):
            name, data = seeds[case % len(seeds)]
            mutated, how = _mutate(rng, data)
            d = tmp_path / f"c{case}"
            f = d / name
            f.parent.mkdir(parents=True)
            f.write_bytes(mutated)
            signal.setitimer(signal.ITIMER_REAL, HANG_SECONDS)
            try:
                got = td.load(f)
                assert isinstance(got, RunHistory)
                outcomes["history"] += 1
            except td.InputError as exc:
                assert "\n" not in str(exc)
                outcomes["input_error"] += 1
            except Hang:
                failures.append(f"case {case}: {name} {how}: no answer within {HANG_SECONDS} s")
            except Exception as exc:  # noqa: BLE001 - any other exception is the bug this test hunts
                tb = traceback.extract_tb(exc.__traceback__)[-1]
                failures.append(f"case {case}: {name} {how}: {type(exc).__name__}: {str(exc)[:120]} "
                                f"({Path(tb.filename).name}:{tb.lineno})")
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            shutil.rmtree(d, ignore_errors=True)
    finally:
        signal.signal(signal.SIGALRM, old)
    assert not failures, f"{len(failures)} of {CASES} cases ended badly:\n" + "\n".join(failures[:15])
    # the mutations leave most files readable: a test that only ever saw errors would prove little
    assert outcomes["history"] > CASES // 4, outcomes
