"""Selection policies are pure: tested with plain values, no database."""
import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.ranking import POLICIES, Candidate, rank, signature

T = dt.datetime(2026, 3, 1, 12)


def keys(*lefts, used=None):
    used = used or [None] * len(lefts)
    return [Candidate(id=i + 10, position=i, left=left, last_used_at=u) for i, (left, u) in enumerate(zip(lefts, used))]


def test_sticky_keeps_the_current_key_while_it_is_eligible():
    pool = keys(900, 900, 900, 900)
    assert rank("sticky", pool, current=pool[2]) == [12, 13, 10, 11]


def test_sticky_moves_to_the_next_key_in_config_order_when_the_current_one_drops_out():
    pool = keys(900, 900, 900, 900)
    gone = pool.pop(2)                      # key #3 became EXHAUSTED: no longer a candidate
    assert rank("sticky", pool, current=gone) == [13, 10, 11]
    last = pool.pop()                       # wraps around after the last key
    assert rank("sticky", pool, current=last) == [10, 11]


def test_sticky_without_a_current_key_starts_at_the_first_in_config():
    assert rank("sticky", keys(5, 900, 900)) == [10, 11, 12]


def test_a_key_below_the_headroom_is_not_ranked_first():
    pool = keys(900, 100, 900)
    assert rank("sticky", pool, current=pool[1], headroom=500) == [12, 10, 11]
    assert rank("most-remaining", keys(100, 200), headroom=500) == [11, 10]   # nobody has room: order kept


def test_round_robin_puts_the_least_recently_used_key_first():
    pool = keys(900, 900, 900, used=[T, None, T - dt.timedelta(hours=1)])
    assert rank("round-robin", pool) == [11, 12, 10]


def test_most_remaining_puts_the_fullest_key_first_ties_by_config_order():
    assert rank("most-remaining", keys(500, 900, 900, 100)) == [11, 12, 10, 13]


def test_unknown_policy_is_a_bug():
    with pytest.raises(ValueError):
        rank("random", keys(1))


def test_signature_ignores_what_the_policy_does_not_look_at():
    a, b = Candidate(1, 0, 900, T), Candidate(1, 0, 800, T + dt.timedelta(seconds=1))
    assert signature("sticky", a, 500) == signature("sticky", b, 500)
    assert signature("most-remaining", a, 500) != signature("most-remaining", b, 500)
    assert signature("round-robin", a, 500) != signature("round-robin", b, 500)
    assert signature("sticky", a, 850) != signature("sticky", b, 850)       # room for one call changed
    assert signature("sticky", None, 0) is None


candidates = st.lists(st.builds(Candidate, id=st.integers(1, 10_000), position=st.integers(0, 50),
                                left=st.integers(0, 5_000),
                                last_used_at=st.none() | st.datetimes(dt.datetime(2026, 1, 1),
                                                                      dt.datetime(2027, 1, 1))),
                      unique_by=lambda c: c.id, max_size=30)


@given(pool=candidates, policy=st.sampled_from(POLICIES), headroom=st.integers(0, 5_000), pick=st.integers(0, 40))
def test_every_policy_ranks_each_candidate_once_and_leads_with_room_when_any_key_has_it(pool, policy, headroom, pick):
    current = pool[pick % len(pool)] if pool else None
    ranking = rank(policy, pool, current=current, headroom=headroom)
    assert sorted(ranking) == sorted(c.id for c in pool)
    by_id = {c.id: c for c in pool}
    if any(c.left >= headroom for c in pool):
        assert by_id[ranking[0]].left >= headroom
    if policy == "sticky" and current is not None and current.left >= headroom:
        assert ranking[0] == current.id
