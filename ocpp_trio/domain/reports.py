"""Multi-part reports as plain frozen records (sans-IO, no trio).

A CSMS request (GetBaseReport, GetReport, GetMonitoringReport, GetChargingProfiles,
CustomerInformation, GetDisplayMessages, 2.1 GetDERControl) is answered at once with a status,
then the data arrives as station CALLs carrying the same ``requestId``: NotifyReport,
NotifyMonitoringReport, ReportChargingProfiles, NotifyCustomerInformation,
NotifyDisplayMessages, ReportDERControl.  A :class:`Report` collects them under
(part action, requestId).

Parts are ordered by ``seqNo`` where the message has one (NotifyReport, NotifyMonitoringReport,
NotifyCustomerInformation: numbered from 0).  ReportChargingProfiles, NotifyDisplayMessages and
ReportDERControl carry no seqNo: their parts are numbered in arrival order, and gaps cannot be
seen.  The report finishes with the part whose ``tbc`` is false: COMPLETE when no seqNo is
missing, else INCOMPLETE (``missing`` says which).  A report with no part for too long is
EXPIRED (by the report task's timer).

What one report holds is bounded when :func:`add_part` is given ``max_items`` (the machines give
:attr:`~ocpp_trio.MachinesConfig.max_report_items`): a part that would take the report past that
many data items is not kept, but counted in ``dropped``; its seqNo is then missing, so the
report finishes INCOMPLETE.  The last part (``tbc`` false) is always kept: it finishes the
report.  An answer other than Accepted finishes it at once: EMPTY
for "nothing to report" (EmptyResultSet, NoProfiles, Unknown, NotFound), else REJECTED.
"""

from __future__ import annotations

import bisect
import datetime
import enum
from collections.abc import Mapping
from typing import Any, Final

import attrs

from ocpp_trio.domain.sequence import gaps
from ocpp_trio.messages._base import Message

__all__ = [
    "EMPTY_ANSWERS",
    "REPORT_KINDS",
    "Report",
    "ReportPart",
    "ReportStatus",
    "add_part",
    "answer_report",
    "expire_report",
    "part_from_message",
]

#: request action -> the action of the station's parts
REPORT_KINDS: Final[Mapping[str, str]] = {
    "GetBaseReport": "NotifyReport",
    "GetReport": "NotifyReport",
    "GetMonitoringReport": "NotifyMonitoringReport",
    "GetChargingProfiles": "ReportChargingProfiles",
    "CustomerInformation": "NotifyCustomerInformation",
    "GetDisplayMessages": "NotifyDisplayMessages",
    "GetDERControl": "ReportDERControl",
}
#: the part actions
PART_ACTIONS: Final = frozenset(REPORT_KINDS.values())
#: answers meaning "accepted, but there is nothing to report"
EMPTY_ANSWERS: Final = frozenset({"EmptyResultSet", "NoProfiles", "Unknown", "NotFound"})

_SEQUENCED: Final = frozenset(
    {"NotifyReport", "NotifyMonitoringReport", "NotifyCustomerInformation"}
)
# the attribute(s) of a part holding its data items
_ITEMS: Final[Mapping[str, tuple[str, ...]]] = {
    "NotifyReport": ("report_data",),
    "NotifyMonitoringReport": ("monitor",),
    "ReportChargingProfiles": ("charging_profile",),
    "NotifyCustomerInformation": ("data",),
    "NotifyDisplayMessages": ("message_info",),
    "ReportDERControl": (
        "curve",
        "enter_service",
        "fixed_pf_absorb",
        "fixed_pf_inject",
        "fixed_var",
        "freq_droop",
        "gradient",
        "limit_max_discharge",
    ),
}


class ReportStatus(enum.Enum):
    """Where a report stands."""

    IN_PROGRESS = "in progress"
    #: the last part arrived and no seqNo is missing
    COMPLETE = "complete"
    #: the last part arrived but seqNos are missing
    INCOMPLETE = "incomplete"
    #: no part for longer than the report timeout
    EXPIRED = "expired"
    #: the station answered that there is nothing to report
    EMPTY = "empty"
    #: the station answered Rejected, NotSupported, Invalid, ...
    REJECTED = "rejected"


@attrs.frozen(kw_only=True)
class ReportPart:
    """One part: its place, whether more follow, and the station's message itself."""

    seq_no: int
    tbc: bool
    message: Message
    generated_at: datetime.datetime | None = None
    received_at: datetime.datetime | None = attrs.field(default=None, eq=False)

    @property
    def items(self) -> tuple[Any, ...]:
        """The data items of this part (e.g. NotifyReport ``reportData`` entries; the text of
        a NotifyCustomerInformation part)."""
        out: list[Any] = []
        for name in _ITEMS.get(self.message.ACTION, ()):
            value = getattr(self.message, name, None)
            if value is None:
                continue
            if isinstance(value, tuple):
                out.extend(value)
            else:
                out.append(value)
        return tuple(out)


