"""The handset's root on disk, laid out and owned as Android's init makes it (AOSP
system/core/rootdir/init.rc: ``mkdir /data 0771 system system``, ``mkdir /data/local 0751 root
root``, ``mkdir /data/local/tmp 0771 shell shell``, ``mkdir /data/data 0771 system system``;
the sdcard is writable by the shell through sdcard_rw / FUSE, here by owning it).

Ownership needs root; under a user namespace everything stays the caller's (who is uid 2000 in
the sandbox), which gives the shell the same writes but not /data's "Permission denied".
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

AID_ROOT, AID_SYSTEM, AID_SHELL = 0, 1000, 2000

# (path, mode, uid, gid): directories; mount points for what the sandbox mounts over them too
LAYOUT: tuple[tuple[str, int, int, int], ...] = (
    ("system", 0o755, AID_ROOT, AID_ROOT),
    ("system/bin", 0o755, AID_ROOT, AID_ROOT),
    ("system/xbin", 0o755, AID_ROOT, AID_ROOT),
    ("system/etc", 0o755, AID_ROOT, AID_ROOT),
    ("vendor", 0o755, AID_ROOT, AID_ROOT),
    ("sbin", 0o750, AID_ROOT, AID_ROOT),
    ("data", 0o771, AID_SYSTEM, AID_SYSTEM),
    ("data/local", 0o751, AID_ROOT, AID_ROOT),
    ("data/local/tmp", 0o771, AID_SHELL, AID_SHELL),
    ("data/data", 0o771, AID_SYSTEM, AID_SYSTEM),
    ("cache", 0o770, AID_SYSTEM, 2001),
    ("sdcard", 0o771, AID_SHELL, AID_SHELL),
    ("storage", 0o751, AID_ROOT, 1028),
    ("storage/emulated", 0o555, AID_ROOT, AID_ROOT),
    ("storage/emulated/0", 0o771, AID_SHELL, AID_SHELL),
    ("storage/emulated/legacy", 0o771, AID_SHELL, AID_SHELL),
    ("storage/self", 0o755, AID_ROOT, AID_ROOT),
    ("mnt", 0o755, AID_ROOT, 1000),
    ("dev", 0o755, AID_ROOT, AID_ROOT),
    ("proc", 0o555, AID_ROOT, AID_ROOT),
    ("sys", 0o555, AID_ROOT, AID_ROOT),
    ("acct", 0o755, AID_ROOT, AID_ROOT),
)
SHELL_OWNED = ("data/local/tmp", "sdcard")

# bionic knows these names without files (android_filesystem_config.h: AID_*); glibc's toybox
# reads /etc/passwd and /etc/group, so the handset's /system/etc carries the same table.
PASSWD = "root:x:0:0::/:/system/bin/sh\nsystem:x:1000:1000::/:/system/bin/sh\nshell:x:2000:2000::/:/system/bin/sh\n"
GROUP = ("root:x:0:\nsystem:x:1000:\ngraphics:x:1003:\ninput:x:1004:\nlog:x:1007:\nmount:x:1009:\n"
         "adb:x:1011:\nsdcard_rw:x:1015:\nsdcard_r:x:1028:\nshell:x:2000:\nnet_bt_admin:x:3001:\n"
         "net_bt:x:3002:\ninet:x:3003:\nnet_bw_stats:x:3006:\nreadproc:x:3009:\nuhid:x:3011:\n")


def mountpoints(root: Path, dirs: list[str], files: list[str]) -> None:
    """Empty directories and files for the sandbox's mounts (its / is read-only, so bubblewrap
    cannot create them): the loader's library directories and the launcher."""
    # explicit modes on every level made here: a detached lab runs with umask 077
    def make_dir(d: Path) -> None:
        d.mkdir(parents=True, exist_ok=True)
        for level in (d, *d.parents):
            if level == root or root not in level.parents:
                break
            if level.stat().st_mode & 0o777 != 0o755:
                level.chmod(0o755)

    for d in dirs:
        make_dir(root / d)
    for f in files:
        p = root / f
        if not p.exists():
            make_dir(p.parent)
            p.touch()
            p.chmod(0o755)


def prepare(root: Path, *, own: bool) -> None:
    """Creates the layout and fixes modes (and owners, when ``own``); cheap when already right."""
    for rel, mode, uid, gid in LAYOUT:
        p = root / rel
        if p.is_symlink():
            continue
        p.mkdir(parents=True, exist_ok=True)
        st = p.stat()
        if st.st_mode & 0o7777 != mode:
            p.chmod(mode)
        if own and (st.st_uid, st.st_gid) != (uid, gid):
            os.chown(p, uid, gid)
    root.chmod(0o755)
    etc = root / "system/etc"
    for name, text in (("passwd", PASSWD), ("group", GROUP)):
        if not (etc / name).exists():
            (etc / name).write_text(text)
            (etc / name).chmod(0o644)
    link = root / "etc"
    if not link.is_symlink() and not link.exists():
        link.symlink_to("/system/etc")       # Android's /etc -> /system/etc
    if own:
        for rel in SHELL_OWNED:
            _own_tree(root / rel)


def close_app_dirs(root: Path) -> None:
    """Apps' private directories (/data/data/PKG) are the app's alone on Android (0700 since 10,
    0751 with 0660 files before): the shell may not read them. The model writes them as root
    with its own modes, at any time, so this runs before each shell."""
    try:
        entries = list(os.scandir(root / "data" / "data"))
    except OSError:
        return
    for e in entries:
        with contextlib.suppress(OSError):
            if e.is_dir(follow_symlinks=False) and e.stat(follow_symlinks=False).st_mode & 0o077:
                os.chmod(e.path, 0o700)


def shell_dir(path: Path, *, own: bool) -> None:
    """A directory the shell user owns (0771 shell shell)."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o771)
    if own and path.stat().st_uid != AID_SHELL:
        os.chown(path, AID_SHELL, AID_SHELL)


def _own_tree(top: Path) -> None:
    """Files the model or adb sync wrote as root under the shell's directories become the
    shell's, as adbd (running as shell) would have written them."""
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            with contextlib.suppress(OSError):
                if os.lstat(p).st_uid != AID_SHELL:
                    os.lchown(p, AID_SHELL, AID_SHELL)
