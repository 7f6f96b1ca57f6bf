"""Infrastructure failures reach the operator's log with their cause, without flooding it."""

from __future__ import annotations

import logging
import sqlite3

import pytest
import sqlalchemy.exc

from kefu.errors import OutageLog, Unavailable, translate


def test_the_first_failure_is_logged_then_one_line_per_period_with_the_count(
        caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    outages = OutageLog(every=5.0, clock=lambda: now[0])
    caplog.set_level(logging.WARNING, logger="kefu.errors")
    locked = sqlite3.OperationalError("database is locked")
    failure = sqlalchemy.exc.OperationalError("DELETE FROM tokens WHERE digest = ?", ("d1g3st",), locked)
    outages.report(failure)
    for _ in range(3):
        now[0] += 1.0
        outages.report(failure)
    assert [r.getMessage() for r in caplog.records] == [
        "a backing store failed, answered unavailable: OperationalError: database is locked"]
    now[0] += 2.5  # 5.5 s after the first report
    outages.report(ConnectionError("Error 111 connecting to 127.0.0.1:6379"))
    assert caplog.records[-1].getMessage() == (
        "a backing store failed, answered unavailable: ConnectionError: Error 111 connecting to "
        "127.0.0.1:6379 (3 more since the last report)")
    assert "d1g3st" not in caplog.text and "DELETE" not in caplog.text


def test_translate_reports_infrastructure_only(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="kefu.errors")
    assert translate(ValueError("a bug")) is None
    mine = Unavailable("already translated")
    assert translate(mine) is mine
    assert not caplog.records
    assert isinstance(translate(TimeoutError("timed out")), Unavailable)
