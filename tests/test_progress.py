"""analyses.progress: lines in a batch log, a bar on a terminal, nothing when quiet."""

from __future__ import annotations

import io
import re

import pytest

from analyses.progress import Progress

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_batch_log_gets_one_line_per_finished_sub_run_with_score_and_eta():
    log, clock = io.StringIO(), Clock()
    with Progress(4, desc="distill", stream=log, clock=clock) as progress:
        assert not progress.terminal
        for i, key in enumerate(["a", "b", "c", "d"]):
            clock.t += 10.0
            progress.update(key, score=f"errors {i}")
    lines = log.getvalue().splitlines()
    assert len(lines) == 4
    assert re.fullmatch(
        STAMP + r" distill: 1/4 sub-runs done, last a \(errors 0\); elapsed 0:00:10, ETA 0:00:30",
        lines[0],
    )
    assert lines[-1].endswith("4/4 sub-runs done, last d (errors 3); elapsed 0:00:40, ETA 0:00:00")


def test_the_eta_ignores_units_kept_from_an_earlier_run_and_lines_are_throttled():
    log, clock = io.StringIO(), Clock()
    progress = Progress(
        10, desc="sweep", unit="runs", initial=6, stream=log, clock=clock, min_interval_s=30
    )
    assert progress.eta_s() is None and progress.line().endswith("ETA ?")
    for _ in range(4):
        clock.t += 20.0
        progress.update("r")
    lines = log.getvalue().splitlines()
    # 20 s after the first line: too soon; 40 s: due; the last one always
    assert [ln.split(": ", 1)[1].split(",")[0] for ln in lines] == [
        "7/10 runs done",
        "9/10 runs done",
        "10/10 runs done",
    ]
    assert "ETA 0:00:20" in lines[1]  # 2 runs in 40 s here, 1 left


def test_a_terminal_gets_a_bar_and_quiet_gets_nothing():
    term = Terminal()
    with Progress(2, desc="codistill-nets", stream=term) as progress:
        assert progress.terminal
        progress.update("seed=0 independent", score="errors 41.0")
        progress.write("a note")
    text = term.getvalue()
    assert "codistill-nets" in text and "1/2" in text and "sub-runs" in text and "a note" in text
    assert "seed=0 independent errors 41.0" in text
    quiet = Terminal()
    with Progress(2, desc="x", stream=quiet, quiet=True) as progress:
        progress.update("a")
        progress.write("b")
    assert quiet.getvalue() == ""


def test_bad_counts_are_refused_naming_them():
    with pytest.raises(ValueError, match=r"initial must be an integer in \[0, 3\]; got 4"):
        Progress(3, desc="x", initial=4)
    with pytest.raises(ValueError, match="total must be an integer >= 0"):
        Progress(-1, desc="x")


def test_a_heartbeat_repeats_the_line_in_a_log_when_nothing_was_written_for_a_while():
    log, clock = io.StringIO(), Clock()
    progress = Progress(4, desc="transfer", stream=log, clock=clock)
    clock.t += 10.0
    progress.heartbeat("4 units left")  # 10 s of silence: not yet
    assert log.getvalue() == ""
    clock.t += 25.0
    progress.heartbeat("4 units left")
    (line,) = log.getvalue().splitlines()
    assert re.fullmatch(
        STAMP + r" transfer: 0/4 sub-runs done; elapsed 0:00:35, ETA \?; still working "
        r"\(4 units left\)",
        line,
    )
    clock.t += 5.0
    progress.heartbeat()  # 5 s after that line: nothing
    progress.update("a")  # a finished unit is always written
    clock.t += 30.0
    progress.heartbeat()
    assert len(log.getvalue().splitlines()) == 3
    assert log.getvalue().splitlines()[-1].endswith("; still working")
    terminal = Terminal()
    bar = Progress(2, desc="t", stream=terminal, clock=clock)
    clock.t += 100.0
    bar.heartbeat("x")  # a terminal has its bar
    bar.close()
    assert "still working" not in terminal.getvalue()


def test_run_units_with_workers_reports_while_it_waits_and_equals_one_process():
    from analyses.baselines import BaselineConfig, Job, build_retina, retina_inputs
    from analyses.runner import Unit, run_units
    from analyses.tasks import canvas_split, digits_split

    split = digits_split(seed=0)
    cv = canvas_split(split, canvas_px=24, digit_px=12, n_train=32, n_test=16, seed=0)
    retina = build_retina("uniform", n_cells=96, canvas_px=24, pixels_per_deg=2.0, seed=0)
    train = retina_inputs(retina, cv.train.images, cv.train.labels)
    test = retina_inputs(
        retina, cv.test.images, cv.test.labels, scale=(train.scale, train.image_scale)
    )
    cfg = BaselineConfig.quick().updated({"steps": 4})
    units = [
        Unit(f"{k}/uniform", k, [((k, s), Job(retina, train, {"test": test}, s)) for s in (0, 1)])
        for k in ("local", "lc-backprop")
    ]
    waited: list[list[str]] = []
    two = run_units(units, cfg, workers=2, on_wait=waited.append, wait_s=0.01)
    one = run_units(units, cfg, workers=1)
    assert waited and all(set(keys) <= {"local/uniform", "lc-backprop/uniform"} for keys in waited)
    assert set(two) == set(one)
    for key in one:
        assert two[key].loss_curve == one[key].loss_curve
        assert two[key].accuracies == one[key].accuracies
