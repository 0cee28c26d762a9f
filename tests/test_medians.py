"""The fast rolling medians give np.nanmedian's numbers exactly, with or without the shared memo."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from traindoctor.detectors._util import (
    rolling_median,
    row_medians,
    shared_medians,
    trailing_median,
)


def _reference_rolling(v, window, edges):
    """The definition, one window at a time (what the detectors were written against)."""
    n, half = v.size, max(1, int(window)) // 2
    out = np.empty(n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for i in range(n):
            h = min(half, i, n - 1 - i) if edges == "symmetric" else half
            out[i] = np.nanmedian(v[max(0, i - h): i + h + 1])
    return out


def _series(n, seed, holes):
    r = np.random.default_rng(seed)
    v = np.exp(-np.arange(n) / max(n / 3, 1)) + 0.1 * r.standard_normal(n)
    if holes:
        v[r.integers(0, n, n // 9 + 1)] = np.nan
        v[r.integers(0, n, 2)] = np.inf
    return v


@pytest.mark.parametrize("holes", [False, True])
@pytest.mark.parametrize("n,window", [(7, 3), (50, 4), (300, 51), (1000, 50), (1000, 7)])
def test_rolling_and_trailing_medians_match_the_definition(n, window, holes):
    v = _series(n, n + window, holes)
    for edges in ("shrink", "symmetric"):
        assert np.array_equal(rolling_median(v, window, edges=edges), _reference_rolling(v, window, edges),
                              equal_nan=True)
    ref = np.full(n, np.nan)
    for i in range(1, n):
        w = v[max(0, i - window): i]
        if np.isfinite(w).any():
            ref[i] = np.nanmedian(w)
    assert np.array_equal(trailing_median(v, window), ref, equal_nan=True)


def test_row_medians_is_nanmedian_in_blocks_and_the_memo_changes_nothing():
    v = _series(70_000, 3, holes=True)
    windows = np.lib.stride_tricks.sliding_window_view(v, 51)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert np.array_equal(row_medians(windows), np.nanmedian(windows, axis=1), equal_nan=True)
    plain = {e: rolling_median(v, 51, edges=e) for e in ("shrink", "symmetric")}
    plain["wide"] = rolling_median(v, 3501)  # the strided path of long series
    with shared_medians():
        for _ in range(2):  # the second call is served from the memo
            for e in ("shrink", "symmetric"):
                got = rolling_median(v, 51, edges=e)
                assert np.array_equal(got, plain[e], equal_nan=True)
                got[:] = 0.0  # a caller writing into its result must not change the shared one
            wide = rolling_median(v, 3501)
            assert np.array_equal(wide, plain["wide"], equal_nan=True)
            wide[:] = 0.0
