"""Scales, unit mapping and sampling: exact properties and statistical tests."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from hptune.sampling import sample_trials, training_seed, unit_draws
from hptune.space import Choice, Fixed, Range, Space, format_value

N = 20_000


def draw(param, n=N, seed=0):
    return np.array([row[param.name] for row in sample_trials(Space((param,)), seed, range(n))])


def test_log_scale_gives_each_decade_a_quarter():
    x = draw(Range("lr", 1e-4, 1.0, scale="log"))
    shares = [np.mean((x >= 10.0 ** k) & (x < 10.0 ** (k + 1))) for k in (-4, -3, -2, -1)]
    # binomial sd for p=0.25, n=20000 is 0.0031; 5 sd
    assert shares == pytest.approx([0.25] * 4, abs=0.016)
    assert np.mean(x >= 0.1) < 0.3  # uniform sampling would give 0.9


def test_one_minus_log_splits_half_and_half_around_0_99():
    x = draw(Range("beta", 0.9, 0.999, scale="one_minus_log"))
    assert x.min() >= 0.9 and x.max() <= 0.999
    assert np.mean(x < 0.99) == pytest.approx(0.5, abs=0.018)


@pytest.mark.parametrize("param, median", [
    (Range("lr", 1e-4, 1.0, scale="log"), math.sqrt(1e-4 * 1.0)),
    (Range("wd", 2e-6, 5e-2, scale="log"), math.sqrt(2e-6 * 5e-2)),
    (Range("beta", 0.9, 0.999, scale="one_minus_log"), 1 - math.sqrt(0.1 * 0.001)),
    (Range("beta", 0.0, 0.99, scale="one_minus_log"), 1 - math.sqrt(1.0 * 0.01)),
    (Range("u", 50, 100), 75.0),
])
def test_closed_form_medians(param, median):
    x = draw(param)
    # compare in the sampling coordinate, where the sample median's error is uniform-sized
    a, b = param.coord_bounds()
    got = (float(param.to_coord(np.median(x))) - a) / (b - a)
    want = (float(param.to_coord(median)) - a) / (b - a)
    assert got == pytest.approx(want, abs=0.02)


def _cdf(param):
    a, b = param.coord_bounds()
    if param.scale == "one_minus_log":
        return lambda x: (b - np.log10(1 - np.asarray(x))) / (b - a)
    return lambda x: (np.asarray(param.to_coord(x)) - a) / (b - a)


@pytest.mark.parametrize("param", [
    Range("u", -3.0, 7.0),
    Range("lr", 1e-5, 10.0, scale="log"),
    Range("beta", 0.9, 0.9999, scale="one_minus_log"),
    Range("beta2", 0.0, 0.999, scale="one_minus_log"),
])
def test_goodness_of_fit_against_the_analytic_cdf(param):
    x = draw(param, n=5000, seed=3)
    result = stats.kstest(x, _cdf(param))
    assert result.pvalue > 0.001, result


@pytest.mark.parametrize("param", [
    Range("units", 3, 9, integer=True),
    Range("batch", 16, 512, scale="log", integer=True),
])
def test_integer_ranges_reach_both_ends_with_the_right_probabilities(param):
    x = draw(param, n=20_000, seed=5)
    assert x.min() == param.low and x.max() == param.high
    assert np.all(x == np.round(x))
    ks = np.arange(int(param.low), int(param.high) + 1)
    if param.scale == "log":
        a, b = np.log10(param.low - 0.5), np.log10(param.high + 0.5)
        p = (np.log10(ks + 0.5) - np.log10(ks - 0.5)) / (b - a)
    else:
        p = np.full(len(ks), 1 / len(ks))
    observed = np.array([(x == k).sum() for k in ks])
    # pool the sparse tail of the log-integer pmf so that expected counts stay >= 5
    expected = p * len(x)
    keep = expected >= 5
    obs = np.append(observed[keep], observed[~keep].sum())
    exp = np.append(expected[keep], expected[~keep].sum())
    if exp[-1] == 0:
        obs, exp = obs[:-1], exp[:-1]
    assert stats.chisquare(obs, exp * obs.sum() / exp.sum()).pvalue > 0.001


def test_choices_are_uniform_and_keep_types():
    space = Space((Choice("act", ("relu", "tanh", "sigmoid")), Choice("bn", (True, False))))
    rows = sample_trials(space, 0, range(9000))
    counts = {v: sum(r["act"] == v for r in rows) for v in ("relu", "tanh", "sigmoid")}
    assert stats.chisquare(list(counts.values())).pvalue > 0.001
    assert {type(r["bn"]) for r in rows} == {bool}


def test_fixed_values_pass_through_and_draw_nothing():
    with_fixed = Space((Fixed("epochs", 10), Range("lr", 1e-3, 1.0, scale="log")))
    without = Space((Range("lr", 1e-3, 1.0, scale="log"),))
    a, b = sample_trials(with_fixed, 1, range(5)), sample_trials(without, 1, range(5))
    assert [r["lr"] for r in a] == [r["lr"] for r in b]
    assert all(r["epochs"] == 10 for r in a)


def test_a_trial_depends_only_on_seed_number_and_space():
    space = Space((Range("lr", 1e-4, 1.0, scale="log"), Choice("layers", (2, 3, 4))))
    batch = sample_trials(space, 7, range(50))
    alone = sample_trials(space, 7, [31])
    shuffled = sample_trials(space, 7, [40, 31, 3])
    assert alone[0] == batch[31] == shuffled[1]
    assert shuffled[0] == batch[40]
    assert sample_trials(space, 8, [31])[0] != batch[31]


def test_training_seeds_differ_per_trial_and_are_stable():
    seeds = [training_seed(0, t) for t in range(1000)]
    assert len(set(seeds)) == 1000
    assert training_seed(0, 17) == seeds[17]
    assert all(0 <= s < 2 ** 31 for s in seeds)


def test_unit_draws_are_independent_across_columns():
    u = unit_draws(0, range(4000), 2)
    assert abs(stats.spearmanr(u[:, 0], u[:, 1]).statistic) < 0.06


@pytest.mark.parametrize("param", [
    Range("lr", 1e-4, 1.0, scale="log"),
    Range("beta", 0.9, 0.999, scale="one_minus_log"),
    Range("u", -1.0, 1.0),
])
def test_unit_mapping_round_trips_and_increases(param):
    u = np.linspace(0.001, 0.999, 50)
    x = param.from_unit(u)
    assert np.all(np.diff(x) > 0)
    assert np.allclose(param.to_unit(x), u)


@pytest.mark.parametrize("param, value, text", [
    (Range("lr", 1e-4, 1.0, scale="log"), 0.0012, "1.20e-03"),
    (Range("beta", 0.9, 0.999, scale="one_minus_log"), 0.99531, "0.9953"),
    (Range("beta", 0.9, 0.99999, scale="one_minus_log"), 0.999912, "0.999912"),
    (Range("units", 1, 9, integer=True), 7, "7"),
    (None, "relu", "relu"),
])
def test_values_are_formatted_for_their_scale(param, value, text):
    assert format_value(param, value) == text
