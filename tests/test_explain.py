"""explain / list: every finding code is documented, and explain quotes the live thresholds."""

from __future__ import annotations

import pytest

from traindoctor import cli
from traindoctor.catalog import CATALOG, explain_text
from traindoctor.registry import all_checks

# DESIGN.md's vocabulary ("extend, never rename") plus the engine's internal_error
DESIGN_CODES = """
overfitting train_val_gap plateau loss_constant divergence nan_loss loss_spikes oscillation
slow_convergence underfitting lr_schedule metric_disagreement impossible_value throughput
dead_gradients vanishing_gradients exploding_gradients lr_too_high lr_too_low cannot_overfit_batch
prediction_collapse input_independent_output saturated_activations dead_relu init_loss_mismatch
class_imbalance output_range_mismatch double_softmax unnormalized_inputs nan_inputs
params_not_in_optimizer weak_loss_gradient weight_update_ratio internal_error
""".split()


def test_every_design_code_has_a_full_entry():
    assert set(DESIGN_CODES) <= set(CATALOG)
    for code, e in CATALOG.items():
        assert e["family"] in ("curve", "probe", "meta"), code
        for key in ("summary", "meaning", "detection"):
            assert e[key].strip(), (code, key)
        if e["family"] != "meta":
            assert e["fixes"] and e["sources"], code


def test_every_registered_check_is_in_the_catalog():
    missing = sorted(set(all_checks()) - set(CATALOG))
    assert not missing, f"add these codes to traindoctor/catalog.py: {missing}"


def test_explain_prints_the_detectors_current_defaults(capsys):
    checks = all_checks()
    code = "overfitting" if "overfitting" in checks else next(iter(checks), None)
    if code is None:
        pytest.skip("no detector registered")
    assert cli.main(["explain", code]) == 0
    out = capsys.readouterr().out
    assert CATALOG[code]["summary"] in out and "Sources:" in out and "Typical fixes:" in out
    for name, value in checks[code].defaults.items():
        assert f"{name} = {value!r}" in out


def test_explain_without_a_registered_check_still_explains():
    text = explain_text("internal_error")
    assert "Current thresholds" not in text and "a check crashed" in text


def test_unknown_code_is_one_line_and_exit_2(capsys):
    assert cli.main(["explain", "overfit"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'overfit'" in err and "traindoctor list" in err


def test_list_prints_every_code(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    listed = {line.split()[0] for line in out.splitlines() if line.strip()}
    assert listed >= set(CATALOG) | set(all_checks())
