"""Live checks on the recorder's per-step statistics, under the probes' finding codes.

The probes decide from one batch; here the same questions are asked of every step, so each
check wants the condition to hold over several consecutive records before it speaks (a module
whose gradient is zero on one step is not dead; one that stays at exactly zero for five
optimizer steps is). Thresholds are the probes' own (quoted in each finding's evidence).
torch-free: plain floats in, Findings out.
"""

from __future__ import annotations

import math

from ..detectors._util import fmt
from ..finding import Finding, Fix

__all__ = ["LiveChecks"]


class LiveChecks:
    def __init__(self, *, dead_after: int = 5, max_total_norm: float = 1e3, update_high: float = 1e-1,
                 max_dead_fraction: float = 0.5, max_saturated: float = 0.5, deep_repeats: int = 2,
                 collapse_after: int = 20, min_std_ratio: float = 0.01):
        # dead_after: consecutive optimizer steps with an exactly-zero gradient before a module is
        # called dead (one zero step can be a masked batch). max_total_norm, update_high,
        # max_dead_fraction, max_saturated, min_std_ratio: the probes' defaults
        # (exploding_gradients, weight_update_ratio, dead_relu, saturated_activations,
        # prediction_collapse). deep_repeats: deep-step measurements in a row that must agree.
        self.p = dict(dead_after=dead_after, max_total_norm=max_total_norm, update_high=update_high,
                      max_dead_fraction=max_dead_fraction, max_saturated=max_saturated,
                      deep_repeats=deep_repeats, collapse_after=collapse_after, min_std_ratio=min_std_ratio)
        self._zero: dict[str, int] = {}
        self._zero_since: dict[str, float] = {}
        self._streak: dict[str, int] = {}
        self._collapse = 0
        self._collapse_since = None
        self._guarded = False

    def update(self, rec: dict, step: float) -> list[Finding]:
        out: list[Finding] = []
        if "grad_norm" in rec:
            out += self._dead(rec, step)
            out += self._exploding(rec, step)
        if "update_ratio" in rec:
            out += self._update(rec, step)
        acts = [k for k in rec if k.startswith("act/")]
        if acts:
            out += self._acts(rec, acts, step)
        if "output_std" in rec:
            out += self._collapsed(rec, step)
        if "_guard" in rec and not self._guarded:  # the first non-finite output is the one that matters
            self._guarded = True
            out += self._guard(rec["_guard"], step)
        return out

    # -- dead_gradients --------------------------------------------------------------------------
    def _dead(self, rec, step):
        n = self.p["dead_after"]
        no_grad = set(rec.get("_no_grad", ()))
        mods = [k[len("grad_norm/"):] for k in rec if k.startswith("grad_norm/")]
        for m in mods:
            if rec[f"grad_norm/{m}"] == 0.0:
                self._zero[m] = self._zero.get(m, 0) + 1
                self._zero_since.setdefault(m, step)
            else:
                self._zero.pop(m, None)
                self._zero_since.pop(m, None)
        dead = [m for m in mods if self._zero.get(m, 0) == n]  # == : said once, when it becomes true
        if not dead:
            return []
        all_dead = [m for m in mods if self._zero.get(m, 0) >= n]
        since = min(self._zero_since[m] for m in all_dead)
        table = [{"module": m, "gradient": "none" if m in no_grad else "zero",
                  "zero_steps": self._zero[m]} for m in all_dead[:50]]
        shown = ", ".join(all_dead[:5]) + (f" and {len(all_dead) - 5} more" if len(all_dead) > 5 else "")
        return [Finding(
            "dead_gradients", "error" if len(all_dead) == len(mods) else "warning",
            f"{len(all_dead)} of {len(mods)} module(s) got no gradient for {n} optimizer steps in a row: {shown}",
            metric=all_dead[0],
            evidence={"modules": all_dead[:50], "module_count": len(all_dead), "modules_watched": len(mods),
                      "table": table, "since_step": since, "step": step,
                      "grad_norm": rec["grad_norm"],
                      "thresholds": {"dead_after_steps": n, "gradient_is_dead_when": "None or exactly 0"}},
            steps=(since, step),
            explanation=(f"The gradient norm of these modules has been exactly 0 (or their .grad None) at "
                         f"every optimizer step since step {fmt(since)}, while the rest of the model gets "
                         "gradients: they are not on the path from the inputs to the loss (an unused "
                         "output, .detach(), torch.no_grad(), argmax) and will never change."),
            fixes=(Fix("Trace how the named modules' outputs reach the loss; remove .detach()/no_grad() on that path",
                       "a detached tensor passes values forward but no gradient backward"),
                   Fix("Delete modules whose output is never used, or wire them in",
                       "unused modules only cost memory and mislead the reader"),
                   Fix("If they are meant to be frozen, set requires_grad=False on them",
                       "then they are not trainable and not reported",
                       "for p in model.frozen_part.parameters():\n    p.requires_grad_(False)")),
        )]

    # -- exploding_gradients ---------------------------------------------------------------------
    def _exploding(self, rec, step):
        g = rec["grad_norm"]
        limit = self.p["max_total_norm"]
        if math.isfinite(g) and g <= limit:
            return []
        loss = rec.get("train_loss")
        if not math.isfinite(g) and loss is not None and not math.isfinite(loss):
            return []  # a NaN loss makes NaN gradients: nan_loss says that, with its cause
        mods = sorted(((k[len("grad_norm/"):], v) for k, v in rec.items() if k.startswith("grad_norm/")),
                      key=lambda kv: -kv[1] if math.isfinite(kv[1]) else -math.inf)
        bad = [m for m, v in mods if not math.isfinite(v)]
        top = bad[0] if bad else (mods[0][0] if mods else None)
        what = f"non-finite gradients in {', '.join(bad[:5])}" if bad else f"total gradient norm {fmt(g)} (> {limit:g})"
        return [Finding(
            "exploding_gradients", "error" if bad else "warning", f"Gradients explode at step {fmt(step)}: {what}",
            metric=top,
            evidence={"step": step, "total_grad_norm": g, "loss": loss, "non_finite_modules": bad[:50],
                      "table": [{"module": m, "grad_norm": v} for m, v in mods[:20]],
                      "lr": rec.get("lr"), "thresholds": {"max_total_norm": limit}},
            steps=(step, step),
            explanation=("One optimizer step with gradients this large moves the weights far from where the "
                         "loss was measured; the loss jumps or becomes NaN soon after. Common clipping norms "
                         "are 0.5-5 (Pascanu et al. 2013)."),
            fixes=(Fix("Clip gradients before optimizer.step()", "bounds the size of any single update",
                       "torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)"),
                   Fix("Lower the learning rate", "a smaller step keeps the loss where it was measured")),
        )]

    # -- weight_update_ratio ---------------------------------------------------------------------
    def _streaks(self, key: str, hit: bool) -> int:
        self._streak[key] = self._streak.get(key, 0) + 1 if hit else 0
        return self._streak[key]

    def _update(self, rec, step):
        high, n = self.p["update_high"], self.p["deep_repeats"]
        r = rec["update_ratio"]
        if self._streaks("update_ratio", math.isfinite(r) and r > high) != n:
            return []
        per = sorted(((k[len("update_ratio/"):], v) for k, v in rec.items()
                      if k.startswith("update_ratio/") and math.isfinite(v)), key=lambda kv: -kv[1])
        worst = per[0] if per else ("(all)", r)
        return [Finding(
            "weight_update_ratio", "warning",
            f"Each optimizer step changes the weights by {fmt(r)} of their norm (above the {high:g} bound "
            f"around ~{fmt(1e-3)}), {n} measurements in a row",
            metric=worst[0],
            evidence={"update_ratio": r, "step": step, "worst_module": worst[0], "worst_ratio": worst[1],
                      "table": [{"module": m, "ratio": v} for m, v in per[:20]], "lr": rec.get("lr"),
                      "thresholds": {"high": high, "rule_of_thumb": 1e-3, "measurements_in_a_row": n}},
            steps=(step, step),
            explanation=("The size of an update relative to the weight it changes should be around 1e-3 "
                         "(Karpathy, CS231n); much larger means each step rewrites the weights: the learning "
                         "rate is too high."),
            fixes=(Fix("Lower the learning rate", "brings the update/weight ratio towards ~1e-3"),),
        )]

    # -- dead_relu / saturated_activations -------------------------------------------------------
    def _acts(self, rec, keys, step):
        out = []
        n = self.p["deep_repeats"]
        for k in keys:
            site, _, stat = k[len("act/"):].rpartition("/")
            v = rec[k]
            if stat == "dead_fraction":
                limit, code = self.p["max_dead_fraction"], "dead_relu"
            else:
                limit, code = self.p["max_saturated"], "saturated_activations"
            if self._streaks(k, v > limit) != n:
                continue
            pct = round(100 * v, 1)
            if code == "dead_relu":
                title = f"{site}: {fmt(pct)}% of its ReLU units were never active on a whole batch, {n} checks in a row"
                expl = ("A ReLU unit whose input is negative for every example outputs zero and gets zero "
                        "gradient; once dead it does not come back. A learning rate that is too high, or a "
                        "large negative bias, kills units during training.")
                fixes = (Fix("Lower the learning rate", "large steps push pre-activations permanently negative"),
                         Fix("Use LeakyReLU/GELU or Kaiming initialisation", "a dead unit then still gets a gradient"))
            else:
                title = f"{site}: {fmt(pct)}% of its outputs sit at the activation's bounds, {n} checks in a row"
                expl = ("A saturated tanh or sigmoid has a derivative near zero, so these units pass almost "
                        "no gradient; usually the pre-activations are too large.")
                fixes = (Fix("Normalise the pre-activations (LayerNorm/BatchNorm) or lower the init scale",
                             "keeps them in the responsive range"),)
            out.append(Finding(
                code, "warning", title, metric=site,
                evidence={"site": site, "percent": pct, "fraction": v, "step": step,
                          "thresholds": {("max_dead_fraction" if code == "dead_relu" else "max_saturated"): limit,
                                         "checks_in_a_row": n}},
                steps=(step, step), explanation=expl, fixes=fixes))
        return out

    # -- prediction_collapse ---------------------------------------------------------------------
    def _collapsed(self, rec, step):
        n, min_ratio = self.p["collapse_after"], self.p["min_std_ratio"]
        ev = None
        if "target_std" in rec and rec["target_std"] > 0:
            ratio = rec["output_std"] / rec["target_std"]
            if ratio < min_ratio:
                ev = {"pred_std": rec["output_std"], "target_std": rec["target_std"], "ratio": ratio}
        elif "output_classes" in rec:
            if rec["output_classes"] == 1 and rec.get("target_classes", 0) >= 2:
                ev = {"predicted_classes": 1, "label_classes": int(rec["target_classes"])}
        if ev is None:
            self._collapse, self._collapse_since = 0, None
            return []
        self._collapse += 1
        if self._collapse_since is None:
            self._collapse_since = step
        if self._collapse != n:
            return []
        since = self._collapse_since
        if "ratio" in ev:
            title = (f"Predictions barely vary across the batch: std {fmt(ev['pred_std'])} vs target std "
                     f"{fmt(ev['target_std'])}, for {n} steps in a row")
        else:
            title = (f"Every example of each batch is predicted as one class ({ev['label_classes']} classes in "
                     f"the labels), for {n} steps in a row")
        return [Finding(
            "prediction_collapse", "warning", title, metric="predictions",
            evidence={**ev, "since_step": since, "step": step,
                      "thresholds": {"steps_in_a_row": n, "min_std_ratio": min_ratio}},
            steps=(since, step),
            explanation=("The model predicts nearly the same output for every input while the targets vary: "
                         "the loss settles where a constant is optimal and the features are ignored."),
            fixes=(Fix("Check that the inputs reach the head and remove squashing heads that saturate",
                       "a constant output means no signal reaches the head"),
                   Fix("Standardise the targets and initialise the head's bias at their mean",
                       "the head then learns deviations from the mean")),
        )]

    # -- the NaN guard ---------------------------------------------------------------------------
    def _guard(self, guard, step):
        first, inputs_bad = guard.get("first_module"), guard.get("inputs_non_finite")
        if inputs_bad:
            title = f"The model's inputs hold NaN/Inf at step {fmt(step)}: the data, not the model, is non-finite first"
            metric = "inputs"
            expl = ("The batch fed to the model already held NaN or Inf values, so every output after it is "
                    "non-finite too. Check the data pipeline (a division by zero in normalisation, a corrupt sample).")
        else:
            title = f"First non-finite output at step {fmt(step)}: module {first}"
            metric = first
            expl = (f"In the forward pass after the loss or gradients became non-finite, {first} was the first "
                    "module (in execution order) whose output held NaN or Inf. Its inputs were finite, so the "
                    "overflow happens inside it or in its weights (already ruined by a huge update).")
        return [Finding(
            "nan_loss", "error", title, metric=metric,
            evidence={"step": step, "first_non_finite_module": first, "inputs_non_finite": bool(inputs_bad),
                      "thresholds": {"checked": "torch.isfinite on every module output, in execution order"}},
            steps=(step, step), explanation=expl,
            fixes=(Fix("Lower the LR and clip gradients", "a huge update is the usual way weights become NaN",
                       "torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)"),
                   Fix("Run one step with torch.autograd.set_detect_anomaly(True)",
                       "names the backward operation that produced the first NaN")),
        )]
