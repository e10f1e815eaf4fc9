"""Calls written down before they are sent: a live process's file is left alone, a dead
one's is booked once (as estimated charges), and a booked call is not booked again."""
import datetime as dt

from shared.core.accounting import Accountant, CallRecord, Outcome
from shared.core.allowances import Hold
from shared.core.inflight import InFlight, settle_orphans
from shared.core.journal import CallJournal, call_from_json, call_to_json, journal_path
from shared.core.keys import sync_keys
from shared.core.models import UsageEvent
from tests.conftest import make_config


def _intent(key_id: int, n: int) -> CallRecord:
    return CallRecord(key_id=key_id, bot="b", operation="op", model="gpt-4o-mini", outcome=Outcome.INTERRUPTED,
                      input_tokens=100, estimated=True, error_code="process_died", call_id=f"in-flight-{n}")


def test_a_dead_process_s_calls_in_flight_are_booked_once_and_a_live_one_s_left_alone(sqlite_db, sqlite_url,
                                                                                       tmp_path):
    key_id = sync_keys(make_config(1, url=sqlite_url)).ids()[0]
    book = Accountant("b").record_once
    live = InFlight(tmp_path, "b")
    live.intend(_intent(key_id, 1))
    assert settle_orphans(tmp_path, "b", book) == 0          # its process holds the file
    assert UsageEvent.select().count() == 0
    book(CallRecord(key_id=key_id, bot="b", operation="op", model="gpt-4o-mini", input_tokens=120,
                    output_tokens=30, call_id="in-flight-2"))   # this one was booked before the crash
    live.intend(_intent(key_id, 2))
    live.intend(_intent(key_id, 3))
    book(CallRecord(key_id=key_id, bot="b", operation="op", model="gpt-4o-mini", input_tokens=90,
                    output_tokens=40, call_id="in-flight-3"))
    live.done("in-flight-3")                                  # booked and forgotten
    live.close()                                              # the process is gone, calls left in flight
    assert settle_orphans(tmp_path, "b", book) == 1
    events = {e.call_id: e for e in UsageEvent.select()}
    assert set(events) == {"in-flight-1", "in-flight-2", "in-flight-3"}
    assert events["in-flight-1"].estimated and events["in-flight-1"].outcome == "interrupted"
    assert events["in-flight-2"].output_tokens == 30         # the real bookings stand
    assert events["in-flight-3"].output_tokens == 40
    assert not list(tmp_path.glob("inflight-*")) and settle_orphans(tmp_path, "b", book) == 0


def test_nothing_in_flight_leaves_no_file(tmp_path):
    inflight = InFlight(tmp_path, "b")
    inflight.intend(_intent(1, 1))
    assert inflight.path.stat().st_size > 0
    inflight.done("in-flight-1")
    assert inflight.path.stat().st_size == 0                  # emptied at once, not only at the end
    inflight.close()
    assert not inflight.path.exists()


def test_a_call_with_its_reservation_survives_the_journal_format():
    hold = Hold("h1", ((3, dt.datetime(2026, 11, 30, 0, 0)), (4, dt.datetime(2026, 11, 30, 15, 0))), on_key=True)
    call = CallRecord(key_id=1, bot="b", operation="op", model="m", hold=hold, call_id="c")
    assert call_from_json(call_to_json(call)) == call


async def test_a_call_journaled_with_its_usage_is_not_booked_as_its_estimate(sqlite_db, sqlite_url, tmp_path):
    key_id = sync_keys(make_config(1, url=sqlite_url)).ids()[0]
    dead = InFlight(tmp_path, "b")
    dead.intend(_intent(key_id, 1))
    dead.intend(_intent(key_id, 2))              # still open: the file keeps call 1's intent too
    journal = CallJournal(journal_path(tmp_path, "b"))
    journal.append(CallRecord(key_id=key_id, bot="b", operation="op", model="gpt-4o-mini", input_tokens=150,
                              output_tokens=60, call_id="in-flight-1"))   # served, the database was away
    dead.done("in-flight-1")
    dead.close()                                 # then the process died
    accountant = Accountant("b", journal=journal, inflight=InFlight(tmp_path, "b"))
    try:
        await accountant.settle_journal()
    finally:
        accountant.close()
    events = {e.call_id: e for e in UsageEvent.select()}
    assert events["in-flight-1"].output_tokens == 60 and not events["in-flight-1"].estimated
    assert events["in-flight-2"].estimated


def test_a_file_opened_at_start_is_held_by_its_process_and_gone_after_a_clean_stop(tmp_path):
    live = InFlight(tmp_path / "data", "b")
    live.open()
    assert live.path.exists()
    assert settle_orphans(tmp_path / "data", "b", lambda call: None) == 0     # held: its process runs
    assert live.path.exists()
    live.close()
    assert not live.path.exists()


def test_a_file_that_cannot_be_opened_at_start_is_reported_at_the_first_call_not_before(tmp_path, caplog):
    (tmp_path / "data").write_text("a file where the folder should be")
    live = InFlight(tmp_path / "data", "b")
    live.open()
    assert not caplog.records
    live.intend(_intent(1, 1))
    assert "cannot write in-flight calls" in caplog.text
