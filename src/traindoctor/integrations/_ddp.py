"""DDP: every rank's key statistics gathered each logged step, so rank 0 sees them all.

One small all_gather per recorded step (6 floats a rank). All ranks take part, so it also carries
rank 0's recording interval (so every rank records the same steps) and the decision to stop: rank 0 sets its stop flag when a finding asks for it and every rank reads
the flags at the same step, so all of them stop (or raise) together instead of leaving the others
blocked in the next all-reduce.
"""

from __future__ import annotations

import math

__all__ = ["Ranks", "STOP", "RAISE"]

KEYS = ("train_loss", "grad_norm", "step_time", "data_time")
STOP, RAISE = 1.0, 2.0


class Ranks:
    def __init__(self, torch, model=None):
        self.torch = torch
        # Sharded training (FSDP, FSDP2's DTensor parameters): each rank's gradient norm is that of
        # its own shard, so unequal norms are normal there and are not gathered for comparison.
        self.sharded = model is not None and (
            any("FullyShardedDataParallel" in type(m).__name__ for m in model.modules())
            or any(type(p).__name__ == "DTensor" for p in model.parameters()))
        self.dist = torch.distributed
        self.rank = self.dist.get_rank()
        self.world = self.dist.get_world_size()
        backend = str(self.dist.get_backend()).lower()
        self.device = (torch.device("cuda", torch.cuda.current_device()) if backend == "nccl"
                       else torch.device("cpu"))

    @staticmethod
    def active(torch) -> bool:
        d = getattr(torch, "distributed", None)
        return bool(d is not None and d.is_available() and d.is_initialized() and d.get_world_size() > 1)

    def gather(self, rec: dict, request: float, every: int) -> tuple[list[list[float]], float, int]:
        """(per-rank [loss, grad norm, step time, data time], the strongest stop request of any rank,
        rank 0's recording interval: every rank records the same steps, or the gathers would not meet)."""
        torch = self.torch
        mine = torch.tensor([rec.get(k, math.nan) for k in KEYS] + [request, every], dtype=torch.float64,
                            device=self.device)
        bufs = [torch.empty_like(mine) for _ in range(self.world)]
        self.dist.all_gather(bufs, mine)
        rows = torch.stack(bufs).cpu().tolist()
        return [r[:-2] for r in rows], max(r[-2] for r in rows), int(rows[0][-1])

    def merge(self, rec: dict, rows: list[list[float]]) -> None:
        """Rank 0's record gets every rank's numbers under rank/<r>/, and the loss becomes the mean."""
        had = {k for k in KEYS if k in rec}  # a stat this rank did not measure is not a NaN
        if self.sharded:
            had.discard("grad_norm")
        for r, row in enumerate(rows):
            for k, v in zip(KEYS, row):
                if k in had:
                    rec[f"rank/{r}/{k}"] = v
        if "train_loss" in had:
            rec["train_loss"] = sum(row[0] for row in rows) / len(rows)  # the loss of the global batch
