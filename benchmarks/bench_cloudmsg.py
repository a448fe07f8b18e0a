"""Cloud Messaging service throughput (issue 4). Run: ``.venv/bin/python -m benchmarks.bench_cloudmsg [--quick]``.

The service runs alone in its own process (`python -m hostctl.emulator.cloudsvc`); this process
drives 100 TLS clients (activated and bound, real host names and certificate checks), each
sending messages to random others for the run's duration and acknowledging what it receives.

Figures, against references measured in the same run:
1. messages routed per second (receiver got it) among 100 clients          target >= 5000/s
   reference: the same clients against a plain TLS line echo server in a process of its own
   (the transport's ceiling on this machine): the ratio is the service's share of it.
2. the service's RSS sampled through the run (store TTL 5 s): the last sample against the one
   taken 40% into the run, once the TTL store is full                       target flat (<= 1.1x)
3. ``--busy``: the same run with every CPU saturated by busy-loop processes this benchmark starts
   (and ends: each stops by itself after the run's length plus a minute, and is killed at the
   end); slow clients, and clients the service drops, must not make it log a traceback or
   asyncio's "SSL connection is closed": lines of the service's stderr and of this process's
   asyncio log that are either                                              target 0
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hostctl.emulator.labca import ensure_ca

from .bench_emulator import row

CLIENTS = 100
TTL = 5.0  # the service's store TTL in this run: memory must level off once it has passed
ECHO = r"""
import asyncio, ssl, sys, json
async def main():
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH); ctx.load_cert_chain(sys.argv[1], sys.argv[2])
    async def h(r, w):
        try:
            while not w.is_closing() and (line := await r.readline()):
                w.write(line)
                if w.transport.get_write_buffer_size() > 1 << 20: await w.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            w.close()
    s = await asyncio.start_server(h, "127.0.0.1", 0, ssl=ctx)
    print(json.dumps({"port": s.sockets[0].getsockname()[1]}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
asyncio.run(main())
"""


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


async def _https(ca, port: int, path: str, body: dict) -> dict:
    r, w = await asyncio.open_connection(
        "127.0.0.1", port, ssl=ca.client_context(), server_hostname="api.account.xiaomi.com"
    )
    data = json.dumps(body).encode()
    w.write(
        f"POST {path} HTTP/1.1\r\nHost: api.account.xiaomi.com\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
        + data
    )
    reply = await r.read()
    w.close()
    return json.loads(reply.partition(b"\r\n\r\n")[2])


async def _drive(
    ca, port: int, duration: float, creds: list[dict] | None, host: str, pid: int, samples: list[int]
) -> int:
    conns = []
    for i in range(CLIENTS):
        r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ca.client_context(), server_hostname=host)
        if creds:
            w.write(json.dumps({"type": "bind", "mid": creds[i]["mid"], "st": creds[i]["st"]}).encode() + b"\n")
            await r.readline()
        conns.append((r, w))
    numbers = [c["number"] for c in creds] if creds else [f"+86138{i:08d}" for i in range(CLIENTS)]
    received = 0
    stop = time.monotonic() + duration

    async def reader(r, w):
        nonlocal received
        while line := await r.readline():
            if creds is None:
                received += 1
                continue
            if line.startswith(b'{"type":"message"'):
                received += 1
                frame = json.loads(line)
                w.write(b'{"type":"ack","id":"' + frame["id"].encode() + b'"}\n')

    async def writer(i, w):
        rnd = random.Random(i)
        n = 0
        while time.monotonic() < stop:
            for _ in range(50):
                n += 1
                to = numbers[rnd.randrange(CLIENTS)]
                w.write(
                    json.dumps({"type": "message", "id": f"{i}-{n}", "to": to, "body": "hello there"}).encode() + b"\n"
                )
            await w.drain()
            await asyncio.sleep(0)

    async def sampler():
        while time.monotonic() < stop:
            samples.append(_rss(pid))
            await asyncio.sleep(max(0.5, duration / 12))

    readers = [asyncio.create_task(reader(r, w)) for r, w in conns]
    t0 = time.monotonic()
    await asyncio.gather(*(writer(i, w) for i, (_, w) in enumerate(conns)), sampler())
    await asyncio.sleep(0.5)
    elapsed = time.monotonic() - t0
    for t in readers:
        t.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    for _, w in conns:
        w.close()
    await asyncio.gather(*(w.wait_closed() for _, w in conns), return_exceptions=True)
    return int(received / elapsed)


BUSY = "import time\nend = time.monotonic() + float(__import__('sys').argv[1])\nwhile time.monotonic() < end: pass\n"
_NOISE = (
    "Traceback",
    "Exception in callback",
    "SSL connection is closed",
    "Task exception was never retrieved",
    "Error on reading",
    "Fatal error",
)


class _Count(logging.Handler):
    """Counts this process's asyncio log records that are tracebacks or connection-lost noise."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--busy", action="store_true", help="saturate every CPU with busy loops during the run")
    args = ap.parse_args(argv)
    duration = 10.0 if args.quick else 60.0
    counter = _Count()
    logging.getLogger("asyncio").addHandler(counter)
    busy: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory() as d:
        ca = ensure_ca(Path(d) / "ca")
        echo = subprocess.Popen(
            [sys.executable, "-c", ECHO, str(ca.server_cert), str(ca.server_key)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        svc_log = open(Path(d) / "service.log", "w+")  # noqa: SIM115 - the service's stderr; read, then closed below
        svc = subprocess.Popen(
            [sys.executable, "-m", "hostctl.emulator.cloudsvc", str(Path(d) / "ca"), str(TTL)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=svc_log,
            text=True,
        )
        try:
            echo_port = json.loads(echo.stdout.readline())["port"]
            ports = json.loads(svc.stdout.readline())["ports"]

            async def run():
                creds = []
                for i in range(CLIENTS):
                    number = f"+86138{i:08d}"
                    tok = await _https(ca, ports["account"], "/pass/activate/token", {"number": number})
                    creds.append({"number": number, "token": tok["token"]})
                return creds

            creds = asyncio.run(run())
            print(f"Cloud Messaging throughput, {CLIENTS} TLS clients, {duration:g} s per run\n")
            ref_samples: list[int] = []
            ref = asyncio.run(
                _drive(ca, echo_port, min(duration, 10.0), None, "app.chat.xiaomi.net", echo.pid, ref_samples)
            )
            samples: list[int] = []
            activated = _activate_all(svc, ports, ca, creds)
            if args.busy:  # bounded twice: each ends by itself, and is killed in `finally`
                busy = [
                    subprocess.Popen([sys.executable, "-c", BUSY, str(duration + 60)])
                    for _ in range(os.cpu_count() or 2)
                ]
                print(f"CPU saturated by {len(busy)} busy-loop processes during the run\n")
            rate = asyncio.run(_drive(ca, ports["chat"], duration, activated, "app.chat.xiaomi.net", svc.pid, samples))
            row(
                "messages routed per second",
                f"{rate}/s",
                f"{ref}/s echo",
                rate / max(ref, 1),
                ">= 5000/s",
                rate >= 5000,
            )
            # after the first TTL the store holds at most rate x TTL entries: from then on, flat
            settled = samples[len(samples) * 2 // 5]
            growth = samples[-1] / settled
            row(
                "service RSS: end / after 2 TTLs",
                f"{samples[-1] / 2**20:.1f} MB",
                f"{settled / 2**20:.1f} MB",
                growth,
                "<= 1.1x",
                growth <= 1.1,
            )
        finally:
            for p in busy:
                p.kill()
                p.wait()
            for p in (echo, svc):
                p.stdin.close()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        svc_log.seek(0)
        logged = [line.rstrip() for line in svc_log if any(n in line for n in _NOISE)]
        svc_log.close()
        mine = [line for line in counter.lines if any(n in line for n in _NOISE)]
        row(
            "tracebacks / lost-conn. warnings",
            f"{len(logged)} + {len(mine)}",
            "0",
            0.0,
            "0 (svc + driver)",
            not logged and not mine,
        )
        for line in logged[:5] + mine[:5]:
            print("   ", line[:200])
    return 0


def _activate_all(svc: subprocess.Popen, ports: dict, ca, creds: list[dict]) -> list[dict]:
    """Each number's activation SMS to the gateway, then its credentials from the status poll."""
    for c in creds:
        svc.stdin.write(f"{c['number']} {c['token']}\n")
        svc.stdin.flush()
        if json.loads(svc.stdout.readline()) is not True:
            raise RuntimeError(f"activation of {c['number']} failed")

    async def fetch():
        return [
            {**c, **await _https(ca, ports["account"], "/pass/activate/status", {"number": c["number"]})} for c in creds
        ]

    return asyncio.run(fetch())


if __name__ == "__main__":
    sys.exit(main())
