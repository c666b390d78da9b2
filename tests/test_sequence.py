"""Gaps in seqNo sequences: the same as listing the span, at a cost set by what is present."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ocpp_trio.domain.sequence import MISSING_LISTED, gaps


def listed_the_plain_way(present: list[int], first: int, last: int) -> list[int]:
    seen = set(present)
    return [n for n in range(first, last + 1) if n not in seen]


@given(
    present=st.lists(st.integers(-5, 40), max_size=12),
    first=st.integers(-5, 30),
    last=st.integers(-5, 40),
    limit=st.integers(1, 10),
)
def test_gaps_are_those_of_the_span(present: list[int], first: int, last: int, limit: int) -> None:
    missing = listed_the_plain_way(present, first, last)
    assert gaps(present, first, last, limit=limit) == (tuple(missing[:limit]), len(missing))


def test_a_huge_span_is_counted_not_listed() -> None:
    """A seqNo of 10**12 is valid: the gap is counted, and only its start is listed."""
    listed, count = gaps([0, 5, 10**12], 0, 10**12)
    assert count == 10**12 + 1 - 3  # the span, less the three present
    assert len(listed) == MISSING_LISTED
    assert listed[:5] == (1, 2, 3, 4, 6)
    assert listed[-1] == MISSING_LISTED + 1
