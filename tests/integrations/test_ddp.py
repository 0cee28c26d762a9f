"""DDP under torchrun (2 CPU processes, gloo): ranks reduced to rank 0, rank_divergence, stop together."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
import torch.distributed as dist  # noqa: E402

import traindoctor as td  # noqa: E402
from traindoctor.integrations.core import REPORT_NAMES  # noqa: E402

pytestmark = pytest.mark.slow
SRC = str(Path(td.__file__).resolve().parents[1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed with gloo")
def test_ddp_two_ranks_stall_then_nan_on_one_rank(tmp_path):
    script = Path(__file__).with_name("ddp_script.py")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), str(script), str(tmp_path / "logs"), str(tmp_path / "result"), "1"]
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads((tmp_path / f"result.{r}.json").read_text()) for r in (0, 1)]
    # both ranks stopped, at the same step (no rank left waiting in an all-reduce), before the end
    assert results[0]["steps"] == results[1]["steps"] and 41 <= results[0]["steps"] < 80, results
    assert all(r["should_stop"] for r in results)
    # only rank 0 wrote and printed
    files = sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert files == sorted(["traindoctor_run.jsonl", "traindoctor_meta.json", *REPORT_NAMES.values()])
    said = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "traindoctor [" in ln]
    assert len(said) == len(set(said)) and said, said
    run = td.load(tmp_path / "logs")
    assert {"rank/0/train_loss", "rank/1/train_loss", "rank/1/data_time"} <= set(run.names())
    assert len(run["train_loss"]) == results[0]["steps"]
    report = json.loads((tmp_path / "logs" / REPORT_NAMES["json"]).read_text())
    ranks = [f for f in report["findings"] if f["code"] == "rank_divergence"]
    by_metric = {f["metric"]: f for f in ranks}
    assert by_metric["rank/1/train_loss"]["evidence"]["step"] == 41  # i == 40 is step 41
    assert by_metric["rank/1/train_loss"]["evidence"]["non_finite_ranks"] == [1]
    assert by_metric["rank/1/data_time"]["evidence"]["rank"] == 1
    assert report["source"]["path"] and run.hparams["world_size"] == 2
