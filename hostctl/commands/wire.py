"""``hostctl wire-check``: the analyser on the command line.

Exit status: 0 when no identifier was found readable (in clear, encoded or hashed), 3
(CHECK_FAILED) when one was, 1 when a capture or events file could not be read at all.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..cli import CliError, Environment, ExitStatus, print_json, print_table


def add_parsers(sub: Any, P: Any, env: Environment) -> None:
    wc = sub.add_parser(
        "wire-check",
        env=env,
        help="find identifiers in captures (and agent events): in clear, encoded, hashed, encrypted",
    )
    wc.add_argument("captures", nargs="+", metavar="CAPTURE", help="pcap or pcapng files")
    wc.add_argument("--testbed", metavar="FILE", help="take the identifiers from a testbed file")
    wc.add_argument("--testbed-name", metavar="NAME", help="which testbed in the file (default: the only one)")
    for kind in ("imei", "imsi", "iccid", "number", "text"):
        wc.add_argument(
            f"--{kind}",
            action="append",
            default=[],
            metavar="VALUE",
            help=f"a{'n' if kind[0] in 'aeiou' else ''} {kind} to look for (repeatable)",
        )
    wc.add_argument(
        "--agent-events",
        action="append",
        default=[],
        metavar="JSONL",
        help="events from `hostctl trace` (TLS plaintext, cipher calls); repeatable",
    )
    wc.add_argument(
        "--keylog",
        action="append",
        default=[],
        metavar="FILE",
        help="TLS secrets in the NSS key log format (SSLKEYLOGFILE, `hostctl trace`'s sslkeylog.txt) "
        "to decrypt TLS flows with; repeatable. Secrets in the captures' pcapng DSBs are used too",
    )
    wc.add_argument(
        "--write-decrypted",
        metavar="OUT.pcapng",
        help="also write the captures as one pcapng with the TLS secrets of its sessions in a "
        "decryption secrets block (Wireshark/tshark open it decrypted, no key file needed)",
    )
    wc.add_argument(
        "--engine",
        choices=["auto", "hyperscan", "python"],
        default="auto",
        help="pattern engine (default: hyperscan when installed; python gives the same results)",
    )
    wc.add_argument(
        "--hash-budget",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds to spend recovering hashed identifiers (default 5)",
    )
    wc.add_argument("--redact", action="store_true", help="replace identifier values by references")
    wc.add_argument("--json", action="store_true")


def identifiers_from_args(args: argparse.Namespace) -> list[Any]:
    from ..wire.identifiers import Identifier

    out = []
    for kind in ("imei", "imsi", "iccid", "number", "text"):
        values = getattr(args, kind)
        for i, v in enumerate(values):
            label = kind if len(values) == 1 else f"{kind}#{i + 1}"
            out.append(Identifier("msisdn" if kind == "number" else kind, v, label))
    if args.testbed:
        out.extend(identifiers_from_testbed(args.testbed, args.testbed_name))
    return out


def identifiers_from_testbed(path: str, name: str | None = None) -> list[Any]:
    """Every identifier a testbed file names (:func:`hostctl.wire.identifiers.identifiers_of`)."""
    from ..testbed import load_testbed
    from ..wire.identifiers import identifiers_of

    return identifiers_of(load_testbed(path, name=name))


def run(args: argparse.Namespace, env: Environment) -> ExitStatus:
    from ..wire.check import VERDICTS, WireCheckError, wire_check
    from ..wire.pcapread import CaptureError

    idents = identifiers_from_args(args)
    if not idents:
        raise CliError(
            "wire-check: nothing to look for: give --testbed FILE or --imei/--imsi/--iccid/--number/--text",
            ExitStatus.USAGE,
        )

    def progress(msg: str) -> None:
        if not args.json or env.stderr is not sys.stderr:
            env.stderr.write(f"wire-check: {msg}\n")

    try:
        report = wire_check(
            args.captures,
            idents,
            agent_events=args.agent_events,
            engine=args.engine,
            hash_budget=args.hash_budget,
            progress=progress,
            keylogs=args.keylog,
            write_decrypted=args.write_decrypted,
        )
    except (CaptureError, WireCheckError) as exc:
        raise CliError(f"wire-check: {exc}", ExitStatus.ERROR) from exc
    except FileNotFoundError as exc:
        raise CliError(f"wire-check: {exc.filename}: no such file", ExitStatus.ERROR) from exc
    if args.redact:
        report = redact_report(report, idents)
    if args.json:
        print_json(env, report)
    else:
        print_human(env, report)
    readable = sum(report["summary"]["identifiers"][v] for v in VERDICTS[:3])
    return ExitStatus.CHECK_FAILED if readable else ExitStatus.OK


def redact_report(report: dict, idents: list[Any]) -> dict:
    """The report with every identifier, in every form the audit's redactor knows, replaced by a
    stable reference (:class:`hostctl.evidence.Redactor`, as ``hostctl audit --redact`` does)."""
    from ..evidence import Redactor

    return Redactor([(i.kind, i.value) for i in idents]).redact_obj(report)


def print_human(env: Environment, report: dict) -> None:
    w = env.stdout.write
    for cap in report["captures"]:
        r = cap.get("reader", {})
        skipped = sum((r.get("skipped_blocks") or {}).values()) if isinstance(r.get("skipped_blocks"), dict) else 0
        w(
            f"{cap['path']}: {cap['packets']} packets, {cap.get('flows', {}).get('tcp_flows', '?')} TCP flows"
            + (f", {skipped} blocks skipped" if skipped else "")
            + "\n"
        )
    tls = report.get("tls") or {}
    if tls.get("flows"):
        w("TLS flows: " + ", ".join(f"{n} {s}" for s, n in tls["flows"].items()) + "\n")
    kl = tls.get("keylog") or {}
    if kl.get("bad_lines"):
        w(f"key log: {kl['bad_lines']} bad lines (first: {kl['bad_examples'][0]})\n")
    if report.get("written"):
        wr = report["written"]
        w(f"wrote {wr['path']}: {wr['packets']} packets, {wr['secrets']} TLS secrets in a DSB\n")
    for ag in report["agent_events"]:
        w(f"{ag['path']}: " + ", ".join(f"{n} {k}" for k, n in sorted(ag["events"].items())) + "\n")
    w("\n")
    print_table(
        env,
        ["identifier", "value", "verdict", "findings", "forms", "flows"],
        [
            [
                i["identifier"],
                i["value"],
                i["verdict"],
                i["findings"],
                ", ".join(i["forms"][:4]) + (" ..." if len(i["forms"]) > 4 else ""),
                ",".join(map(str, i["flows"][:8])),
            ]
            for i in report["identifiers"]
        ],
    )
    shown = [f for f in report["flows"] if f["findings"] or f["vendor"]]
    if shown:
        w("\n")
        print_table(
            env,
            ["flow", "server", "host", "protocol", "decrypted", "verdict", "findings"],
            [
                [
                    f["id"],
                    f["server"],
                    f["host"] or "",
                    _proto(f["protocol"]),
                    (f.get("tls_decryption") or {}).get("status", ""),
                    f["verdict"],
                    f["findings"],
                ]
                for f in shown[:50]
            ],
        )
    for h in report["hashed"]:
        if h.get("recovered"):
            w(
                f"\nhashed, not encrypted: {h['identifier']} ({h['algorithm']}) recovered as {h['recovered']} "
                f"after {h.get('searched', '?')} of {h.get('space_size', '?')} candidates in {h.get('seconds', '?')} s\n"
            )
        else:
            w(
                f"\nhashed, not encrypted: {h['identifier']} ({h['algorithm']}): "
                f"{h.get('error') or 'not recovered within the budget'}; space {h.get('space_size', '?')}\n"
            )
    for d in report["deterministic"]:
        who = d["identifier"] or "an unattributed value"
        w(
            f"\nWARNING deterministic encryption: {who} "
            f"({', '.join(d['fields']) or 'no field name'}): {d['why']} (linkable)\n"
        )
    for c in report["clear_http"]:
        if c["findings"]:
            w(f"\nclear HTTP to {c['host']} carries {', '.join(c['identifiers'])} (flow {c['flow']})\n")
    for t in report["weak_tls"]:
        w(f"\nweak TLS: {t['host']} uses {t['version']} (flow {t['flow']})\n")


def _proto(p: dict) -> str:
    if p.get("name") == "tls":
        return f"TLS {p.get('version', '').replace('TLS ', '')} {p.get('cipher', '')}".strip()
    return p.get("name", "?")
