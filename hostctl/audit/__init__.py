"""The audit: MISSION.md's checks on any testbed, with the evidence a lab would sign.

- :mod:`.run`: the protocol's phases on the testbed, with a capture and a Frida trace on every
  handset; it fills an :class:`~.evidence.Evidence` and writes the run folder and reports;
- :mod:`.evidence`: the typed facts the checks read, and :class:`~.evidence.Locator`;
- :mod:`.record`: :class:`~.record.CheckRecord`, and :class:`~.record.NotTestable` (raised);
- :mod:`.checks`: one module per check (its id, claim, needs and ``evaluate``), the registry
  :data:`~.checks.CHECKS`;
- :mod:`hostctl.report`: the report's schema, validation and rendering.

The public API (``run_audit``, ``AuditOptions``, ``AuditResult``, ``AuditError``) is loaded on
first use, so :mod:`hostctl.report` can read the check registry without importing the run.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AuditError",
    "AuditOptions",
    "AuditResult",
    "EXIT_FAIL",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_RUN",
    "EXIT_PASS",
    "run_audit",
]


def __getattr__(name: str) -> Any:
    if name in __all__ or name == "Audit":
        from . import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
