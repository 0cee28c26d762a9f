"""CPU use of `traindoctor watch PATH`: process CPU time / wall time while it follows a log.

    python benchmarks/follow_cpu.py                  # 30 s per scenario
    python benchmarks/follow_cpu.py --seconds 5      # smoke run

Scenarios, each a fresh `python -m traindoctor watch PATH --idle 0` process (default --interval 1):

- idle log: a finished 20,000-line text log that no longer grows (the run ended or is silent);
- idle logdir: a folder of 20 TensorBoard runs (torch's SummaryWriter), none growing;
- slow log: a writer appends 10 lines a second (a typical training job's stdout);
- fast log: a writer appends 10,000 lines a second (batches of 1,000 every 0.1 s).

In the growing cases the loss turns NaN halfway through the window: "NaN said after" is how long
watch took to print its nan_loss finding (the price of the CPU budget on a long, fast log).

The window starts once watch has read what was there and printed its first notice, plus 2 s to
settle, so start-up (imports, the first full read) is not counted; it is printed apart. CPU time
is read from /proc/PID/schedstat (nanoseconds on the CPU; /proc/PID/stat ticks as a fallback).
Linux only. Numbers depend on machine load: run it on an idle machine for numbers to quote.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")
LINE = "2026-01-01 12:00:00 INFO epoch={e} step={s} loss={v:.5f} lr=0.001 grad_norm=1.23\n"
NAN_LINE = "2026-01-01 12:00:00 INFO epoch={e} step={s} loss=nan lr=0.001 grad_norm=nan\n"


def cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/schedstat") as fh:
            return int(fh.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def lines(start: int, n: int) -> str:
    return "".join(LINE.format(e=s // 1000, s=s, v=2.0 / (1 + s / 500)) for s in range(start, start + n))


def write_logdir(root: Path, runs: int = 20, points: int = 500) -> None:
    from torch.utils.tensorboard import SummaryWriter

    for r in range(runs):
        w = SummaryWriter(str(root / f"run{r:02d}"))
        for s in range(points):
            w.add_scalar("train/loss", 2.0 / (1 + s / 50), s)
        w.close()


def writer(path: Path, per_second: int, stop: threading.Event, start: int,
           fault: threading.Event | None = None) -> None:
    """Append `per_second` lines a second in 10 batches, until `stop`; NaN losses once `fault`."""
    batch = max(per_second // 10, 1)
    period = batch / per_second
    step = start
    with open(path, "a", buffering=1) as fh:
        next_t = time.monotonic()
        while not stop.is_set():
            if fault is not None and fault.is_set():
                fh.write("".join(NAN_LINE.format(e=s // 1000, s=s) for s in range(step, step + batch)))
            else:
                fh.write(lines(step, batch))
            fh.flush()
            step += batch
            next_t += period
            time.sleep(max(next_t - time.monotonic(), 0))


def measure(path: Path, seconds: float, interval: float, grow_rate: int = 0, start_step: int = 0) -> dict:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t_start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "traindoctor", "watch", str(path), "--idle", "0",
                             "--interval", str(interval)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    said: dict[str, float] = {}

    def read_stdout():
        for line in proc.stdout:
            if " nan_loss " in line and "nan_loss" not in said:
                said["nan_loss"] = time.monotonic()

    threading.Thread(target=read_stdout, daemon=True).start()
    # wait for the first notice after the start line ("following <run> (...)")
    seen = 0
    for _line in proc.stderr:
        seen += 1
        if seen >= 2:
            break
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
    startup_wall = time.monotonic() - t_start
    startup_cpu = cpu_seconds(proc.pid)
    stop, fault = threading.Event(), threading.Event()
    grow = None
    if grow_rate:
        grow = threading.Thread(target=writer, args=(path, grow_rate, stop, start_step, fault), daemon=True)
        grow.start()
    time.sleep(2.0)
    c0, t0 = cpu_seconds(proc.pid), time.monotonic()
    time.sleep(seconds / 2)
    fault_at = time.monotonic()
    fault.set()  # the loss turns NaN halfway: how long until watch says so?
    time.sleep(seconds / 2)
    c1, t1 = cpu_seconds(proc.pid), time.monotonic()
    stop.set()
    if grow is not None:
        grow.join()
    proc.send_signal(signal.SIGTERM)  # like Ctrl-C (SIGINT is ignored in background jobs)
    proc.wait(timeout=600)
    latency = said["nan_loss"] - fault_at if "nan_loss" in said and said["nan_loss"] >= fault_at else None
    return {"cpu_share": (c1 - c0) / (t1 - t0), "cpu_s": c1 - c0, "wall_s": t1 - t0,
            "startup_wall_s": startup_wall, "startup_cpu_s": startup_cpu, "latency": latency,
            "lines": sum(1 for _ in open(path, "rb")) if path.is_file() else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="measured window per scenario")
    ap.add_argument("--interval", type=float, default=1.0, help="watch --interval")
    ap.add_argument("--only", help="comma-separated scenarios: idle_log,idle_logdir,slow_log,fast_log")
    args = ap.parse_args()
    only = set(args.only.split(",")) if args.only else None
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, window {args.seconds:g} s, "
          f"--interval {args.interval:g}")
    print(f"{'scenario':<12} {'CPU/wall':>9} {'CPU s':>7} {'wall s':>7} {'lines at end':>12} "
          f"{'NaN said after':>14}   start-up (wall, CPU)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        scenarios = []
        log = tmp / "idle.log"
        log.write_text(lines(0, 20_000))
        scenarios.append(("idle_log", log, 0, 0))
        scenarios.append(("idle_logdir", tmp / "logdir", 0, 0))
        slow = tmp / "slow.log"
        slow.write_text(lines(0, 1_000))
        scenarios.append(("slow_log", slow, 10, 1_000))
        fast = tmp / "fast.log"
        fast.write_text(lines(0, 1_000))
        scenarios.append(("fast_log", fast, 10_000, 1_000))
        for name, path, rate, start in scenarios:
            if only and name not in only:
                continue
            if name == "idle_logdir":
                write_logdir(path)
            r = measure(path, args.seconds, args.interval, rate, start)
            lat = "-" if not rate else ("never" if r["latency"] is None else f"{r['latency']:.1f} s")
            n = "-" if r["lines"] is None else f"{r['lines']:,}"
            print(f"{name:<12} {100 * r['cpu_share']:>8.3f}% {r['cpu_s']:>7.3f} {r['wall_s']:>7.1f} {n:>12} "
                  f"{lat:>14}   {r['startup_wall_s']:.2f} s, {r['startup_cpu_s']:.2f} s", flush=True)


if __name__ == "__main__":
    main()
