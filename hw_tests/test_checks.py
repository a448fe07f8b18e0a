"""One test per audit check (hostctl.report.CHECK_IDS), judged by the audit's own verdict: the
audit runs once per handset pair and every test reads its report, so this suite and ``hostctl
audit`` share one implementation of every check.

On an emulated lab the verdict must be the one the firmware profile documents
(``audit_expectations``): the July 2014 profile expects FAILs, so a check that can never fail is
caught. On real handsets the claim must hold (PASS); a check the testbed cannot test
(NOT-TESTABLE) is skipped with the audit's reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from hostctl.emulator.profiles import load_profile
from hostctl.errors import HostctlError
from hostctl.report import CHECK_IDS, CHECKS_BY_ID


def _verdict(report: Mapping[str, Any], check_id: str) -> Mapping[str, Any]:
    for check in report.get("checks", []):
        if check.get("id") == check_id:
            return check
    pytest.fail(
        f"the audit's report has no verdict for {check_id} "
        f"(it has: {', '.join(c.get('id', '?') for c in report.get('checks', [])) or 'none'})",
        pytrace=False,
    )


def _explain(check: Mapping[str, Any], run_dir: Any, limit: int = 8) -> str:
    lines = [f"reason: {check.get('reason') or '(none given)'}"]
    evidence = check.get("evidence") or []
    for ev in evidence[:limit]:
        where = ", ".join(
            f"{k} {ev[k]}"
            for k in ("file", "flow", "offset", "row", "event", "host", "identifier", "form")
            if ev.get(k) is not None
        )
        lines.append(f"evidence: {where}: {ev.get('text', '')}" if where else f"evidence: {ev.get('text', '')}")
    if len(evidence) > limit:
        lines.append(f"... and {len(evidence) - limit} more evidence items")
    lines += [f"warning: {w}" for w in check.get("warnings") or []]
    lines.append(f"run folder: {run_dir}")
    return "\n".join(lines)


@pytest.fixture(scope="session")
def audit(handset_pair: Any, evidence_root: Any, lock_equipment: Any) -> Any:
    """``hostctl.audit.run_audit`` on the pair, once for the session (its handsets and the modem
    locked while it runs): an ``AuditResult`` with ``report`` (the ``hostctl.audit/1`` document),
    ``run_dir`` and ``exit_status``. Evidence: ``<evidence root>/audit-<pair>/<testbed>/<time>/``."""
    from hostctl.audit import AuditOptions, run_audit

    testbed = handset_pair.testbed
    options = AuditOptions(out=evidence_root / f"audit-{handset_pair.id.replace('+', '_')}", checks=None)
    if testbed.emulator is not None:  # what `hostctl audit --emulator` passes: the lab's control
        options.profile = load_profile(testbed.emulator.profile).name if testbed.emulator.profile else None
        if testbed.emulator.lab_dir:  # channel lives in <home>/labs/<adb port>/
            options.home = Path(testbed.emulator.lab_dir).parent.parent
    with lock_equipment(
        *testbed.handsets, modem=testbed.modem, who=f"hw_tests audit of {testbed.name} {handset_pair.id}"
    ):
        try:
            return run_audit(testbed, options)
        except HostctlError as exc:  # AuditError: it could not start; every check test says why
            problem = f"the audit of {testbed.name} ({handset_pair.id}) could not run: {exc}"
    pytest.fail(problem, pytrace=False)


@pytest.mark.parametrize("check_id", [pytest.param(c, id=c, marks=pytest.mark.check(c)) for c in CHECK_IDS])
def test_check(check_id: str, audit: Any, profile_expectations: Mapping[str, str] | None) -> None:
    check = _verdict(audit.report, check_id)
    status = check.get("status")
    claim = CHECKS_BY_ID[check_id].claim
    if profile_expectations is None:  # real handsets: the claim must hold
        if status == "NOT-TESTABLE":
            pytest.skip(f"{check_id}: NOT-TESTABLE on this testbed: {check.get('reason') or 'no reason given'}")
        assert status == "PASS", f"{check_id} {status}: {claim}\n{_explain(check, audit.run_dir)}"
        return
    expected = profile_expectations.get(check_id)
    if expected is None:
        pytest.skip(f"the firmware profile documents no verdict for {check_id} (audit_expectations)")
    assert status == expected, (
        f"{check_id}: the profile documents {expected}, the audit found {status}: "
        f"{claim}\n{_explain(check, audit.run_dir)}"
    )
