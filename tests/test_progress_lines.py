"""Progress where stderr is not a terminal (a log file, CI): done/total, elapsed and ETA lines, few of them (issue 21)."""

from __future__ import annotations

import logging
import time

import pytest

from editjudge import progress


def test_status_line_gives_done_total_elapsed_and_an_eta_from_the_mean_time_per_unit():
    assert progress.status_line("edit", 40, 112, "edits", 12.0) == "edit: 40/112 edits, 12 s elapsed, ETA 22 s"
    assert progress.status_line("score", 0, 8, "pairs", 3.0) == "score: 0/8 pairs, 3 s elapsed, ETA unknown"
    assert progress.status_line("edit", 1, 5, "edits", 90.0) == "edit: 1/5 edits, 1:30 elapsed, ETA 6:00"


@pytest.fixture
def fast_clock(monkeypatch):
    """Lines after 0.3 s, then every 0.6 s (instead of 5 s and 30 s)."""
    monkeypatch.setattr(progress, "TICK", 0.05)
    monkeypatch.setattr(progress, "FIRST_LOG", 0.3)
    monkeypatch.setattr(progress, "LOG_EVERY", 0.6)


def _progress_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "editjudge.progress"]


def test_a_stage_without_a_terminal_logs_a_few_status_lines_and_no_bar(fast_clock, caplog, capsys):
    caplog.set_level(logging.INFO, logger="editjudge.progress")
    with progress.StageProgress("edit", "edits", spawned=False) as bar:
        assert bar.bar is None  # stderr is captured, not a terminal
        progress.todo("a", 4)
        progress.todo("b", 4)
        progress.done("a", 2)
        time.sleep(1.2)  # a long load: the lines keep coming while nothing is done
        progress.done("a", 2)
    lines = _progress_lines(caplog)
    status = [line for line in lines if "elapsed" in line]
    # the first after FIRST_LOG, then one every LOG_EVERY: 2 in 1.2 s (not one per TICK, not one per update)
    assert 2 <= len(status) <= 3, lines
    assert status[0].startswith("edit: 2/8 edits, 0 s elapsed, ETA ") and status[0].endswith("(a 2/4, b 0/4)")
    assert lines[-1].startswith("edit: 4 edits in ") and lines[-1].endswith(": a 4/4, b 0/4")
    assert "\r" not in capsys.readouterr().err  # no tqdm bar written into the log


def test_steps_without_a_terminal_say_what_runs_and_how_long_it_took(fast_clock, caplog):
    caplog.set_level(logging.INFO, logger="editjudge.progress")
    with progress.Steps("checking the models and devices", "checks", quiet_below=0.1) as steps:
        steps.add(3)
        with steps.step("editor fast"):
            pass
        with steps.step("editor slow (imports diffusers)"):
            time.sleep(0.5)
        with steps.step("judge"):
            pass
    lines = _progress_lines(caplog)
    assert lines[0] == "checking the models and devices: 3 checks ..."
    assert any(line.startswith("checking the models and devices: 1/3 checks, 0 s elapsed, ETA ")
               and line.endswith("(now: editor slow (imports diffusers))") for line in lines), lines
    assert lines[-1].startswith("checking the models and devices: 3/3 checks in 0.")


def test_quick_steps_leave_only_their_first_line(caplog):
    caplog.set_level(logging.INFO, logger="editjudge.progress")
    with progress.Steps("checking", "checks") as steps:
        steps.add(1)
        with steps.step("x"):
            pass
    assert _progress_lines(caplog) == ["checking: 1 checks ..."]


def test_a_finished_stage_logs_its_totals_not_a_last_status_line(fast_clock, caplog):
    caplog.set_level(logging.INFO, logger="editjudge.progress")
    with progress.StageProgress("score", "pairs", spawned=False):
        progress.todo("a", 2)
        progress.done("a", 2)
        time.sleep(0.5)  # past FIRST_LOG, with nothing left to do (a worker closing its judge)
    lines = _progress_lines(caplog)
    assert len(lines) == 1 and lines[0].startswith("score: 2 pairs in "), lines
