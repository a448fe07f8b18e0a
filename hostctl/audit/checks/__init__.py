"""The audit's checks, one module each (MISSION.md's table). Every module has:

- ``ID``: the check's id in reports; ``TITLE``; ``CLAIM``: the claim it tests; ``READS``: the
  evidence it reads, for a person;
- ``NEEDS``: which recorders its evidence comes from (``device``: adb steps on the handsets,
  ``capture``, ``trace``, ``modem``, ``lab``: the emulated lab's server); a host fault in one of
  them makes the check's NOT-TESTABLE the host's doing and keeps it from PASS;
- ``evaluate(evidence) -> CheckRecord``, raising :class:`~hostctl.audit.record.NotTestable` when
  the evidence cannot decide.

:data:`CHECKS` is the registry: the modules' names, in report order. A new check is a new module
here and its name in the tuple.
"""

from __future__ import annotations

import importlib
from functools import cache
from types import ModuleType

__all__ = ["CHECKS", "NEED_KINDS", "modules"]

CHECKS: tuple[str, ...] = (
    "opt_in_default",
    "no_identifiers_before_opt_in",
    "ip_when_online",
    "sms_fallback_when_offline",
    "presence_lookup_minimal",
    "phone_numbers_encrypted",
    "content_encrypted",
    "transport_secure",
    "imsi_after_login",
    "no_retention",
    "tls_plaintext_agrees",
)
NEED_KINDS = ("device", "capture", "trace", "modem", "lab")


@cache
def modules() -> tuple[ModuleType, ...]:
    """The check modules, in :data:`CHECKS` order (each checked for its contract)."""
    out = []
    for name in CHECKS:
        m = importlib.import_module(f"{__name__}.{name}")
        for attr in ("ID", "TITLE", "CLAIM", "READS", "NEEDS", "evaluate"):
            if not hasattr(m, attr):
                raise TypeError(f"check module {m.__name__} has no {attr}")
        if not set(m.NEEDS) <= set(NEED_KINDS):
            raise TypeError(f"check module {m.__name__}: NEEDS {m.NEEDS} not among {NEED_KINDS}")
        out.append(m)
    return tuple(out)
