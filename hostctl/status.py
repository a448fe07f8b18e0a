"""hostctl's exit codes: the one table (httpie's ``status.py``). The CLI returns them, the audit
computes its own from the same table, and the README's "Exit codes" lists them.

No imports from the rest of hostctl: any module may use it.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["ExitStatus"]


class ExitStatus(IntEnum):
    """Documented exit codes (README, "Exit codes")."""

    OK = 0
    ERROR = 1  # the command could not do its job (message on stderr)
    USAGE = 2  # bad arguments (a bad testbed file too)
    CHECK_FAILED = 3  # an audit or expectation ran and failed
    NOT_RUNNABLE = 4  # the job could not run at all (no lab, no device, dead adb server), or an
    # audit whose host tooling broke so that a check could not be judged
    # (a degraded run: never 0 or 3, whatever the other checks say)
    TIMEOUT = 5  # a device, server or port did not answer in time
    INTERRUPTED = 130  # Ctrl-C / SIGINT / SIGTERM: the partial results are written
