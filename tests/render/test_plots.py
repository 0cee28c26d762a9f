"""Plot helpers: decimation keeps extremes, ticks are round numbers."""

import numpy as np

from traindoctor.render.plots import Line, decimate, line_plot, nice_ticks


def test_decimate_keeps_every_column_min_and_max():
    rng = np.random.default_rng(0)
    x = np.arange(100_000, dtype=float)
    y = rng.normal(size=x.size)
    y[500] = 99.0
    y[77_777] = -99.0
    dx, dy = decimate(x, y, 500)
    assert dx.size <= 4 * 500
    assert 99.0 in dy and -99.0 in dy
    assert np.all(np.diff(dx) > 0)  # still in step order


def test_short_series_are_not_touched():
    x, y = np.arange(10.0), np.arange(10.0) ** 2
    dx, dy = decimate(x, y, 500)
    assert np.array_equal(dx, x) and np.array_equal(dy, y)


def test_nice_ticks():
    assert nice_ticks(0, 1, 6) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(0, 39, 6) == [0, 10, 20, 30]
    assert nice_ticks(5, 5) == [5]


def test_log_axis_for_a_loss_spanning_decades_and_escaped_legend():
    y = np.logspace(0, -5, 30)
    svg = line_plot([Line("a<b", np.arange(30.0), y)], title="t&t")
    assert "(log y)" in svg and "a&lt;b" in svg and "t&amp;t" in svg


def test_all_nan_series_draws_a_message_not_a_crash():
    svg = line_plot([Line("x", np.arange(3.0), np.full(3, np.nan))])
    assert "no finite values" in svg
