"""The handset's sandbox: its spec renders to the bubblewrap command line a reviewer reads, and
each thing that must stay out stays out (every escape test fails if the sandbox leaks).

Runs real mksh + toybox in bubblewrap (Debian packages, `make debian-clients`); as root, as CI does.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest
from test_shell_kit import MemoryIO, make_handset, run

from hostctl.emulator.shell import AndroidShell
from hostctl.emulator.userland import rootfs
from hostctl.emulator.userland.rpc import Frame, FrameDecoder, encode, parse_request
from hostctl.emulator.userland.runtime import shell_env, userland_of
from hostctl.emulator.userland.sandbox import Limits, Mount, Op, SandboxSpec, render

needs_sandbox = pytest.mark.skipif(
    shutil.which("bwrap") is None or shutil.which("mksh") is None,
    reason="bubblewrap and mksh are not installed (make debian-clients)",
)


# --- the spec, as a transcript ---------------------------------------------------------------------


def test_spec_renders_to_this_command_line() -> None:
    spec = SandboxSpec(
        hostname="localhost",
        mounts=(
            Mount(Op.RO_BIND, "/", "/r"),
            Mount(Op.BIND, "/data", "/r/data"),
            Mount(Op.DEV, "/dev"),
            Mount(Op.PROC, "/proc"),
            Mount(Op.RO_BIND, "/proc/cpuinfo", "/g/cpuinfo"),
        ),
        launcher="/sbin/adbd",
        groups=(2000, 1004),
        limits=Limits(10, 20, 30),
        boottime_offset=-100,
        keep_caps=("CAP_SETUID",),
    )
    assert render(spec) == [
        "unshare",
        "--time",
        "--fork",
        "--kill-child",
        "--boottime=-100",
        "--monotonic=-100",
        "--",
        "bwrap",
        "--die-with-parent",
        "--new-session",
        "--as-pid-1",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--hostname",
        "localhost",
        "--clearenv",
        "--cap-drop",
        "ALL",
        "--cap-add",
        "CAP_SETUID",
        "--ro-bind",
        "/r",
        "/",
        "--bind",
        "/r/data",
        "/data",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--ro-bind",
        "/g/cpuinfo",
        "/proc/cpuinfo",
        "--",
        "/sbin/adbd",
        "10",
        "20",
        "30",
        "2000,1004",
    ]


def test_spec_without_root_uses_a_user_namespace_and_no_time_namespace() -> None:
    spec = SandboxSpec(hostname="h", mounts=(), launcher="/l", groups=(), user_namespace=True)
    argv = render(spec)
    assert argv[0] == "bwrap" and "--cap-add" not in argv
    assert argv[argv.index("--unshare-user") : argv.index("--unshare-user") + 7] == [
        "--unshare-user",
        "--uid",
        "2000",
        "--gid",
        "2000",
        "--cap-drop",
        "ALL",
    ]


def test_framework_frames_round_trip() -> None:
    d = FrameDecoder()
    wire = encode(Frame.REQUEST, b"/\x0042\x00getprop\x00ro.x\x00") + encode(Frame.STDIN, b"ab")
    frames = d.feed(wire[:7]) + d.feed(wire[7:])
    assert [k for k, _ in frames] == [Frame.REQUEST, Frame.STDIN]
    req = parse_request(frames[0][1])
    assert (req.cwd, req.pid, req.argv) == ("/", 42, ["getprop", "ro.x"])


def test_environment_per_release(tmp_path: Path) -> None:
    kk = make_handset(tmp_path / "a")
    r = make_handset(tmp_path / "b", profile="miui-12-android-11")
    try:
        assert shell_env(kk)["PATH"] == "/sbin:/vendor/bin:/system/sbin:/system/bin:/system/xbin"
        assert shell_env(kk)["EXTERNAL_STORAGE"] == "/storage/emulated/legacy" and "HOSTNAME" not in shell_env(kk)
        env11 = shell_env(r)
        assert env11["EXTERNAL_STORAGE"] == "/sdcard" and env11["HOSTNAME"] == "joyeuse"
        assert env11["PATH"].startswith("/product/bin:/apex/com.android.runtime/bin:")
    finally:
        kk.close()
        r.close()


# --- what the shell sees ---------------------------------------------------------------------------


@pytest.fixture
def h(tmp_path: Path):
    handset = make_handset(tmp_path / "one", profile="miui-12-android-11")
    yield handset
    userland_of(handset).close()
    handset.close()


@needs_sandbox
def test_android_layout_and_identity(h) -> None:
    r = run(
        h,
        "id -u; id -un; ls -ld /data | cut -d' ' -f1,3; ls /data; echo rc=$?; "
        "touch /data/local/tmp/t /sdcard/t && echo writable; touch /system/t; "
        "readlink /etc; uname -m; grep -c ^processor /proc/cpuinfo; cat /proc/version | cut -d' ' -f1-3",
    )
    assert r.out == (
        "2000\nshell\ndrwxrwx--x system\nrc=1\nwritable\n/system/etc\naarch64\n8\nLinux version 4.14.186-perf+\n"
    ), r.err
    assert "ls: /data: Permission denied" in r.err and "Read-only file system" in r.err


@needs_sandbox
def test_uptime_counts_from_the_handsets_boot(h) -> None:
    up = float(run(h, "cut -d' ' -f1 /proc/uptime").out)
    host_up = float(Path("/proc/uptime").read_text().split()[0])
    assert up < host_up and up < 60 if os.geteuid() == 0 else up > 0


@needs_sandbox
def test_no_capabilities_and_own_pid_namespace(h) -> None:
    r = run(h, "grep -E '^Cap(Eff|Prm|Bnd)' /proc/self/status; ls /proc | grep -c '^[0-9]'")
    lines = r.out.splitlines()
    assert lines[:3] == ["CapPrm:\t0000000000000000", "CapEff:\t0000000000000000", "CapBnd:\t0000000000000000"], r.out
    assert int(lines[3]) < 10  # the launcher, the shell and its children: not the host's


# --- escapes: each fails if the sandbox leaks --------------------------------------------------------


@needs_sandbox
def test_host_files_are_not_visible(h, tmp_path: Path) -> None:
    secret = tmp_path / "lab-token.json"
    secret.write_text("TOKEN-5f3a")
    r = run(
        h,
        f"cat /etc/hostname; cat {secret}; cat /proc/1/environ; "
        "for d in /*; do case $d in /proc|/dev) continue;; esac; grep -rl TOKEN-5f3a $d; done 2>/dev/null; "
        "ls /home /root /usr /tmp 2>&1",
    )
    assert "TOKEN-5f3a" not in r.out
    assert Path("/etc/hostname").exists() is False or Path("/etc/hostname").read_text().strip() not in r.out.split()
    assert "No such file" in r.err
    # pid 1 is the launcher, with an empty environment (bwrap --clearenv): not the host's init
    os.environ["HOSTCTL_TEST_MARKER"] = "MARK-77"
    r = run(h, "cat /proc/1/environ /proc/*/environ 2>/dev/null | tr '\\0' '\\n' | grep -c MARK-77")
    assert r.out == "0\n"


@needs_sandbox
def test_another_handsets_files_are_not_visible(h, tmp_path: Path) -> None:
    other = make_handset(tmp_path / "two", profile="miui-12-android-11")
    try:
        other.fs.host_path("/sdcard/other-secret").write_text("OTHER-91")
        run(other, "true")  # the other handset's sandbox runs too
        r = run(
            h,
            "cat /sdcard/other-secret; for d in /*; do case $d in /proc|/dev) continue;; esac; grep -rl OTHER-91 $d; done "
            "2>/dev/null; echo done",
        )
        assert "OTHER-91" not in r.out and r.out.endswith("done\n")
        assert str(other.fs.root) not in r.out
    finally:
        userland_of(other).close()
        other.close()


@needs_sandbox
def test_writes_stay_inside_the_handset_root(h, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    run(h, "true")  # the sandbox is up (its mount points made)
    before = sorted(
        p.relative_to(h.fs.root) for p in h.fs.root.rglob("*") if "sdcard" not in p.parts and "data" not in p.parts
    )
    run(
        h,
        f"touch {outside}/x /x /system/x /lib/x /sbin/x /dev/socket/x /proc/x; "
        f"echo owned > {outside}/y; mkdir -p {outside}/z; cd /; ln -s / /data/local/tmp/l",
    )
    assert list(outside.iterdir()) == []
    after = sorted(
        p.relative_to(h.fs.root) for p in h.fs.root.rglob("*") if "sdcard" not in p.parts and "data" not in p.parts
    )
    assert after == before


@needs_sandbox
def test_no_connection_to_a_host_loopback_listener(h) -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(0.5)
    port = srv.getsockname()[1]
    try:
        r = run(h, f"echo hi | nc -w 1 127.0.0.1 {port}; echo rc=$?; ifconfig -a 2>/dev/null | grep -c inet")
        assert "rc=1" in r.out, r.out + r.err
        with pytest.raises(socket.timeout):
            srv.accept()
    finally:
        srv.close()


@needs_sandbox
def test_host_processes_cannot_be_signalled(h) -> None:
    victim = subprocess.Popen(["sleep", "60"])
    try:
        r = run(h, f"kill -9 {victim.pid}; echo rc=$?; kill -9 -1; echo still")
        assert "rc=1" in r.out
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


def _shell_processes() -> int:
    """Processes of the shell user (uid 2000) on the whole host."""
    n = 0
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                n += d.stat().st_uid == 2000
            except OSError:
                pass
    return n


@needs_sandbox
@pytest.mark.skipif(os.geteuid() != 0, reason="RLIMIT_NPROC bounds the real uid 2000: root mode")
def test_fork_bomb_is_bounded_and_ends_with_its_client(h) -> None:
    # RLIMIT_NPROC stops the bomb at the bound (mksh then waits and retries its forks); when the
    # client goes away (here: a timeout) the shell's process group is hung up and killed.
    ul = userland_of(h)
    ul.limits = Limits(nproc=48)
    io = MemoryIO()
    peak = []

    async def go():
        task = asyncio.ensure_future(AndroidShell(h).run("f() { f | f & }; f; sleep 30", io))
        for _ in range(20):
            await asyncio.sleep(0.1)
            peak.append(_shell_processes())
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
    assert max(peak) <= 48 + 4, peak  # the bound (+ racing forks of other tests' shells)
    for _ in range(100):
        if _shell_processes() == 0:
            break
        threading.Event().wait(0.1)
    assert run(h, "echo alive").out == "alive\n"


@needs_sandbox
def test_disk_filler_stops_at_the_file_size_bound(h) -> None:
    ul = userland_of(h)
    ul.limits = Limits(fsize=1024 * 1024)
    r = run(
        h,
        "dd if=/dev/zero of=/data/local/tmp/big bs=65536 count=100; echo rc=$?; "
        "ls -l /data/local/tmp/big | awk '{print $5}'",
    )
    assert "rc=1" in r.out or "rc=153" in r.out, r.out + r.err  # SIGXFSZ or EFBIG
    assert r.out.splitlines()[-1] == str(1024 * 1024)


# --- the shell's grammar is mksh's: a script, compared with mksh on this host ------------------------

GRAMMAR = r"""
set -e
count() { n=0; while [ $n -lt $1 ]; do n=$((n + 1)); done; echo "counted $n"; }
count 5
for w in alpha beta; do
  case $w in a*) echo "A: $w";; *) echo "other: $w";; esac
