"""Recorder: the statistics of a live PyTorch training run, at one host sync per logged step.

Framework-free: `td.watch` and the Lightning / HF callbacks are thin adapters that call
`record(loss=..., outputs=..., targets=...)` once per training step.

Where each number comes from, and why there:
- gradient norms, in an optimizer step post-hook: the gradients are complete there whatever the
  loop does around it (zero_grad before or after the step, gradient accumulation, AMP's unscale,
  Lightning's backward inside `step(closure)`), and they are the gradients the update used. One fused `torch._foreach_norm` over every
  trainable parameter, summed per module with one `index_add_`: no `.item()` per parameter.
- update/weight ratio ||dW|| / ||W||, on deep steps only: it needs a copy of the weights taken in
  the pre-hook and compared in the post-hook, which doubles parameter memory for that one step.
- activation statistics (dead ReLU units, saturated tanh/sigmoid), on deep steps only: forward
  hooks on the activation modules are registered for that step's forward and removed after it.
- the NaN guard: every step checks that the loss, the outputs and the gradient norm are finite
  (three more numbers in the same sync). When one is not, forward hooks on every module are
  armed for the next forward and name the first module (in execution order) whose output is not
  finite; `nan_guard="every_step"` keeps them armed all the time, naming it in the very step.
- step time: between consecutive records; data wait: from the end of one record to the next
  training forward of the model (the root module's forward pre-hook), i.e. the loader's time.
- memory: CUDA peak allocated when the model is on a GPU, else the process RSS.

Every tensor is detached and only read: the recorder never changes a training number (tested
bit for bit). A statistic that fails is switched off with one log line; the run goes on.
"""

from __future__ import annotations

import logging
import math
import os
import time

from ..errors import require

__all__ = ["Recorder", "module_groups"]

log = logging.getLogger("traindoctor.watch")

# probe thresholds, so a live finding and a probe agree on what "saturated" means
TANH_EDGE = 0.99
SIGMOID_EDGE = 0.01


def module_groups(model, depth: int = 1):
    """(params, module name per param) for the trainable parameters, grouped at `depth`.

    Depth counts from the first module with several children: a LightningModule holding one
    `self.net`, or a DDP wrapper, would otherwise put every parameter in one group.
    """
    named = [(n.split(".")[:-1], p) for n, p in model.named_parameters() if p.requires_grad]
    skip = 0
    while named and all(len(parts) > skip + 1 for parts, _ in named) and \
            len({parts[skip] for parts, _ in named}) == 1:
        skip += 1
    owners = [".".join(parts[:skip + depth]) if parts else "(root)" for parts, _ in named]
    return [p for _, p in named], owners


