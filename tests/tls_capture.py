"""Real TLS sessions on loopback, captured with tcpdump, with the client's key log: the fixtures of
the TLS decryption tests (tests/test_tls_*.py) and benchmarks/bench_tls.py.

Every session runs on a random free port on 127.0.0.1; tcpdump captures ``lo`` with a filter on
that port only, so parallel tests never see each other's packets. Every process has a timeout and
is ended by its pid.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

TIMEOUT = 30


def have_tools() -> bool:
    return all(shutil.which(t) for t in ("tcpdump", "tshark", "openssl")) and os.geteuid() == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_cert(d: Path) -> tuple[Path, Path]:
    cert, key = d / "cert.pem", d / "key.pem"
    if not cert.exists():
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                str(key),
                "-out",
                str(cert),
                "-days",
                "2",
                "-subj",
                "/CN=localhost",
            ],
            check=True,
            capture_output=True,
            timeout=TIMEOUT,
        )
    return cert, key


@contextmanager
def tcpdump(path: Path, port: int, *, snaplen: int = 0):
    """Captures ``tcp port PORT`` on lo into ``path`` while the block runs.

    The port filter is applied offline (``tcpdump -r RAW -w PATH FILTER``): on this lab's kernel a
    filter attached to the live socket that looks at IP fields matches nothing ("N packets received
    by filter, 0 captured"), while plain ``tcp`` works, so the live capture takes ``tcp`` only."""
    raw = path.with_name(path.name + ".raw")
    proc = subprocess.Popen(
        [
            "tcpdump",
            "-i",
            "lo",
            "--immediate-mode",
            "-B",
            "65536",
            "-U",
            "-s",
            str(snaplen),
            "-w",
            str(raw),
            "-n",
            "tcp",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + TIMEOUT
        line = b""
        while b"listening on" not in line:  # tcpdump says so once the filter is installed
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"tcpdump did not start: {line!r}")
            line = proc.stderr.readline()
        # "listening on" comes before packets are really seen: knock until the capture grows
        with socket.create_server(("127.0.0.1", 0)) as knock:
            while not raw.exists() or raw.stat().st_size <= 24:
                if time.monotonic() > deadline:
                    raise RuntimeError("tcpdump captures nothing")
                socket.create_connection(knock.getsockname(), timeout=1).close()
                time.sleep(0.05)
        yield path
    finally:
        # the last segments reach the capture: knock once more and wait for the file to grow
        size = raw.stat().st_size if raw.exists() else 0
        with socket.create_server(("127.0.0.1", 0)) as knock:
            socket.create_connection(knock.getsockname(), timeout=1).close()
            end = time.monotonic() + 5
            while time.monotonic() < end and raw.exists() and raw.stat().st_size == size:
                time.sleep(0.05)
        time.sleep(0.2)
        proc.terminate()
        try:
            proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(TIMEOUT)
        stats = proc.stderr.read().decode("ascii", "replace") if proc.stderr else ""
        subprocess.run(
            ["tcpdump", "-r", str(raw), "-w", str(path), "-n", f"tcp port {port}"], capture_output=True, timeout=TIMEOUT
        )
        m = re.search(r"(\d+) packets? dropped by kernel", stats)
        if m and int(m.group(1)):
            # loopback traffic of the whole machine goes through the capture: under load the
            # kernel may drop some; the session is then made again (see _retry)
            path.with_name(path.name + ".dropped").write_text(stats)
        if os.environ.get("TLS_CAPTURE_KEEP_RAW") is None:
            raw.unlink(missing_ok=True)


def _retry(fn):
    """Runs a capturing session again (3 times at most) when tcpdump reports kernel drops."""

    @functools.wraps(fn)
    def run(d: Path, **kw):
        for attempt in range(3):
            r = fn(d, **kw)
            marker = r["pcap"].with_name(r["pcap"].name + ".dropped")
            if not marker.exists() or attempt == 2:
                return r
            marker.unlink()
            r["keylog"].unlink(missing_ok=True)
        return r

    return run


@_retry
def openssl_session(
    d: Path, *, version: str, cipher: str, request: bytes, extra_client: tuple[str, ...] = (), name: str = "s"
) -> dict:
    """``openssl s_client`` against ``openssl s_server -www`` (which answers a GET with a status
    page and closes); the client writes the key log. Returns paths and the bytes sent."""
    cert, key = make_cert(d)
    port = free_port()
    pcap, keylog = d / f"{name}.pcap", d / f"{name}.keylog"
    vflag = "-tls1_3" if version == "1.3" else "-tls1_2"
    cflag = "-ciphersuites" if version == "1.3" else "-cipher"
    server = subprocess.Popen(
        [
            "openssl",
            "s_server",
            "-accept",
            str(port),
            "-cert",
            str(cert),
            "-key",
            str(key),
            "-www",
            "-naccept",
            "1",
            vflag,
            cflag,
            cipher,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_accept(server)
        with tcpdump(pcap, port):
            client = subprocess.run(
                [
                    "openssl",
                    "s_client",
                    "-connect",
                    f"127.0.0.1:{port}",
                    "-keylogfile",
                    str(keylog),
                    "-quiet",
                    "-ign_eof",
                    vflag,
                    cflag,
                    cipher,
                    *extra_client,
                ],
                input=request,
                capture_output=True,
                timeout=TIMEOUT,
            )
        server.wait(TIMEOUT)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(TIMEOUT)
    return {"pcap": pcap, "keylog": keylog, "port": port, "sent": request, "received": client.stdout}


@_retry
def python_session(
    d: Path,
    *,
    version: str,
    request: bytes,
    response: bytes,
    name: str = "py",
    cipher: str | None = None,
    chunks: int = 1,
    between: Callable[[ssl.SSLSocket], None] | None = None,
) -> dict:
    """A Python ``ssl`` client and server (the server answers ``response`` after reading
    ``request``); the client writes the key log (``keylog_filename``)."""
    cert, key = make_cert(d)
    port = free_port()
    pcap, keylog = d / f"{name}.pcap", d / f"{name}.keylog"
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(cert, key)
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cctx.check_hostname = False
    cctx.verify_mode = ssl.CERT_NONE
    cctx.keylog_filename = str(keylog)
    tls = ssl.TLSVersion.TLSv1_3 if version == "1.3" else ssl.TLSVersion.TLSv1_2
    for c in (sctx, cctx):
        c.minimum_version = c.maximum_version = tls
        if cipher and version == "1.2":
            c.set_ciphers(cipher)
    lsock = socket.create_server(("127.0.0.1", port))
    lsock.settimeout(TIMEOUT)
    got = bytearray()

    def serve() -> None:
        conn, _ = lsock.accept()
        with sctx.wrap_socket(conn, server_side=True) as s:
            s.settimeout(TIMEOUT)
            while len(got) < len(request):
                b = s.recv(65536)
                if not b:
                    break
                got.extend(b)
            s.sendall(response)
            try:
                s.unwrap()
            except (OSError, ssl.SSLError):
                pass

    with tcpdump(pcap, port):
        t = threading.Thread(target=serve, daemon=True)
        t.start()
        received = bytearray()
        with (
            socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw,
            cctx.wrap_socket(raw, server_hostname="localhost") as s,
        ):
            step = max(1, len(request) // chunks)
            for i in range(0, len(request), step):
                s.sendall(request[i : i + step])
                if between is not None:
                    between(s)
            while len(received) < len(response):
                b = s.recv(65536)
                if not b:
                    break
                received.extend(b)
            try:
                s.unwrap()
            except (OSError, ssl.SSLError):
                pass
        t.join(TIMEOUT)
    lsock.close()
    return {
        "pcap": pcap,
        "keylog": keylog,
        "port": port,
        "sent": request,
        "received": bytes(received),
        "server_got": bytes(got),
    }


def _wait_accept(server: subprocess.Popen) -> None:
    """s_server prints ACCEPT once it listens (a probe connection would use up -naccept 1)."""
    assert server.stdout is not None
    out = b""
    deadline = time.monotonic() + TIMEOUT
    while b"ACCEPT" not in out:
        line = server.stdout.readline()
        if not line or time.monotonic() > deadline:
            raise RuntimeError(f"openssl s_server did not start: {out!r}")
        out += line


def tshark_follow(pcap: Path, keylog: Path | None, stream: int = 0) -> dict[str, bytes]:
    """The decrypted bytes of TCP stream ``stream`` per direction, as tshark shows them
    (``-z follow,tls,raw``: hex lines, the server's indented by a tab)."""
    cmd = ["tshark", "-n", "-r", str(pcap), "-q", "-z", f"follow,tls,raw,{stream}"]
    if keylog is not None:
        cmd[1:1] = ["-o", f"tls.keylog_file:{keylog}"]
    out = subprocess.run(cmd, capture_output=True, timeout=120, check=True).stdout.decode()
    body = out.split("=" * 10, 2)[-1] if out.count("=" * 10) >= 2 else out
    c2s, s2c = bytearray(), bytearray()
    started = False
    client_indented = None
    for line in body.splitlines():
        if line.startswith("Node 1:"):
            started = True
            continue
        if not started or not line.strip() or line.startswith("="):
            continue
        indented = line.startswith("\t")
        if client_indented is None:
            # tshark 4.0 indents one node's lines, and which node is which depends on how it saw the
            # stream start; in these sessions the client speaks first
            client_indented = indented
        try:
            (c2s if indented == client_indented else s2c).extend(bytes.fromhex(line.strip()))
        except ValueError:
            continue
    return {"c2s": bytes(c2s), "s2c": bytes(s2c)}