@attrs.frozen(kw_only=True)
class Report:
    """One multi-part report.

    Attributes:
        identity: the station.
        kind: the part action (``"NotifyReport"``, ...).
        request_id: the ``requestId``.
        request: our request, when the CSMS saw it go out.
        answer: the station's answer status to the request, once known.
        parts: the parts received, sorted by seqNo.
        status: see :class:`ReportStatus`.
        started_at: when the request was answered (or the first part came).
        finished_at: when it finished.
        duplicates: parts received again (same seqNo), ignored.
        dropped: parts not kept: the report held as many data items as it may (see
            :func:`add_part`).
        held_items: the data items of ``parts`` as :func:`add_part` counts them (a part
            without any counts as one).
    """

    identity: str
    kind: str
    request_id: int
    request: Message | None = None
    answer: str | None = None
    parts: tuple[ReportPart, ...] = ()
    status: ReportStatus = ReportStatus.IN_PROGRESS
    started_at: datetime.datetime
    finished_at: datetime.datetime | None = None
    duplicates: int = 0
    dropped: int = 0
    held_items: int = 0

    @property
    def key(self) -> tuple[str, int]:
        """(part action, requestId)."""
        return (self.kind, self.request_id)

    @property
    def finished(self) -> bool:
        """Whether the report reached a final status."""
        return self.status is not ReportStatus.IN_PROGRESS

    @property
    def last_seq_no(self) -> int | None:
        """The seqNo of the final part (``tbc`` false), once received."""
        for part in self.parts:
            if not part.tbc:
                return part.seq_no
        return None

    @property
    def missing(self) -> tuple[int, ...]:
        """SeqNos missing before the final part (or before the highest part so far): the
        lowest :data:`~ocpp_trio.domain.sequence.MISSING_LISTED` (1,000) of them (a seqNo is
        not bounded, a list of the gap is)."""
        if not self.parts:
            return ()
        top = self.last_seq_no
        if top is None:
            top = self.parts[-1].seq_no
        return gaps((p.seq_no for p in self.parts), 0, top)[0]

    @property
    def items(self) -> tuple[Any, ...]:
        """The data items of all parts, in seqNo order."""
        return tuple(item for part in self.parts for item in part.items)


def part_from_message(
    message: Message, received_at: datetime.datetime | None, *, arrival: int
) -> ReportPart:
    """A part from a station's report message; ``arrival`` numbers parts without a seqNo."""
    seq_no = getattr(message, "seq_no", None) if message.ACTION in _SEQUENCED else None
    tbc = getattr(message, "tbc", None)
    generated = getattr(message, "generated_at", None)
    return ReportPart(
        seq_no=seq_no if isinstance(seq_no, int) else arrival,
        tbc=bool(tbc),
        message=message,
        generated_at=generated if isinstance(generated, datetime.datetime) else None,
        received_at=received_at,
    )


def _seq_no(part: ReportPart) -> int:
    return part.seq_no


def add_part(
    report: Report, part: ReportPart, at: datetime.datetime, *, max_items: int | None = None
) -> Report:
    """The report with ``part`` added; finished when the part is the last one.

    A part whose seqNo was seen before is counted as a duplicate and ignored.  With
    ``max_items``, a part that would take the report past that many data items (a part
    without any counts as one) is counted in ``dropped`` and not kept, unless it is the last.
    Costs O(log n) comparisons for n parts held (and one copy of their tuple).
    """
    if report.finished:
        return report
    parts = report.parts
    seq_no = part.seq_no
    # parts are sorted by seqNo: insert after any equal one (arrival order among equals)
    place = bisect.bisect_right(parts, seq_no, key=_seq_no)
    if report.kind in _SEQUENCED and place and parts[place - 1].seq_no == seq_no:
        return attrs.evolve(report, duplicates=report.duplicates + 1)
    weight = max(1, len(part.items))
    if part.tbc and max_items is not None and report.held_items + weight > max_items:
        return attrs.evolve(report, dropped=report.dropped + 1)
    report = attrs.evolve(
        report,
        parts=(*parts[:place], part, *parts[place:]),
        held_items=report.held_items + weight,
    )
    if not part.tbc:
        status = ReportStatus.INCOMPLETE if report.missing else ReportStatus.COMPLETE
        report = attrs.evolve(report, status=status, finished_at=at)
    return report


def answer_report(
    report: Report, request: Message | None, answer: str, at: datetime.datetime
) -> Report:
    """The report once the station answered the request with ``answer``."""
    report = attrs.evolve(report, request=request or report.request, answer=answer)
    if report.finished or answer == "Accepted":
        return report
    status = ReportStatus.EMPTY if answer in EMPTY_ANSWERS else ReportStatus.REJECTED
    return attrs.evolve(report, status=status, finished_at=at)


def expire_report(report: Report, at: datetime.datetime) -> Report:
    """The report given up for lack of parts (no change once finished)."""
    if report.finished:
        return report
    return attrs.evolve(report, status=ReportStatus.EXPIRED, finished_at=at)
