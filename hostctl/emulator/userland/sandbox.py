"""A handset's sandbox as data: what is visible, what is unshared, who runs, and the one pure
function that renders it to a bubblewrap command line.

Nothing is visible unless a mount below says so (bubblewrap builds the new root from an empty
tmpfs; ``bubblewrap.c: setup_newroot`` applies the ops in order). The handset's own root on disk
becomes ``/`` of the sandbox; the shared system image (mksh, toybox, the framework tool client and
the libraries those need, all read-only) is mounted over ``/system/bin`` and ``/lib*``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Op(Enum):
    """bubblewrap's setup ops (``bubblewrap.c: SetupOpType``) that a handset uses."""

    BIND = "--bind"
    RO_BIND = "--ro-bind"
    DEV = "--dev"
    PROC = "--proc"
    TMPFS = "--tmpfs"
    DIR = "--dir"
    SYMLINK = "--symlink"
    REMOUNT_RO = "--remount-ro"


@dataclass(frozen=True)
class Mount:
    op: Op
    dest: str
    source: str = ""  # host path (BIND, RO_BIND) or link target (SYMLINK); unused otherwise

    def argv(self) -> list[str]:
        if self.op in (Op.BIND, Op.RO_BIND):
            return [self.op.value, self.source, self.dest]
        if self.op is Op.SYMLINK:
            return [self.op.value, self.source, self.dest]
        return [self.op.value, self.dest]


@dataclass(frozen=True)
class Limits:
    """Per-process bounds the launcher sets before exec (a fork bomb or a disk filler ends in
    an error). nproc counts the real uid's processes, so it is shared by all shells of uid 2000."""

    nproc: int = 256
    nofile: int = 256
    fsize: int = 256 * 1024 * 1024


@dataclass(frozen=True)
class SandboxSpec:
    hostname: str
    mounts: tuple[Mount, ...]
    launcher: str  # path of the launcher inside the sandbox
    groups: tuple[int, ...]  # the shell's supplementary groups
    limits: Limits = field(default_factory=Limits)
    boottime_offset: int | None = None  # seconds added to CLOCK_BOOTTIME/MONOTONIC (time ns)
    user_namespace: bool = False  # True when not root: bubblewrap maps us to uid 2000
    keep_caps: tuple[str, ...] = ("CAP_SETUID", "CAP_SETGID", "CAP_KILL")


def render(spec: SandboxSpec, *, bwrap: str = "bwrap", unshare: str = "unshare") -> list[str]:
    """The command line that starts the sandbox's launcher (fd 3 is its control socket)."""
    argv: list[str] = []
    if spec.boottime_offset is not None:
        # util-linux unshare: the time namespace's offsets apply to its first child (bwrap)
        off = str(spec.boottime_offset)
        argv += [unshare, "--time", "--fork", "--kill-child", f"--boottime={off}", f"--monotonic={off}", "--"]
    argv += [
        bwrap,
        "--die-with-parent",
        "--new-session",
        "--as-pid-1",
        "--unshare-pid",
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--hostname",
        spec.hostname,
        "--clearenv",
    ]
    if spec.user_namespace:
        argv += ["--unshare-user", "--uid", "2000", "--gid", "2000", "--cap-drop", "ALL"]
    else:
        argv += ["--cap-drop", "ALL"]
        for cap in spec.keep_caps:
            argv += ["--cap-add", cap]
    for m in spec.mounts:
        argv += m.argv()
    lim = spec.limits
    argv += [
        "--",
        spec.launcher,
        str(lim.nproc),
        str(lim.nofile),
        str(lim.fsize),
        ",".join(str(g) for g in spec.groups) or "2000",
    ]
    return argv
