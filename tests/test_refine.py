"""Coarse to fine: zoom properties, and refine rounds that move toward a known optimum."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

from hptune.config import load_config, parse_space
from hptune.errors import UserError
from hptune.records import TrialResult
from hptune.refine import default_top, zoom
from hptune.sampling import sample_trials
from hptune.search import plan_refine, refine, search
from hptune.space import Choice, Fixed, Range, Space

SPACE = Space((
    Range("lr", 1e-4, 1.0, scale="log"),
    Range("beta", 0.9, 0.999, scale="one_minus_log"),
    Range("units", 10, 200, integer=True),
    Choice("act", ("relu", "tanh", "sigmoid")),
    Fixed("epochs", 5),
))


def results(rows):
    """Trial results from dicts as the log holds them."""
    return [TrialResult.from_event(r) for r in rows]


def trials_scored(space, score, n=60, seed=0, status=lambda i: "ok"):
    rows = sample_trials(space, seed, range(n))
    return [{"trial": i, "status": status(i), "params": r, "metrics": {"score": score(r)}} for i, r in enumerate(rows)]


def score_fn(r):  # best near lr=1e-2, beta=0.99, units=100
    return -((math.log10(r["lr"]) + 2) ** 2 + (math.log10(1 - r["beta"]) + 2) ** 2 + ((r["units"] - 100) / 50) ** 2)


def test_zoom_lies_inside_is_narrower_and_covers_the_top_trials():
    trials = trials_scored(SPACE, score_fn)
    z = zoom(SPACE, results(trials), metric="score", goal="maximize", top=6, margin=0.1)
    best = sorted(trials, key=lambda t: -t["metrics"]["score"])[:6]
    for name in ("lr", "beta", "units"):
        old, new = SPACE[name], z.space[name]
        assert old.low <= new.low < new.high <= old.high
        a, b = old.coord_bounds()
        na, nb = new.coord_bounds()
        assert nb - na < b - a  # narrower in the sampling coordinate
        assert all(new.low <= t["params"][name] <= new.high for t in best)
    assert z.space["units"].integer and isinstance(z.space["units"].low, float)
    assert float(z.space["units"].low).is_integer()
    assert z.space["epochs"] == Fixed("epochs", 5)
    assert z.top == 6 and z.finished == 60


def test_the_zoom_happens_in_the_sampling_coordinate():
    # top trials at lr 1e-3 and 1e-2 -> log10 span [-3, -2], widened by 0.1 * 4 decades each side
    space = Space((Range("lr", 1e-4, 1.0, scale="log"),))
    trials = [{"trial": i, "status": "ok", "params": {"lr": lr}, "metrics": {"s": s}}
              for i, (lr, s) in enumerate([(1e-3, 1.0), (1e-2, 0.9), (0.5, 0.1), (1e-4, 0.0)])]
    z = zoom(space, results(trials), metric="s", goal="maximize", top=2, margin=0.1)
    assert z.space["lr"].low == pytest.approx(10 ** -3.4, rel=0.01)
    assert z.space["lr"].high == pytest.approx(10 ** -1.6, rel=0.01)


def test_one_minus_log_zoom_works_on_log10_of_one_minus_beta():
    space = Space((Range("b", 0.9, 0.999, scale="one_minus_log"),))
    trials = [{"trial": i, "status": "ok", "params": {"b": b}, "metrics": {"s": s}}
              for i, (b, s) in enumerate([(0.99, 1.0), (0.995, 0.9), (0.9, 0.0), (0.91, 0.0)])]
    z = zoom(space, results(trials), metric="s", goal="maximize", top=2, margin=0.0)
    assert z.space["b"].low == pytest.approx(0.99, abs=1e-4) and z.space["b"].high == pytest.approx(0.995, abs=1e-4)


def test_no_narrowing_when_the_top_trials_span_the_range():
    space = Space((Range("x", 0.0, 1.0),))
    trials = [{"trial": i, "status": "ok", "params": {"x": x}, "metrics": {"s": 1.0}} for i, x in enumerate([0.0, 1.0, 0.5])]
    z = zoom(space, results(trials), metric="s", goal="maximize", top=3)
    assert z.space["x"] == space["x"]


def test_choices_keep_the_values_seen_among_the_top_trials():
    trials = trials_scored(SPACE, lambda r: 1.0 if r["act"] == "tanh" else 0.0)
    z = zoom(SPACE, results(trials), metric="score", goal="maximize", top=5)
    assert z.space["act"] == Choice("act", ("tanh",))


def test_failed_and_diverged_trials_never_define_the_region():
    trials = trials_scored(SPACE, score_fn, status=lambda i: "ok" if i % 3 == 0 else ("failed" if i % 3 == 1 else "diverged"))
    for t in trials:
        if t["status"] != "ok":
            t["metrics"] = {"score": 1e9}  # would win if it counted
    z = zoom(SPACE, results(trials), metric="score", goal="maximize", top=4)
    assert z.finished == 20
    ok_best = sorted((t for t in trials if t["status"] == "ok"), key=lambda t: -t["metrics"]["score"])[:4]
    assert all(z.space["lr"].low <= t["params"]["lr"] <= z.space["lr"].high for t in ok_best)


def test_minimize_picks_the_lowest():
    trials = trials_scored(SPACE, lambda r: r["lr"])
    z = zoom(SPACE, results(trials), metric="score", goal="minimize", top=3)
    assert z.space["lr"].high < 0.01


def test_too_few_finished_trials_is_refused():
    trials = trials_scored(SPACE, score_fn, n=10, status=lambda i: "ok" if i < 2 else "failed")
    with pytest.raises(UserError, match="at least 3"):
        zoom(SPACE, results(trials), metric="score", goal="maximize")


def test_best_trials_at_a_user_edge_are_reported():
    trials = trials_scored(SPACE, lambda r: r["lr"])  # bigger is better: optimum above 1.0
    z = zoom(SPACE, results(trials), metric="score", goal="maximize", top=3)
    assert any("space.lr" in n and "high edge" in n and "widen" in n.lower() for n in z.notes)
    inner = trials_scored(SPACE, score_fn)
    assert not zoom(SPACE, results(inner), metric="score", goal="maximize", top=3).notes


def test_default_top_is_a_fifth_within_3_to_10():
    assert [default_top(n) for n in (3, 10, 25, 50, 200)] == [3, 3, 5, 10, 10]


OBJECTIVE = '''
import math

def train(params):
    # known optimum: lr = 3e-3, beta = 0.995
    d = (math.log10(params["lr"]) - math.log10(3e-3)) ** 2 + (math.log10(1 - params["beta"]) - math.log10(0.005)) ** 2
    return {"score": -d}
'''


@pytest.fixture()
def known_config(tmp_path: Path) -> Path:
    (tmp_path / "known.py").write_text(OBJECTIVE)
    cfg = tmp_path / "known.yaml"
    cfg.write_text(textwrap.dedent("""
        seed: 3
        objective: {function: "known:train", metric: score, goal: maximize}
        search: {trials: 40, jobs: 1, rounds: 3}
        space:
          lr: {low: 1.0e-5, high: 1.0, scale: log}
          beta: {low: 0.0, high: 0.9999, scale: one_minus_log}
    """))
    return cfg


def _distance(row):
    return math.hypot(math.log10(row["lr"]) - math.log10(3e-3), math.log10(1 - row["beta"]) - math.log10(0.005))


def test_refine_rounds_move_toward_the_known_optimum(known_config, tmp_path):
    out = search(load_config(known_config), tmp_path / "runs")
    frame = out.frame
    assert sorted(frame["round"].unique()) == [1, 2, 3]
    assert sorted(frame["trial"]) == list(range(120))
    # the median trial of each round lies closer to the optimum than the round before
    medians = [np.median([_distance(r) for _, r in frame[frame["round"] == k].iterrows()]) for k in (1, 2, 3)]
    assert medians[0] > medians[1] > medians[2], medians
    # each round's space contains the optimum and the next one inside the previous
    spaces = [parse_space(yaml.safe_load((out.run_dir / "rounds" / f"round-{k}.yaml").read_text())["space"], builtin=False)
              for k in (1, 2, 3)]
    for outer, inner in zip(spaces, spaces[1:]):
        assert outer["lr"].low <= inner["lr"].low and inner["lr"].high <= outer["lr"].high
    assert spaces[2]["lr"].low <= 3e-3 <= spaces[2]["lr"].high
    assert spaces[2]["beta"].low <= 0.995 <= spaces[2]["beta"].high


def test_round_files_record_parent_top_and_margin(known_config, tmp_path):
    out = search(load_config(known_config), tmp_path / "runs")
    text = (out.run_dir / "rounds" / "round-2.yaml").read_text()
    assert text.startswith("# Round 2 of run known")
    body = yaml.safe_load(text)
    assert body["parent"] == 1 and body["top"] == 8 and body["margin"] == 0.1
    assert body["first_trial"] == 40 and body["trials"] == 40
    # the `space:` block pastes into a config as is
    cfg = load_config(known_config)
    assert parse_space(body["space"], builtin=False).names == cfg.space.names


def test_refine_command_adds_a_round_and_continues_trial_numbers(known_config, tmp_path):
    cfg = load_config(known_config)
    from hptune.config import with_overrides

    first = search(with_overrides(cfg, rounds=1, trials=20), tmp_path / "runs")
    z, next_round = plan_refine(first.run_dir, top=4)
    assert next_round == 2 and z.top == 4
    out = refine(first.run_dir, trials=10, top=4)
    assert sorted(out.frame["trial"]) == list(range(30))
    assert set(out.frame[out.frame["trial"] >= 20]["round"]) == {2}
    assert (out.run_dir / "rounds" / "round-2.yaml").exists()
    csv = (out.run_dir / "results.csv").read_text().splitlines()
    assert len(csv) == 31 and csv[0].startswith("trial,round,status,lr,beta,score")


def test_an_integer_range_that_collapses_becomes_a_fixed_value():
    space = Space((Range("units", 10, 200, integer=True), Range("lr", 1e-4, 1.0, scale="log")))
    trials = [{"trial": i, "status": "ok", "params": {"units": 64, "lr": 10 ** -(1 + i / 10)}, "metrics": {"s": -i}}
              for i in range(10)]
    z = zoom(space, results(trials), metric="s", goal="maximize", top=3, margin=0.0)
    assert z.space["units"] == Fixed("units", 64)
    assert parse_space(z.space.to_yaml(), builtin=False) == z.space  # what is written reads back


def test_a_single_round_search_warns_when_the_best_trial_sits_at_an_edge(tmp_path):
    (tmp_path / "edge.py").write_text("def train(p):\n    return {'score': p['lr']}\n")
    cfg = tmp_path / "edge.yaml"
    cfg.write_text("objective: {function: 'edge:train', metric: score}\nsearch: {trials: 30, jobs: 1}\n"
                   "space: {lr: {low: 1.0e-4, high: 0.1, scale: log}}\n")
    out = search(load_config(cfg), tmp_path / "runs")
    assert any("space.lr" in n and "high edge" in n for n in out.notes), out.notes
