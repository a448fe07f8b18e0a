"""What a check concludes: a :class:`CheckRecord` (Mobly's ``records.TestResultRecord``), and
:class:`NotTestable`, which a check raises when its evidence cannot decide the claim (as a Mobly
test raises ``signals.TestSkip``): the reason is never empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .evidence import Locator

__all__ = ["CheckRecord", "NotTestable", "Status", "failed", "passed"]


class Status(str, Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    NOT_TESTABLE = "NOT-TESTABLE"


class NotTestable(Exception):
    """The evidence cannot decide the claim. ``host``: because the host's own tooling broke (the
    audit then exits 4), not because of the handset or the testbed."""

    def __init__(self, reason: str, *, host: bool = False) -> None:
        reason = " ".join(str(reason).split())
        if not reason:
            raise ValueError("a NOT-TESTABLE must say why")
        super().__init__(reason)
        self.reason = reason
        self.host = host


@dataclass(frozen=True, slots=True)
class CheckRecord:
    """One check's verdict: its status, why, where the evidence is, warnings. A FAIL names its
    evidence; a NOT-TESTABLE says why (``host``: the host's tooling is why)."""

    status: Status
    reason: str
    evidence: tuple[Locator, ...] = ()
    warnings: tuple[str, ...] = ()
    host: bool = False
    handsets: tuple[str, ...] | None = None  # None: every handset of the run

    def __post_init__(self) -> None:
        if not self.reason.strip():
            raise ValueError(f"a {self.status.value} needs a reason")
        if self.status is Status.FAIL and not self.evidence:
            raise ValueError("a FAIL must name its evidence")

    @classmethod
    def not_testable(cls, nt: NotTestable, **kw: object) -> CheckRecord:
        return cls(Status.NOT_TESTABLE, nt.reason, host=nt.host, **kw)  # type: ignore[arg-type]


def passed(
    reason: str, evidence: list[Locator] | tuple[Locator, ...] = (), warnings: list[str] | tuple[str, ...] = ()
) -> CheckRecord:
    return CheckRecord(Status.PASS, reason, tuple(evidence), tuple(sorted(set(warnings))))


def failed(
    reason: str, evidence: list[Locator] | tuple[Locator, ...], warnings: list[str] | tuple[str, ...] = ()
) -> CheckRecord:
    return CheckRecord(Status.FAIL, reason, tuple(evidence), tuple(sorted(set(warnings))))
