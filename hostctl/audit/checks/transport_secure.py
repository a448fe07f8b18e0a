"""transport-secure: every connection to a Xiaomi host is TLS 1.2+; no clear HTTP carrying data.

Read from the capture's flows: TLS versions below 1.2, clear HTTP that carries an identifier (a
FAIL; without one a warning), and data to a vendor host in a protocol that is not TLS.
"""

from __future__ import annotations

from ..evidence import Evidence, Locator
from ..record import CheckRecord, NotTestable, failed, passed

ID = "transport-secure"
TITLE = "Transport is TLS 1.2+"
CLAIM = "Every connection to a Xiaomi host is TLS 1.2+; no clear HTTP carrying data."
READS = "wire"
NEEDS = ("capture",)


def evaluate(ev: Evidence) -> CheckRecord:
    if not any(h.wire and h.wire.get("captures") for h in ev.handsets):
        reasons = [r for h in ev.handsets for r in (h.capture_error, h.gone) if r]
        raise NotTestable("no capture was recorded" + (": " + "; ".join(dict.fromkeys(reasons)) if reasons else ""))
    found, warnings = [], []
    for h in ev.handsets:
        w = h.wire or {}
        cap = h.capture_rel()
        for t in w.get("weak_tls", []):
            found.append(
                Locator(file=cap, flow=t["flow"], offset=0, host=t["host"], text=f"{t['host']} over {t['version']}")
            )
        for c in w.get("clear_http", []):
            if c["findings"]:
                # the layers that carried them (issue 15: "the evidence names the layer"): a leak
                # inside a gzip'd body is found in http-body>gzip, not in the TCP stream's bytes
                chains = sorted(
                    {
                        f.get("chain") or "tcp"
                        for f in w.get("findings", [])
                        if f.get("source") == "wire" and f.get("flow") == c["flow"]
                    }
                )
                within = f" (in {', '.join(chains)})" if chains else ""
                found.append(
                    Locator(
                        file=cap,
                        flow=c["flow"],
                        offset=0,
                        host=c["host"],
                        identifier=", ".join(c["identifiers"]),
                        text=f"clear HTTP to {c['host']} carries {', '.join(c['identifiers'])}{within}",
                    )
                )
            else:
                reqs = ", ".join(f"{r.get('method')} {r.get('path')}" for r in c["requests"][:3])
                warnings.append(f"clear HTTP to {c['host']} ({reqs}): no identifier, but not TLS")
        for fl in w.get("flows", []):
            p = fl.get("protocol") or {}
            if fl.get("vendor") and p.get("name") not in ("tls", "http") and fl["bytes"]["c2s"] > 0:
                found.append(
                    Locator(
                        file=cap,
                        flow=fl["id"],
                        offset=0,
                        host=fl.get("host"),
                        text=f"{fl['server']}: {fl['bytes']['c2s']} bytes in a protocol that is not TLS",
                    )
                )
    if found:
        return failed("a connection to a Xiaomi host is not TLS 1.2+ or carries data in clear", found, warnings)
    return passed("every connection to a Xiaomi host carrying data is TLS 1.2 or later", warnings=warnings)
