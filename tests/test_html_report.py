"""report.html: sections, embedded figures, axes on the sampling scale, and a real browser rendering it."""

from __future__ import annotations

import base64
import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from hptune.report.html import REPORT_VERSION, _log_ticks, _one_minus_label, page_version
from conftest import require_program
from hptune.report.files import write_report_files
from hptune.runstate import Run

from test_report import params, random_trials, trial, write_run  # the fake-run builder

SECTIONS = ("summary", "trials", "influence", "metric-vs-params", "coarse-to-fine", "curves", "choices", "failures")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars"]


def curve(score: float) -> list[dict[str, float]]:
    return [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.2 / e, "val_accuracy": score * e / 3} for e in (1, 2, 3)]


@pytest.fixture
def full_run(tmp_path: Path) -> Path:
    """Two rounds (the second zoomed), curves, a diverged and a failed trial."""
    first = random_trials(30, lambda p, rng: 1 - abs(math.log10(p["lr"]) + 2) / 4 + rng.normal(0, 0.02))
    rng = np.random.default_rng(1)
    second = []
    for i in range(20):
        p = params(lr=float(10 ** rng.uniform(-3, -1)), beta=float(1 - 10 ** rng.uniform(-2.5, -1.5)),
                   width=int(rng.integers(30, 80)), act="relu")
        second.append(trial(30 + i, p, 1 - abs(math.log10(p["lr"]) + 2) / 4, round_no=2))
    trials = first + second
    for t in trials:
        t["curve"] = curve(t["metrics"]["score"])
    trials.append(trial(50, params(lr=0.9), None, status="diverged", error="loss is nan at epoch 2", round_no=2))
    trials.append(trial(51, params(lr=0.5), None, status="failed", error="Traceback ...\nValueError: boom", round_no=2))
    zoomed = {"lr": {"low": 1e-3, "high": 0.1, "scale": "log"},
              "beta": {"low": 0.9, "high": 0.997, "scale": "one_minus_log"},
              "width": {"low": 30, "high": 80, "integer": True}, "act": ["relu"], "epochs": 3}
    from test_report import SPACE

    return write_run(tmp_path / "full", trials, round_spaces=[SPACE, zoomed])


def page_of(run: Path) -> str:
    write_report_files(Run.open(run))
    return (run / "report.html").read_text()


def test_page_has_every_section_and_self_contained_images(full_run: Path) -> None:
    html = page_of(full_run)
    for section in SECTIONS:
        assert f'<section id="{section}">' in html, section
    images = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([^"]+)">', html)
    assert len(images) == 4  # metric vs parameters, coarse to fine, learning curves, choices
    for data in images:
        png = base64.b64decode(data)
        assert png.startswith(b"\x89PNG") and len(png) > 5000
    # opens offline: nothing is fetched from anywhere
    assert not re.search(r'(src|href)="(https?:)?//', html) and "<link" not in html
    assert page_version(full_run / "report.html") == REPORT_VERSION
    assert "estimate" in html and "from 50 finished trials" in html
    assert "zoom on the top 3 of round 1" in html


def test_failures_are_summarized(full_run: Path) -> None:
    html = page_of(full_run)
    failures = html[html.index('<section id="failures">'):]
    assert "1 trial(s) diverged" in failures and "1 failed" in failures
    assert "loss is nan at epoch 2" in failures and "ValueError: boom" in failures
    assert "Where they happened" in failures


def test_page_says_why_a_picture_is_missing(tmp_path: Path) -> None:
    space = {"act": ["relu", "tanh"], "epochs": 3}
    run = write_run(tmp_path / "choice-only", [trial(i, {"act": a, "epochs": 3}, s)
                                               for i, (a, s) in enumerate([("relu", 0.5), ("tanh", 0.7)] * 5)],
                    space=space)
    html = page_of(run)
    assert html.count("<img ") == 1  # the choice plot only
    assert "No picture: no numeric parameter varied" in html
    assert "No picture: needs two numeric parameters" in html
    assert "No picture: no learning curves were recorded" in html


def test_a_run_without_trials_still_has_a_page(tmp_path: Path) -> None:
    run = write_run(tmp_path / "empty", [])
    html = page_of(run)
    assert "No trials yet" in html and "<img " not in html


def test_one_minus_log_ticks_are_labelled_in_x() -> None:
    assert _one_minus_label(0.1) == "0.9"
    assert _one_minus_label(0.01) == "0.99"
    assert _one_minus_label(0.001) == "0.999"
    assert _one_minus_label(0.005) == "0.995"
    assert _log_ticks(1e-3, 1e-1) == pytest.approx([1e-3, 1e-2, 1e-1])
    assert _log_ticks(2e-3, 3e-2) == pytest.approx([2e-3, 5e-3, 1e-2, 2e-2])


def test_page_renders_with_all_images_in_headless_chromium(full_run: Path, tmp_path: Path) -> None:
    chromium = shutil.which("chromium-browser") or require_program("chromium", "it renders report.html (apt-get install chromium)")
    page_of(full_run)
    url = (full_run / "report.html").resolve().as_uri()
    base = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000"]
    dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body[^>]*>", dom.stdout)
    assert body, dom.stdout[:500]
    # the page's own script marks the body once every image decoded (complete, naturalWidth > 0)
    assert 'data-images="4/4"' in body.group(0)
    assert 'data-images-ok="true"' in body.group(0)
    shot = tmp_path / "page.png"
    subprocess.run([*base, "--window-size=1280,2400", f"--screenshot={shot}", url], capture_output=True,
                   timeout=120, check=True)
    from PIL import Image

    image = np.asarray(Image.open(shot).convert("L"))
    assert image.shape == (2400, 1280)
    assert (image < 200).mean() > 0.01  # text and figures drew something dark
