"""Benchmark for the identifier scan (issue 5). Run: ``make bench`` or
``.venv/bin/python -m benchmarks.bench_scan [--quick]``.

10 identifiers (two handsets' IMEIs, IMSIs and numbers, an ICCID, two contacts' numbers and a
message text) in all their forms (``hostctl.wire.identifiers.patterns_for``: some 3,000
patterns, >= 128 required) are looked for in a 200 MB file (``--quick``: 50 MB) of random bytes
with planted forms (200 MiB; 1,600 planted), written to a temporary directory and removed afterwards. Compared in the same
run with the reference ``LC_ALL=C grep -a -c -F -f PATTERNS FILE > OUT`` (output to a file, so grep
does not stop at the first match; patterns with a newline byte cannot be written to grep's
pattern file and are left out of its run only). Both read the same file, warm in the page cache.

Timed for us: reading the file in 1 MiB pieces through a ScanStream (hyperscan engine), the
overlap rule included; the pattern compilation is printed separately. The findings must equal
the planted forms, or the run fails. Target: throughput >= 5x grep's.
Also printed, not targeted: the pure-Python fallback engine on the first 32 MB.

Issue 15.6, many identifiers (``--many``, or ``--many-only``): 1,000 identifiers (100 handsets:
two numbers, IMEIs, IMSIs, ICCIDs and contacts each; some 430,000 patterns). Start-up of a
``WireCheck`` in a fresh process, first with an empty cache (patterns generated, hyperscan
compiled, both stored: ``hostctl.wire.cache``) and then from the cache; target <= 3 s (cached).
Then the scan of the same data with 10 and with 1,000 identifiers, target within 1.2x: the raw
hyperscan stream over the random file, and the whole wire-check of a 100 MB capture.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time

from hostctl.model.identity import luhn_digit
from hostctl.wire.identifiers import Identifier, Pattern, patterns_for
from hostctl.wire.scan import Scanner

from .bench_emulator import row

TARGET = 5.0
CHUNK = 1 << 20
PLANTS_PER_MB = 8


def identifiers() -> list[Identifier]:
    def imei(serial: str) -> str:
        return serial + luhn_digit(serial)

    return [
        Identifier("msisdn", "+8613800138417", "hs1 sim0 msisdn"),
        Identifier("msisdn", "+8613800139520", "hs2 sim0 msisdn"),
        Identifier("imei", imei("86480402114233"), "hs1 imei0"),
        Identifier("imei", imei("86480402775019"), "hs2 imei0"),
        Identifier("imsi", "460001357924680", "hs1 sim0 imsi"),
        Identifier("imsi", "460002468013579", "hs2 sim0 imsi"),
        Identifier("iccid", imei("898600123456789012"), "hs1 sim0 iccid"),
        Identifier("number", "+447700900123", "contact uk"),
        Identifier("number", "+12025550143", "contact us"),
        Identifier("text", "See you at the station at 8, 你好", "message"),
    ]


def write_file(path: str, size: int, patterns: list[Pattern], seed: int) -> int:
    """Random bytes with PLANTS_PER_MB planted forms per MiB, one per slot of the MiB (so they
    never overlap), each between '|' bytes (so random neighbours cannot complete a longer form
    around it); returns how many were planted."""
    rng = random.Random(seed)
    slot = CHUNK // PLANTS_PER_MB
    planted = 0
    with open(path, "wb") as f:
        for _ in range(size // CHUNK):
            block = bytearray(os.urandom(CHUNK))
            for k in range(PLANTS_PER_MB):
                data = b"|" + rng.choice(patterns).data + b"|"
                at = k * slot + rng.randrange(0, slot - len(data))
                block[at : at + len(data)] = data
                planted += 1
            f.write(block)
    return planted


def scan_file(scanner: Scanner, path: str, limit: int | None = None) -> tuple[float, int, int]:
    found = done = 0
    t0 = time.perf_counter()
    with open(path, "rb", buffering=0) as f, scanner.stream() as s:
        while piece := f.read(CHUNK):
            found += len(s.feed(piece))
            done += len(piece)
            if limit is not None and done >= limit:
                break
        found += len(s.close())
    return time.perf_counter() - t0, found, done


def grep(patterns_file: str, path: str, out: str) -> float:
    env = dict(os.environ, LC_ALL="C")
    t0 = time.perf_counter()
    with open(out, "wb") as sink:
        subprocess.run(
            ["grep", "-a", "-c", "-F", "-f", patterns_file, path],
            stdout=sink,
            stderr=subprocess.PIPE,
            env=env,
            timeout=1800,
            check=False,
        )
    return time.perf_counter() - t0


def many_identifiers(n_handsets: int = 100) -> list[Identifier]:
    out = []
    for h in range(n_handsets):
        out += [Identifier("msisdn", f"+86138{h:04d}{s}417", f"hs{h} number{s}") for s in range(2)]
        out += [
            Identifier("imei", f"864804021{h:03d}{s}3" + luhn_digit(f"864804021{h:03d}{s}3"), f"hs{h} imei{s}")
            for s in range(2)
        ]
        out += [Identifier("imsi", f"4600013{h:03d}{s}4680", f"hs{h} imsi{s}") for s in range(2)]
        out += [
            Identifier(
                "iccid", f"8986001234{h:03d}{s}7890" + luhn_digit(f"8986001234{h:03d}{s}7890"), f"hs{h} iccid{s}"
            )
            for s in range(2)
        ]
        out += [Identifier("number", f"+4477009{h:03d}{s}3", f"contact {h}.{s}") for s in range(2)]
    return out


_STARTUP = (
    "import json, sys, time; t = time.perf_counter(); "
    "from benchmarks.bench_scan import many_identifiers; from hostctl.wire.check import WireCheck; "
    "w = WireCheck(many_identifiers(), hash_budget=0, cache=True); "
    "print(json.dumps([time.perf_counter() - t, w.startup, len(w.patterns)]))"
)


def _startup(cache: str) -> tuple[float, str, int]:
    import json

    env = dict(os.environ, HOSTCTL_CACHE=cache)
    out = subprocess.run(
        [sys.executable, "-c", _STARTUP],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
        check=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    t, how, n = json.loads(out.stdout.strip().splitlines()[-1])
    return t, how, n


def many(data_path: str, tmp: str) -> bool:
    from hostctl.wire.check import WireCheck

    from .bench_wire import generate

    cache = os.path.join(tmp, "cache")
    built = _startup(cache)
    cached = min(_startup(cache) for _ in range(2))
    ok_start = cached[0] <= 3.0 and cached[1] == "cached"
    row(
        "start-up, 1,000 identifiers (cached)",
        f"{cached[0]:8.2f} s",
        f"{built[0]:8.1f} s built",
        built[0] / cached[0],
        "<= 3 s",
        ok_start,
    )
    print(f"  ({cached[2]} patterns; built: {built[1]}; cached: {cached[1]})", flush=True)
    os.environ["HOSTCTL_CACHE"] = cache
    few = WireCheck(identifiers(), hash_budget=0, cache=False)
    lots = WireCheck(many_identifiers(), hash_budget=0, cache=True)
    t_few = min(scan_file(few.scanner, data_path)[0] for _ in range(2))
    t_lots = min(scan_file(lots.scanner, data_path)[0] for _ in range(2))
    print(
        f"  raw hyperscan stream over the same file: 10 identifiers {t_few:.2f} s, 1,000 {t_lots:.2f} s "
        f"({t_lots / t_few:.2f}x; not the target, the whole wire-check below is)",
        flush=True,
    )
    del few, lots  # 430,000 patterns are some 400 MB: one analyser alive at a time
    import gc

    gc.collect()
    cap = os.path.join(tmp, "many.pcapng")
    from pathlib import Path

    generate(Path(cap), 100_000_000, chunk=14600, ng=True)

    def whole(w_idents, cache_on):
        best = 1e9
        for _ in range(3):
            w = WireCheck(w_idents, hash_budget=0, cache=cache_on)
            t0 = time.perf_counter()
            w.add_capture(cap)
            w.report()
            best = min(best, time.perf_counter() - t0)
            del w
            gc.collect()
        return best

    w_few, w_lots = whole(identifiers(), False), whole(many_identifiers(), True)
    ok_scan = w_lots <= 1.2 * w_few
    row(
        "wire-check 100 MB, 1,000 vs 10 identifiers",
        f"{w_lots:8.2f} s",
        f"{w_few:8.2f} s",
        w_few / w_lots,
        "within 1.2x",
        ok_scan,
    )
    return ok_start and ok_scan


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--many", action="store_true", help="also 1,000 identifiers (start-up, scan)")
    ap.add_argument("--many-only", action="store_true", help="only the 1,000-identifier part")
    args = ap.parse_args(argv)
    if args.many_only:
        with tempfile.TemporaryDirectory(prefix="bench-scan-") as tmp:
            data = os.path.join(tmp, "data.bin")
            write_file(data, (50 if args.quick else 200) * CHUNK, patterns_for(identifiers()), seed=5)
            return 0 if many(data, tmp) else 1
    size = (50 if args.quick else 200) * CHUNK
    patterns = patterns_for(identifiers())
    if len(patterns) < 128:
        print(f"identifier scan: only {len(patterns)} patterns (>= 128 needed)")
        return 1
    with tempfile.TemporaryDirectory(prefix="bench-scan-") as tmp:
        data = os.path.join(tmp, "data.bin")
        pats = os.path.join(tmp, "patterns.txt")
        t0 = time.perf_counter()
        planted = write_file(data, size, patterns, seed=5)
        t_gen = time.perf_counter() - t0
        grep_pats = [p.data for p in patterns if b"\n" not in p.data]
        with open(pats, "wb") as f:
            f.write(b"".join(d + b"\n" for d in grep_pats))
        with open(data, "rb") as f:  # both runs read a warm page cache
            while f.read(8 * CHUNK):
                pass
        t0 = time.perf_counter()
        scanner = Scanner(patterns, engine="hyperscan")
        t_compile = time.perf_counter() - t0
        t_ref = grep(pats, data, os.path.join(tmp, "grep.out"))
        t_ours, found, _ = scan_file(scanner, data)
        py_time, _, py_bytes = scan_file(Scanner(patterns, engine="python"), data, limit=32 * CHUNK)
        many_ok = many(data, tmp) if args.many else True
    mb = size / CHUNK
    ratio = t_ref / t_ours
    ok = ratio >= TARGET and found == planted
    print(
        f"identifier scan: {len(identifiers())} identifiers, {len(patterns)} patterns "
        f"({len(grep_pats)} in grep's file), {mb:.0f} MiB generated in {t_gen:.1f} s, "
        f"hyperscan compile {t_compile * 1000:.0f} ms",
        flush=True,
    )
    row(
        f"scan {mb:.0f} MiB (hyperscan stream)",
        f"{mb / t_ours:8.0f} MiB/s",
        f"{mb / t_ref:8.0f} MiB/s",
        ratio,
        f">= {TARGET:g}x",
        ok,
    )
    print(
        f"  (ref: LC_ALL=C grep -a -c -F -f; findings {found}, planted {planted}"
        f"{'' if found == planted else ' - MISMATCH'}; python engine "
        f"{py_bytes / CHUNK / py_time:.0f} MiB/s on the first {py_bytes / CHUNK:.0f} MiB, not "
        "targeted)",
        flush=True,
    )
    return 0 if ok and many_ok else 1


if __name__ == "__main__":
    sys.exit(main())
