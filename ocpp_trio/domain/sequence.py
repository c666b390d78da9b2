"""Gaps in a numbered sequence (transaction events, report parts), bounded by what is present.

A station numbers the events of a transaction and the parts of a report, and the schemas do not
bound those numbers: a seqNo of 10**12 is valid. Counting and listing what is missing must
therefore cost in proportion to the numbers present, never to the span they cover, or one
message could keep the process busy (and its memory full) for minutes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

__all__ = ["MISSING_LISTED", "gaps"]

#: how many missing numbers are listed at most (all of them are counted)
MISSING_LISTED: Final = 1000


def gaps(
    present: Iterable[int], first: int, last: int, *, limit: int = MISSING_LISTED
) -> tuple[tuple[int, ...], int]:
    """The numbers from ``first`` to ``last`` (both included) that are not in ``present``:
    the lowest ``limit`` of them, in order, and how many there are in all.

    Costs O(p log p) for p numbers present, whatever the span.
    """
    inside = sorted({n for n in present if first <= n <= last})
    count = max(0, last - first + 1 - len(inside))
    listed: list[int] = []
    expected = first
    for n in (*inside, last + 1):
        room = limit - len(listed)
        if room <= 0:
            break
        listed.extend(range(expected, min(n, expected + room)))
        expected = n + 1
    return tuple(listed), count
