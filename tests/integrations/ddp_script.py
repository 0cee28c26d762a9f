"""Run under torchrun (2 processes, gloo, CPU) by test_ddp.py: rank 1 stalls, then its loss turns NaN."""

import json
import sys
import time

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

import traindoctor as td

logdir, out = sys.argv[1], sys.argv[2]
torch.set_num_threads(1)
dist.init_process_group("gloo")
rank = dist.get_rank()
torch.manual_seed(0)
model = DDP(torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4)))
opt = torch.optim.SGD(model.parameters(), lr=0.05)
g = torch.Generator().manual_seed(100 + rank)  # each rank its own shard
x, y = torch.randn(512, 16, generator=g), torch.randint(0, 4, (512,), generator=g)
steps = 0
with td.watch(model, opt, logdir=logdir, on_finding="stop", stop_on="error",
              every=int(sys.argv[3])) as w:
    for i in range(80):
        if rank == 1 and 10 <= i < 30:
            time.sleep(0.08)  # a straggler: slow data on rank 1
        xb, yb = x[(i * 32) % 512:][:32], y[(i * 32) % 512:][:32]
        out_ = model(xb)
        loss = torch.nn.functional.cross_entropy(out_, yb)
        if rank == 1 and i >= 40:
            loss = loss * float("nan")  # a bad batch on rank 1 only
        opt.zero_grad()
        loss.backward()
        opt.step()
        w.step(loss=loss, outputs=out_, targets=yb)
        steps += 1
        if w.should_stop:
            break
with open(f"{out}.{rank}.json", "w") as fh:
    json.dump({"rank": rank, "steps": steps, "should_stop": w.should_stop}, fh)
dist.destroy_process_group()