done
if [ -z "$UNSET" ]; then echo "default: ${UNSET:-fallback} ${#w} ${w%a} ${w#b}"; fi
printf 'l1\nl2\n' | while read -r line; do echo "read $line"; done
trap 'echo trapped' EXIT
sleep 0.1 & sleep 0.1 & wait; echo "waited"
cat <<EOF
here $((0x10)) ${w}
EOF
x=$(false || echo recovered); echo "$x"
false
echo unreachable
"""


@needs_sandbox
def test_grammar_script_behaves_as_mksh(h, tmp_path: Path) -> None:
    host = subprocess.run(["mksh", "-c", GRAMMAR], capture_output=True, text=True, timeout=20, cwd=tmp_path)
    r = run(h, GRAMMAR)
    assert (r.out, r.rc) == (host.stdout, host.returncode)
    assert r.out.endswith("recovered\ntrapped\n") and r.rc == 1


def test_root_layout_is_androids(tmp_path: Path) -> None:
    root = tmp_path / "root"
    rootfs.prepare(root, own=os.geteuid() == 0)
    modes = {rel: (root / rel).stat().st_mode & 0o7777 for rel in ("data", "data/local", "data/local/tmp")}
    assert modes == {"data": 0o771, "data/local": 0o751, "data/local/tmp": 0o771}
    if os.geteuid() == 0:
        assert ((root / "data").stat().st_uid, (root / "data/local/tmp").stat().st_uid) == (1000, 2000)
