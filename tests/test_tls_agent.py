"""The agent's TLS key-log hooks in a real CPython process (its ``ssl`` module over the system's
OpenSSL 3), attached with Frida locally:

- every TLS 1.2 and 1.3 secret comes out as one ``tls-secret`` event (the NSS key log labels
  OpenSSL's ssl_log_secret writes), for an SSLContext made before the trace began too;
- the application's own key-log callback keeps working: CPython's ``keylog_filename`` file gets
  the same lines with the trace running (our callback calls the app's);
- after ``stopTrace`` and unloading, the process handshakes again without the agent (its callback
  was taken off every SSL_CTX) and CPython's key log still gets its lines.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from tls_capture import make_cert

frida = pytest.importorskip("frida")

CHILD = textwrap.dedent("""
    import socket, ssl, sys, threading
    cert, key, keylog = sys.argv[1:4]
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(cert, key)
    early = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)       # made before the trace starts
    ls = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            c, _ = ls.accept()
            with sctx.wrap_socket(c, server_side=True) as s:
                s.sendall(s.recv(100)[::-1])
    threading.Thread(target=serve, daemon=True).start()

    def session(ctx, text):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with ctx.wrap_socket(socket.create_connection(ls.getsockname(), timeout=10), server_hostname="lab.test") as s:
            s.sendall(text)
            return s.recv(100)
    print("ready", flush=True)
    for line in sys.stdin:
        if line.startswith("go"):
            early.maximum_version = ssl.TLSVersion.TLSv1_2
            a = session(early, b"twelve")
            late = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            late.keylog_filename = keylog
            b = session(late, b"thirteen")
            print(a, b, flush=True)
        elif line.startswith("again"):
            late = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            late.keylog_filename = keylog
            print(session(late, b"after"), flush=True)
        else:
            break
""")


def test_keylog_callback_events_chain_to_pythons_own_and_are_removed_at_stop(tmp_path):
    from hostctl import agent

    try:
        code = agent.source()
    except agent.AgentBundleError as exc:
        pytest.skip(f"agent not built: {exc}")
    cert, key = make_cert(tmp_path)
    keylog = tmp_path / "python.keylog"
    child = tmp_path / "child.py"
    child.write_text(CHILD)
    proc = subprocess.Popen(
        [sys.executable, str(child), str(cert), str(key), str(keylog)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    session = None
    try:
        assert proc.stdout.readline() == "ready\n"
        session = frida.get_local_device().attach(proc.pid)
        script = session.create_script(code)
        messages: list[dict] = []
        script.on("message", lambda m, d: messages.append(m))
        script.load()
        started = script.exports_sync.start_trace({"java": False, "sockets": False})
        assert "native:libssl.so.3!SSL_CTX_set_keylog_callback" in started["hooked"]
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "b'evlewt' b'neetriht'"
        script.exports_sync.stop_trace()
        script.unload()
        session.detach()
        session = None
        python_lines = [x for x in keylog.read_text().splitlines() if not x.startswith("#")]
        proc.stdin.write("again\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "b'retfa'"
        # (not asserted: the exit status. CPython 3.11 sometimes segfaults in its final garbage
        # collection after a Frida agent was unloaded from it, with or without these hooks; seen
        # 1 run in 8 with keylog=false: a Frida/CPython matter, not the key-log callback's)
    finally:
        if session is not None:
            session.detach()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert not [m for m in messages if m["type"] == "error"]
    secrets = [m["payload"] for m in messages if m["type"] == "send" and m["payload"]["kind"] == "tls-secret"]
    lines = {f"{s['label']} {s['client_random']} {s['secret']}" for s in secrets}
    labels = {s["label"] for s in secrets}
    # TLS 1.2 (the context made before the trace) and TLS 1.3; client and server both log
    assert labels == {
        "CLIENT_RANDOM",
        "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
        "SERVER_HANDSHAKE_TRAFFIC_SECRET",
        "CLIENT_TRAFFIC_SECRET_0",
        "SERVER_TRAFFIC_SECRET_0",
        "EXPORTER_SECRET",
    }
    assert all(s["module"] == "libssl.so.3" and s["sni"] == "lab.test" for s in secrets)
    # CPython's own key log got the TLS 1.3 session's five lines while our callback was in place
    assert len(python_lines) == 5 and set(python_lines) <= lines
    # and after the stop, the next session's five more, with the agent gone
    assert len([x for x in keylog.read_text().splitlines() if not x.startswith("#")]) == 10