class Recorder:
    def __init__(self, model, optimizers=(), *, depth: int = 1, deep_every: int = 50,
                 nan_guard: str = "lazy", clock=time.perf_counter):
        self.torch = require("torch", "torch", "traindoctor.watch")
        if nan_guard not in ("lazy", "every_step", "off"):
            raise ValueError(f"nan_guard must be 'lazy', 'every_step' or 'off'; got {nan_guard!r}")
        if type(model).__name__ in ("DistributedDataParallel", "DataParallel"):
            model = model.module  # name modules as the user wrote them, not "module.*"
        self.model = model
        self.optimizers = [o for o in optimizers if o is not None]
        self.deep_every = max(1, int(deep_every))
        self.log_next = True  # is the coming step recorded? (the Watch decides, see next_step)
        self._last_deep = 0
        self._losses: list = []  # losses of steps not recorded, averaged into the next record
        self.nan_guard = nan_guard
        self.clock = clock
        self.params, owners = module_groups(model, depth)
        self.modules = list(dict.fromkeys(owners))
        index = {m: i for i, m in enumerate(self.modules)}
        self._owner_idx = [index[o] for o in owners]
        self.device = self.params[0].device if self.params else self.torch.device("cpu")
        self._idx = self.torch.tensor(self._owner_idx, dtype=self.torch.long, device=self.device)
        self.steps = 0  # training steps so far (recorded or not)
        self.hook_seconds = 0.0  # time spent in the optimizer hooks since the last record
        self.hook_total = 0.0  # ... and since the start (benchmarks/watch_overhead.py reads it)
        self.opt_steps = 0
        self._grad = None  # (tensor [total_sq, per-module sq...], names of modules with no grad at all)
        self._update = None  # tensor [dw_sq, w_sq, per-module dw_sq..., per-module w_sq...]
        self._before = None
        self._acts: list = []
        self._act_handles: list = []
        self._guard_handles: list = []
        self._guard_hits: list = []
        self._guard_input_bad = None
        self.guard_armed_at = None
        self.disabled: set[str] = set()
        self._last_t = None
        self._batch_t = None
        self._waiting = False
        self._statm = None
        self._handles = []
        for opt in self.optimizers:
            self._handles.append(opt.register_step_pre_hook(self._pre_step))
            self._handles.append(opt.register_step_post_hook(self._post_step))
        self._handles.append(model.register_forward_pre_hook(self._root_pre_forward))
        if self.deep_every == 1:
            self._arm_activations()
        if nan_guard == "every_step":
            self._arm_guard()

    # -- hooks ------------------------------------------------------------------------------------
    def _safe(self, what, fn, *args):
        if what in self.disabled:
            return None
        try:
            return fn(*args)
        except Exception as exc:  # a statistic must never take the user's run down
            self.disabled.add(what)
            log.warning("traindoctor watch: %s switched off after an error: %s: %s", what, type(exc).__name__, exc)
            return None

    def _root_pre_forward(self, module, args):
        if self._waiting and module.training:
            self._batch_t = self.clock()
            self._waiting = False
        return None

    def mark_batch_start(self) -> None:
        """Frameworks that know when a batch arrived (Lightning, HF) say so; plain loops need not."""
        if self._waiting:
            self._batch_t = self.clock()
            self._waiting = False

    def _deep_now(self) -> bool:
        """Is the coming step a deep one (a recorded step at least deep_every steps after the last)?"""
        return self.log_next and self.steps + 1 - self._last_deep >= self.deep_every

    def _pre_step(self, optimizer, args, kwargs):
        if self._deep_now() and "update ratio" not in self.disabled:
            t = self.clock()
            with self.torch.no_grad():
                self._before = [p.detach().clone() for p in self.params]
            self.hook_seconds += self.clock() - t
            self.hook_total += self.clock() - t

    def _post_step(self, optimizer, args, kwargs):
        # After the step, not before: Lightning (and LBFGS) run backward inside step(closure), so
        # only here are this step's gradients there; optimizers read .grad and leave it alone.
        self.opt_steps += 1
        if not self.log_next:
            return
        t = self.clock()
        self._safe("gradient norms", self._grad_norms)
        if self._before is not None:
            self._safe("update ratio", self._update_ratio)
            self._before = None
        self.hook_seconds += self.clock() - t
        self.hook_total += self.clock() - t

    def _grad_norms(self):
        torch = self.torch
        grads = [p.grad for p in self.params]
        present = [g for g in grads if g is not None]
        m = len(self.modules)
        if not present:
            self._grad = (torch.zeros(m + 1, device=self.device), tuple(self.modules))
            return
        if len(present) == len(grads):
            idx = self._idx
            none_mods = ()
        else:
            keep = [i for i, g in enumerate(grads) if g is not None]
            idx = self._idx[keep]
            have = {self._owner_idx[i] for i in keep}
            none_mods = tuple(self.modules[j] for j in range(m) if j not in have)
        with torch.no_grad():
            norms = _stack(torch, _foreach_norm(torch, present), self.device)
            sq = norms.float().square()
            per = torch.zeros(m, device=self.device).index_add_(0, idx, sq)
            self._grad = (torch.cat([per.sum().reshape(1), per]), none_mods)

    def _update_ratio(self):
        torch = self.torch
        m = len(self.modules)
        with torch.no_grad():
            now = [p.detach() for p in self.params]
            diff = torch._foreach_sub(now, self._before)
            dn = _stack(torch, _foreach_norm(torch, diff), self.device).float().square()
            wn = _stack(torch, _foreach_norm(torch, self._before), self.device).float().square()
            per_d = torch.zeros(m, device=self.device).index_add_(0, self._idx, dn)
            per_w = torch.zeros(m, device=self.device).index_add_(0, self._idx, wn)
            self._update = torch.cat([per_d.sum().reshape(1), per_w.sum().reshape(1), per_d, per_w])

    # activation statistics on deep steps
    def _arm_activations(self):
        if self._act_handles or "activation statistics" in self.disabled:
            return
        nn = self.torch.nn
        kinds = ((nn.ReLU, "relu"), (nn.ReLU6, "relu"), (nn.Tanh, "tanh"), (nn.Sigmoid, "sigmoid"),
                 (nn.Hardtanh, "tanh"))
        for name, mod in self.model.named_modules():
            kind = next((k for t, k in kinds if type(mod) is t), None)
            if kind:
                self._act_handles.append(mod.register_forward_hook(self._act_hook(name or "(root)", kind)))

    def _act_hook(self, name, kind):
        def hook(module, args, out):
            if module.training and isinstance(out, self.torch.Tensor):
                self._safe("activation statistics", self._act_stat, name, kind, out)
            return None
        return hook

    def _act_stat(self, name, kind, out):
        torch = self.torch
        with torch.no_grad():
            o = out.detach()
            if kind == "relu":
                if o.dim() < 2 or o.shape[0] < 2:
                    return
                dim = 1 if o.dim() == 4 else o.dim() - 1  # a unit: a conv channel, else a feature
                alive = (o > 0).transpose(0, dim).reshape(o.shape[dim], -1).any(dim=1)
                self._acts.append((name, "dead_fraction", 1.0 - alive.float().mean()))
            else:
                of = o.float()
                sat = of.abs() > TANH_EDGE if kind == "tanh" else (of < SIGMOID_EDGE) | (of > 1 - SIGMOID_EDGE)
                self._acts.append((name, "saturated_fraction", sat.float().mean()))

    def _disarm_activations(self):
        for h in self._act_handles:
            h.remove()
        self._act_handles = []

    # the NaN guard
    def _arm_guard(self):
        if self._guard_handles:
            return
        torch = self.torch
        self._guard_hits = []
        self._guard_input_bad = None

        def pre(module, args):
            if module.training and self._guard_input_bad is None:
                ts = [a for a in args if isinstance(a, torch.Tensor) and a.is_floating_point()]
                self._guard_input_bad = [(~torch.isfinite(t)).any() for t in ts]

        self._guard_handles.append(self.model.register_forward_pre_hook(pre))
        for name, mod in self.model.named_modules():
            self._guard_handles.append(mod.register_forward_hook(self._guard_hook(name or "(root)")))

    def _guard_hook(self, name):
        torch = self.torch

        def hook(module, args, out):
            if module.training and isinstance(out, torch.Tensor) and out.is_floating_point():
                self._guard_hits.append((name, (~torch.isfinite(out.detach())).any()))
            return None
        return hook

    def _disarm_guard(self):
        for h in self._guard_handles:
            h.remove()
        self._guard_handles = []

    def _resolve_guard(self) -> dict | None:
        """First module whose output was non-finite in the guarded forward (None if it was clean)."""
        hits, bad_in = self._guard_hits, self._guard_input_bad
        self._guard_hits, self._guard_input_bad = [], None
        if not hits:
            return None
        flags = self.torch.stack([f for _, f in hits] + list(bad_in or [])).tolist()
        inputs_bad = any(flags[len(hits):])
        first = next((hits[i][0] for i, f in enumerate(flags[:len(hits)]) if f), None)
        if first is None and not inputs_bad:
            return None
        return {"first_module": first, "inputs_non_finite": inputs_bad}

    # -- one record per step ------------------------------------------------------------------------
    def record(self, loss=None, outputs=None, targets=None) -> dict:
        """This step's statistics as a flat dict of floats (one host sync)."""
        torch = self.torch
        now = self.clock()
        rec: dict = {}
        parts, layout = [], []

        def put(name, t):
            t = t.detach().reshape(-1).float()
            parts.append(t)
            layout.append((name, t.numel()))

        if self._deep_now():
            self._last_deep = self.steps + 1
        self.steps += 1
        losses, self._losses = self._losses, []
        if loss is not None:
            losses.append(loss)
        if losses:  # the mean loss of the steps since the last record (HF's logging_steps does the same)
            if all(isinstance(v, torch.Tensor) for v in losses):
                put("train_loss", torch.stack([v.detach().float().mean() for v in losses]).mean())
            else:
                rec["train_loss"] = sum(float(v) for v in losses) / len(losses)
        if outputs is not None:
            self._safe("output spread", self._spread, outputs, targets, put)
        grad, self._grad = self._grad, None
        if grad is None and not self.optimizers:  # no optimizer to hook: read .grad now
            self._safe("gradient norms", self._grad_norms)
            grad, self._grad = self._grad, None
        if grad is not None:
            put("grad", grad[0])
        update, self._update = self._update, None
        if update is not None:
            put("update", update)
        acts, self._acts = self._acts, []
        for name, stat, t in acts:
            put(f"act/{name}/{stat}", t)
        guard = None
        if self._guard_handles:
            guard = self._safe("nan guard", self._resolve_guard)
        values = []
        if parts:
            try:
                if all(p.device == parts[0].device for p in parts):
                    values = torch.cat(parts).tolist()  # the one host sync of this step
                else:
                    values = torch.cat([p.cpu() for p in parts]).tolist()
            except Exception as exc:
                log.warning("traindoctor watch: could not read this step's statistics: %s", exc)
                values = []
        pos = 0
        m = len(self.modules)
        for name, n in layout if values else ():
            chunk = values[pos:pos + n]
            pos += n
            if name == "grad":
                rec["grad_norm"] = math.sqrt(chunk[0]) if chunk[0] >= 0 else math.nan
                for mod, v in zip(self.modules, chunk[1:]):
                    rec[f"grad_norm/{mod}"] = math.sqrt(v) if v >= 0 else math.nan
                for mod in grad[1]:
                    rec[f"grad_norm/{mod}"] = 0.0
                    rec.setdefault("_no_grad", []).append(mod)
            elif name == "update":
                rec["update_ratio"] = _ratio(chunk[0], chunk[1])
                for i, mod in enumerate(self.modules):
                    rec[f"update_ratio/{mod}"] = _ratio(chunk[2 + i], chunk[2 + m + i])
            else:
                rec[name] = chunk[0]
        lrs = [g.get("lr") for opt in self.optimizers for g in opt.param_groups]
        for i, lr in enumerate(lrs):
            if lr is not None:
                rec["lr" if i == 0 else f"lr/group{i}"] = float(lr)
        if self._last_t is not None:
            rec["step_time"] = now - self._last_t
            if self._batch_t is not None:
                rec["data_time"] = max(0.0, self._batch_t - self._last_t)
        mem = self._safe("memory", self._memory)
        if mem is not None:
            rec[mem[0]] = mem[1]
        if guard is not None:
            rec["_guard"] = guard
        if self.nan_guard != "off":
            self._guard_step(rec)
        rec["_hook_s"] = self.hook_seconds
        self.hook_seconds = 0.0
        return rec

    def skip(self, loss=None) -> None:
        """A step that is not recorded: its loss waits (detached, no sync) for the next record."""
        self.steps += 1
        if loss is not None:
            self._losses.append(loss.detach() if isinstance(loss, self.torch.Tensor) else float(loss))
        self._acts = []

    def next_step(self, log: bool) -> None:
        """Called after each step: is the next one recorded? Sets up its hooks and clocks."""
        self.log_next = log
        if self.deep_every > 1:  # activation hooks only for the forward of a deep step
            self._disarm_activations()
            if self._deep_now():
                self._arm_activations()
        self._last_t = self.clock()
        self._batch_t = None
        self._waiting = True

    def _guard_step(self, rec):
        """Lazy guard: armed once, for the forward after the first non-finite step, then removed."""
        if self.nan_guard != "lazy":
            return
        if self._guard_handles:  # it watched this step's forward and was resolved above
            self._disarm_guard()
        elif self.guard_armed_at is None and (rec.get("output_nonfinite", 0.0) > 0 or any(
                not math.isfinite(rec.get(k, 0.0)) for k in ("train_loss", "grad_norm", "output_std"))):
            self.guard_armed_at = self.steps
            self._arm_guard()

    def _spread(self, outputs, targets, put):
        torch = self.torch
        out = outputs
        if isinstance(out, dict) or hasattr(out, "logits"):
            out = out["logits"] if isinstance(out, dict) else out.logits
        if isinstance(out, (tuple, list)):
            out = out[0]
        if not isinstance(out, torch.Tensor) or not out.is_floating_point() or out.dim() == 0 or out.shape[0] < 2:
            return
        o = out.detach().float()
        n = o.shape[0]
        put("output_std", o.reshape(n, -1).std(dim=0).mean())
        put("output_nonfinite", (~torch.isfinite(o)).any().float())
        if not isinstance(targets, torch.Tensor) or targets.shape[0] != n:
            return
        if targets.is_floating_point():
            put("target_std", targets.detach().float().reshape(n, -1).std(dim=0).mean())
        elif o.dim() == 2 and o.shape[1] >= 2 and targets.dim() == 1:
            c = o.shape[1]
            pred = torch.zeros(c, device=o.device).index_add_(0, o.argmax(dim=1), torch.ones(n, device=o.device))
            lab = targets.detach()
            ok = (lab >= 0) & (lab < c)
            seen = torch.zeros(c, device=o.device).index_add_(0, lab.clamp(0, c - 1), ok.float())
            put("output_classes", (pred > 0).sum())
            put("target_classes", (seen > 0).sum())

    def _memory(self):
        torch = self.torch
        if self.device.type == "cuda":
            return "mem/cuda_peak_mb", torch.cuda.max_memory_allocated(self.device) / 2**20
        if self._statm is None:
            self._statm = os.open("/proc/self/statm", os.O_RDONLY) if os.path.exists("/proc/self/statm") else -1
        if self._statm >= 0:
            rss_pages = int(os.pread(self._statm, 128, 0).split()[1])
            return "mem/rss_mb", rss_pages * os.sysconf("SC_PAGE_SIZE") / 2**20
        import resource

        return "mem/rss_peak_mb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        self._disarm_activations()
        self._disarm_guard()
        if self._statm is not None and self._statm >= 0:
            os.close(self._statm)
        self._statm = None


def _foreach_norm(torch, tensors):
    try:
        return torch._foreach_norm(tensors)
    except Exception:  # sparse gradients, exotic dtypes: one norm each, still no host sync
        return [t.norm() if not t.is_sparse else t.coalesce().values().norm() for t in tensors]


def _stack(torch, norms, device):
    try:
        return torch.stack(norms)
    except RuntimeError:  # parameters on several devices
        return torch.stack([n.to(device) for n in norms])


def _ratio(d_sq: float, w_sq: float) -> float:
    if w_sq > 0 and math.isfinite(w_sq):
        return math.sqrt(d_sq / w_sq)
    return math.nan
