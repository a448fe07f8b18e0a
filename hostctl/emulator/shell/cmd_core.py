"""Shell builtins and the small toolbox/toybox commands scripts use."""

from __future__ import annotations

import asyncio
import datetime as _dt
import hashlib
import re
import stat as _stat
from typing import Callable

from .files import FsError
from .interp import COMMANDS, SH, Ctx, ExitShell, command

# --- builtins ---------------------------------------------------------------------------------


@command("exit")
async def _exit(ctx: Ctx, argv: list[str]) -> int:
    if len(argv) > 1:
        if not re.fullmatch(r"-?\d+", argv[1]):
            ctx.err(f"{SH}: exit: {argv[1]}: bad number\n")
            raise ExitShell(1)
        raise ExitShell(int(argv[1]) & 0xFF)
    raise ExitShell(ctx.session.last_rc)


@command("true", ":")
async def _true(ctx: Ctx, argv: list[str]) -> int:
    return 0


@command("false")
async def _false(ctx: Ctx, argv: list[str]) -> int:
    return 1


@command("cd")
async def _cd(ctx: Ctx, argv: list[str]) -> int:
    target = argv[1] if len(argv) > 1 else ctx.session.vars.get("HOME", "/")
    dev = ctx.path(target)
    if not ctx.files.is_dir(dev):
        reason = "not a directory" if ctx.files.exists(dev) else "No such file or directory"
        ctx.err(f"{SH}: cd: {target}: {reason}\n")
        return 1
    ctx.session.cwd = dev
    return 0


@command("pwd")
async def _pwd(ctx: Ctx, argv: list[str]) -> int:
    ctx.out(ctx.cwd + "\n")
    return 0


@command("export")
async def _export(ctx: Ctx, argv: list[str]) -> int:
    for arg in argv[1:]:
        name, eq, value = arg.partition("=")
        if eq:
            ctx.session.vars[name] = value
        ctx.session.exported.add(name)
    if len(argv) == 1:
        for name in sorted(ctx.session.exported):
            if name in ctx.session.vars:
                ctx.out(f"export {name}={ctx.session.vars[name]}\n")
    return 0


@command("unset")
async def _unset(ctx: Ctx, argv: list[str]) -> int:
    for name in argv[1:]:
        ctx.session.vars.pop(name, None)
        ctx.session.exported.discard(name)
    return 0


@command("env", "printenv")
async def _env(ctx: Ctx, argv: list[str]) -> int:
    if argv[0] == "printenv" and len(argv) > 1:
        rc = 0
        for name in argv[1:]:
            if name in ctx.env:
                ctx.out(ctx.env[name] + "\n")
            else:
                rc = 1
        return rc
    for k, v in sorted(ctx.env.items()):
        ctx.out(f"{k}={v}\n")
    return 0


def _known_path(name: str) -> str | None:
    from . import cmd_android  # noqa: F401 - the registry must be complete

    if name not in COMMANDS or name in _BUILTINS:
        return None
    return f"/system/{'xbin' if name in ('which', 'su') else 'bin'}/{name}"


def _installed(ctx: Ctx, name: str) -> bool:
    """A command the handset has: `su` only on a rooted profile, `cmd` from Android 7.0."""
    return name in COMMANDS and (name != "su" or ctx.handset.profile.su) and (name != "cmd" or ctx.sdk >= 24)


_BUILTINS = {"exit", "true", "false", ":", "cd", "pwd", "export", "unset", "echo", "printf",
             "command", "type", "sleep"}


@command("which")
async def _which(ctx: Ctx, argv: list[str]) -> int:
    rc = 0
    for name in argv[1:]:
        path = (_known_path(name) or f"/system/bin/{name}") if _installed(ctx, name) else None
        if path:
            ctx.out(path + "\n")
        else:
            rc = 1
    return rc


@command("command", "type")
async def _command(ctx: Ctx, argv: list[str]) -> int:
    args = argv[1:]
    if argv[0] == "command" and args and args[0] in ("-v", "-V"):
        verbose = args[0] == "-V"
        rc = 0
        for name in args[1:]:
            if name in _BUILTINS:
                ctx.out(f"{name} is a shell builtin\n" if verbose else f"{name}\n")
            elif _installed(ctx, name):
                path = _known_path(name) or f"/system/bin/{name}"
                ctx.out(f"{name} is a tracked alias for {path}\n" if verbose else f"{path}\n")
            else:
                if verbose:
                    ctx.err(f"{name} not found\n")
                rc = 1
        return rc
    if argv[0] == "type":
        rc = 0
        for name in args:
            if name in _BUILTINS:
                ctx.out(f"{name} is a shell builtin\n")
            elif _installed(ctx, name):
                path = _known_path(name) or f"/system/bin/{name}"
                ctx.out(f"{name} is a tracked alias for {path}\n")
            else:
                ctx.out(f"{name} not found\n")
                rc = 1
        return rc
    if not args:
        return 0
    return await ctx.session.invoke(args, ctx.streams, ctx.env)


@command("sh")
async def _sh(ctx: Ctx, argv: list[str]) -> int:
    args = argv[1:]
    if args and args[0] == "-c":
        if len(args) < 2:
            ctx.err(f"{SH}: -c: option requires an argument\n")
            return 1
        sub = ctx.session.fork()
        if len(args) > 2:
            sub.arg0 = args[2]
        sub.positional = args[3:]
        try:
            return await sub.run_text(args[1], ctx.streams)
        except ExitShell as exc:
            return exc.code
    if args:
        return await ctx.session._exec_file(args[0], ctx.path(args[0]), args, ctx.streams)
    script = (await ctx.stdin_bytes()).decode("utf-8", "surrogateescape")
    sub = ctx.session.fork()
    try:
        return await sub.run_text(script, ctx.streams)
    except ExitShell as exc:
        return exc.code


# --- output -----------------------------------------------------------------------------------

_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
            "\\": "\\", "e": "\x1b"}


def _unescape(text: str) -> tuple[str, bool]:
    """Backslash escapes as mksh's echo/print see them; returns (text, stop) for \\c."""
    out = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "\\" or i + 1 >= len(text):
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "c":
            return "".join(out), True
        if nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        elif nxt == "0":
            m = re.match(r"0([0-7]{0,3})", text[i + 1:])
            out.append(chr(int(m.group(1) or "0", 8) & 0xFF))
            i += 1 + len(m.group(0))
        elif nxt == "x" and re.match(r"x[0-9a-fA-F]", text[i + 1:]):
            m = re.match(r"x([0-9a-fA-F]{1,2})", text[i + 1:])
            out.append(chr(int(m.group(1), 16)))
            i += 1 + len(m.group(0))
        else:
            out.append(ch)
            i += 1
    return "".join(out), False


@command("echo")
async def _echo(ctx: Ctx, argv: list[str]) -> int:
    args = argv[1:]
    newline, escapes = True, True
    while args and re.fullmatch(r"-[neE]+", args[0]):
        for flag in args[0][1:]:
            if flag == "n":
                newline = False
            elif flag == "e":
                escapes = True
            else:
                escapes = False
        args = args[1:]
    text = " ".join(args)
    if escapes:
        text, stop = _unescape(text)
        if stop:
            newline = False
    ctx.out(text + ("\n" if newline else ""))
    return 0


def _printf_format(fmt: str, args: list[str]) -> tuple[str, int, bool]:
    """One pass of the format; returns (text, args consumed, error)."""
    out = []
    used = 0
    error = False
    i = 0
    while i < len(fmt):
        ch = fmt[i]
        if ch == "\\":
            text, stop = _unescape(fmt[i:i + 5] if fmt[i + 1:i + 2] in "0x" else fmt[i:i + 2])
            consumed = 2
            if fmt[i + 1:i + 2] == "0":
                consumed = 1 + len(re.match(r"0[0-7]{0,3}", fmt[i + 1:]).group(0))
            elif fmt[i + 1:i + 2] == "x":
                m = re.match(r"x[0-9a-fA-F]{1,2}", fmt[i + 1:])
                consumed = 1 + (len(m.group(0)) if m else 1)
            out.append(text)
            if stop:
                return "".join(out), used, error
            i += consumed
            continue
        if ch != "%":
            out.append(ch)
            i += 1
            continue
        m = re.match(r"%([-+ #0]*)(\d*)(?:\.(\d+))?([sdiuxXocb%])", fmt[i:])
        if not m:
            out.append(ch)
            i += 1
            continue
        flags, width, prec, conv = m.groups()
        i += len(m.group(0))
        if conv == "%":
            out.append("%")
            continue
        arg = args[used] if used < len(args) else ""
        used += 1
        spec = "%" + flags + width + (f".{prec}" if prec is not None else "")
        if conv in "diuxXoc":
            if conv == "c":
                out.append((spec + "s") % arg[:1])
                continue
            try:
                num = int(arg, 0) if arg else 0
            except ValueError:
                m2 = re.match(r"-?\d+", arg)
                num = int(m2.group(0)) if m2 else 0
                error = True
            out.append((spec + ("d" if conv in "iu" else conv)) % num)
        elif conv == "b":
            out.append(_unescape(arg)[0])
        else:
            out.append((spec + "s") % arg)
    return "".join(out), used, error


@command("printf")
async def _printf(ctx: Ctx, argv: list[str]) -> int:
    if len(argv) < 2:
        ctx.err("printf: usage: printf format [arguments ...]\n")
        return 1
    fmt, args = argv[1], argv[2:]
    rc = 0
    while True:
        text, used, error = _printf_format(fmt, args)
        ctx.out(text)
        rc |= int(error)
        if used == 0 or used >= len(args):
            break
        args = args[used:]
    return rc


@command("sleep")
async def _sleep(ctx: Ctx, argv: list[str]) -> int:
    if len(argv) != 2:
        ctx.err("usage: sleep SECONDS\n")
        return 1
    try:
        seconds = float(argv[1].rstrip("s"))
    except ValueError:
        ctx.err(f"sleep: invalid number '{argv[1]}'\n")
        return 1
    await asyncio.sleep(max(0.0, seconds))
    return 0


# --- files ------------------------------------------------------------------------------------


def _split_opts(argv: list[str], allowed: str, name: str, ctx: Ctx
                ) -> tuple[set[str], list[str]] | None:
    flags: set[str] = set()
    rest: list[str] = []
    it = iter(argv[1:])
    for arg in it:
        if arg == "--":
            rest.extend(it)
            break
        if arg.startswith("-") and len(arg) > 1:
            for f in arg[1:]:
                if f not in allowed:
                    ctx.err(f"{name}: Unknown option '{f}' (see \"{name} --help\")\n")
                    return None
                flags.add(f)
        else:
            rest.append(arg)
    return flags, rest


@command("cat")
async def _cat(ctx: Ctx, argv: list[str]) -> int:
    parsed = _split_opts(argv, "uvten", "cat", ctx)
    if parsed is None:
        return 1
    _flags, paths = parsed
    contents, rc = await ctx.read_input("cat", paths)
    for _name, data in contents:
        ctx.out(data)
    return rc


def _mode_string(mode: int) -> str:
    kind = "d" if _stat.S_ISDIR(mode) else "l" if _stat.S_ISLNK(mode) else "-"
    bits = ""
    for shift in (6, 3, 0):
        v = (mode >> shift) & 7
        bits += ("r" if v & 4 else "-") + ("w" if v & 2 else "-") + ("x" if v & 1 else "-")
    return kind + bits


def _owner(dev: str) -> tuple[str, str, int | None]:
    """(user, group, forced mode bits) the way Android shows these trees."""
    if dev.startswith(("/sdcard", "/storage", "/mnt/sdcard")):
        return "root", "sdcard_r", None
    if dev.startswith("/data/local/tmp"):
        return "shell", "shell", None
    return "root", "root", None


def _ls_long(ctx: Ctx, dev: str, name: str) -> str:
    st = ctx.files.stat(dev)
    user, group, _ = _owner(dev)
    date = _dt.datetime.fromtimestamp(st.st_mtime).strftime("%Y-%m-%d %H:%M")
    mode = _mode_string(st.st_mode)
    if _stat.S_ISDIR(st.st_mode):
        return f"{mode} {user:<8} {group:<8}          {date} {name}"
    return f"{mode} {user:<8} {group:<8} {st.st_size:>8} {date} {name}"


@command("ls")
async def _ls(ctx: Ctx, argv: list[str]) -> int:
    parsed = _split_opts(argv, "laR1dstFhn", "ls", ctx)
    if parsed is None:
        return 1
    flags, paths = parsed
    paths = paths or ["."]
    rc = 0
    files_out: list[str] = []
    dirs: list[tuple[str, str]] = []
    for p in paths:
        dev = ctx.path(p)
        if not ctx.files.exists(dev):
            ctx.err(f"ls: {p}: No such file or directory\n")
            rc = 1
            continue
        if ctx.files.is_dir(dev) and "d" not in flags:
            dirs.append((p, dev))
        else:
            files_out.append(_ls_long(ctx, dev, p) if "l" in flags else p)
    for line in files_out:
        ctx.out(line + "\n")
    for i, (p, dev) in enumerate(dirs):
        if len(paths) > 1:
            ctx.out(("\n" if files_out or i else "") + f"{p}:\n")
        try:
            names = ctx.files.listdir(dev)
        except FsError as exc:
            ctx.err(f"ls: {p}: {exc.reason}\n")
            rc = 1
            continue
        if "a" in flags:
            names = [".", ".."] + names
        else:
            names = [n for n in names if not n.startswith(".")]
        for n in names:
            child = dev if n == "." else dev.rsplit("/", 1)[0] or "/" if n == ".." else \
                (dev.rstrip("/") + "/" + n)
            ctx.out((_ls_long(ctx, child, n) if "l" in flags else n) + "\n")
    return rc


@command("rm")
async def _rm(ctx: Ctx, argv: list[str]) -> int:
    parsed = _split_opts(argv, "rRfiv", "rm", ctx)
    if parsed is None:
        return 1
    flags, paths = parsed
    if not paths:
        if "f" in flags:
            return 0
        ctx.err("rm: Needs 1 argument (see \"rm --help\")\n")
        return 1
    rc = 0
    for p in paths:
        dev = ctx.path(p)
        if not ctx.files.exists(dev):
            if "f" not in flags:
                ctx.err(f"rm: {p}: No such file or directory\n")
                rc = 1
            continue
        try:
            ctx.files.remove(dev, recursive=bool({"r", "R"} & flags))
        except FsError as exc:
            ctx.err(f"rm: {p}: {exc.reason}\n")
            rc = 1
    return rc


def _each_path(ctx: Ctx, name: str, paths: list[str], op: Callable[[str], object]) -> int:
    """Apply ``op`` to each path's device path; report failures as toybox does; rc 1 if any."""
    rc = 0
    for p in paths:
        try:
            op(ctx.path(p))
        except FsError as exc:
            ctx.err(f"{name}: {p}: {exc.reason}\n")
            rc = 1
    return rc


@command("mkdir")
async def _mkdir(ctx: Ctx, argv: list[str]) -> int:
    parsed = _split_opts(argv, "pvm", "mkdir", ctx)
    if parsed is None:
        return 1
    flags, paths = parsed
    if not paths:
        ctx.err("mkdir: Needs 1 argument (see \"mkdir --help\")\n")
        return 1
    return _each_path(ctx, "mkdir", paths, lambda dev: ctx.files.mkdir(dev, parents="p" in flags))


@command("rmdir")
async def _rmdir(ctx: Ctx, argv: list[str]) -> int:
    def rmdir(dev: str) -> None:
        if ctx.files.listdir(dev):
            raise FsError(dev, "Directory not empty")
        ctx.files.remove(dev, recursive=True)

    return _each_path(ctx, "rmdir", argv[1:], rmdir)


@command("touch")
async def _touch(ctx: Ctx, argv: list[str]) -> int:
    parsed = _split_opts(argv, "acm", "touch", ctx)
    if parsed is None:
        return 1
    _flags, paths = parsed
    if not paths:
        ctx.err("touch: Needs 1 argument (see \"touch --help\")\n")
        return 1
    return _each_path(ctx, "touch", paths, ctx.files.touch)


@command("cp", "mv")
async def _cp(ctx: Ctx, argv: list[str]) -> int:
    name = argv[0]
    parsed = _split_opts(argv, "rRfpa", name, ctx)
    if parsed is None:
        return 1
    _flags, paths = parsed
    if len(paths) < 2:
        ctx.err(f"{name}: Needs 2 arguments (see \"{name} --help\")\n")
        return 1
    dest = ctx.path(paths[-1])
    rc = 0
    for src_name in paths[:-1]:
        src = ctx.path(src_name)
        target = dest + "/" + src.rsplit("/", 1)[-1] if ctx.files.is_dir(dest) else dest
        try:
            ctx.files.write(target, ctx.files.read(src))
            if name == "mv":
                ctx.files.remove(src, recursive=False)
        except FsError as exc:
            ctx.err(f"{name}: {exc.path}: {exc.reason}\n")
            rc = 1
    return rc


@command("stat")
async def _stat_cmd(ctx: Ctx, argv: list[str]) -> int:
    fmt = None
    paths = []
    args = argv[1:]
    i = 0
    while i < len(args):
        if args[i] == "-c" and i + 1 < len(args):
            fmt = args[i + 1]
            i += 2
            continue
        if args[i].startswith("-c") and len(args[i]) > 2:
            fmt = args[i][2:]
        elif args[i] in ("-L", "-f"):
            pass
        else:
            paths.append(args[i])
        i += 1
    if not paths:
        ctx.err("stat: Needs 1 argument (see \"stat --help\")\n")
        return 1
    rc = 0
    for p in paths:
        dev = ctx.path(p)
        try:
            st = ctx.files.stat(dev)
        except FsError as exc:
            ctx.err(f"stat: '{p}': {exc.reason}\n")
            rc = 1
            continue
        user, group, _ = _owner(dev)
        kind = "directory" if _stat.S_ISDIR(st.st_mode) else (
            "regular empty file" if st.st_size == 0 else "regular file")
        if fmt is None:
            ctx.out(f"  File: `{p}'\n  Size: {st.st_size}\t Blocks: {st.st_blocks}\t IO Blocks: "
                    f"4096\t{kind}\nAccess: ({_stat.S_IMODE(st.st_mode):04o}/"
                    f"{_mode_string(st.st_mode)})\tUid: ( {0 if user == 'root' else 2000}/"
                    f"{user:>8})\tGid: ( 0/{group:>8})\n")
            continue
        values = {"s": str(st.st_size), "n": p, "a": f"{_stat.S_IMODE(st.st_mode):o}",
                  "A": _mode_string(st.st_mode), "U": user, "G": group, "F": kind,
                  "Y": str(int(st.st_mtime)), "u": "0" if user == "root" else "2000",
                  "g": "0", "b": str(st.st_blocks), "%": "%"}
        ctx.out(re.sub(r"%(.)", lambda m: values.get(m.group(1), "?"), fmt) + "\n")
    return rc


@command("md5sum", "sha1sum", "sha256sum")
async def _digest(ctx: Ctx, argv: list[str]) -> int:
    algo = argv[0][:-3]
    contents, rc = await ctx.read_input(argv[0], [a for a in argv[1:] if a != "-b"])
    for name, data in contents:
        ctx.out(f"{hashlib.new(algo, data).hexdigest()}  {name}\n")
    return rc


# --- text filters -----------------------------------------------------------------------------


def _bre_to_re(pattern: str) -> str:
    """POSIX basic regex -> Python: \\( \\) \\| \\{ \\} \\+ \\? are operators, bare ones are not."""
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            out.append(nxt if nxt in "(){}|+?" else "\\" + nxt)
            i += 2
            continue
        out.append("\\" + ch if ch in "(){}|+?" else ch)
        i += 1
    return "".join(out)


@command("grep", "egrep", "fgrep")
async def _grep(ctx: Ctx, argv: list[str]) -> int:
    flags: set[str] = {"E"} if argv[0] == "egrep" else {"F"} if argv[0] == "fgrep" else set()
    patterns: list[str] = []
    rest: list[str] = []
    args = argv[1:]
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            rest.extend(args[i + 1:])
            break
        if a == "-e" and i + 1 < len(args):
            patterns.append(args[i + 1])
            i += 2
            continue
        if a.startswith("-") and len(a) > 1:
            for f in a[1:]:
                if f not in "ivcEFnlqhHowsx":
                    ctx.err(f"grep: Unknown option '{f}' (see \"grep --help\")\n")
                    return 2
                flags.add(f)
        else:
            rest.append(a)
        i += 1
    if not patterns:
        if not rest:
            ctx.err("grep: Needs 1 argument (see \"grep --help\")\n")
            return 2
        patterns.append(rest.pop(0))
    regexes = []
    for pat in patterns:
        src = re.escape(pat) if "F" in flags else pat if "E" in flags else _bre_to_re(pat)
        if "w" in flags:
            src = rf"\b(?:{src})\b"
        if "x" in flags:
            src = rf"^(?:{src})$"
        try:
            regexes.append(re.compile(src, re.IGNORECASE if "i" in flags else 0))
        except re.error:
            ctx.err(f"grep: bad regex '{pat}'\n")
            return 2
    contents, rc = await ctx.read_input("grep", rest)
    if rc and "s" in flags:
        rc = 0
    show_name = ("H" in flags or len(contents) > 1) and "h" not in flags
    found = False
    for name, data in contents:
        text = data.decode("utf-8", "surrogateescape")
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        count = 0
        for n, line in enumerate(lines, 1):
            matches = [m for r in regexes for m in r.finditer(line)] if "o" in flags else None
            hit = bool(matches) if matches is not None else any(r.search(line) for r in regexes)
            if hit == ("v" in flags):
                continue
            count += 1
            found = True
            if "q" in flags:
                return 0
            if "c" in flags or "l" in flags:
                continue
            prefix = (f"{name}:" if show_name else "") + (f"{n}:" if "n" in flags else "")
            if matches:
                for m in matches:
                    ctx.out(f"{prefix}{m.group(0)}\n")
            else:
                ctx.out(f"{prefix}{line}\n")
        if "c" in flags:
            ctx.out(f"{name}:{count}\n" if show_name else f"{count}\n")
        elif "l" in flags and count:
            ctx.out(f"{name if name != '-' else '(standard input)'}\n")
    if rc:
        return 2
    return 0 if found else 1


def _count_arg(args: list[str], name: str, ctx: Ctx) -> tuple[int, list[str]] | None:
    count = 10
    rest = []
    i = 0
    while i < len(args):
        a = args[i]
        value = None
        if a == "-n" and i + 1 < len(args):
            value = args[i + 1]
            i += 1
        elif a.startswith("-n") and len(a) > 2:
            value = a[2:]
        elif re.fullmatch(r"-\d+", a):
            value = a[1:]
        elif a.startswith("-") and len(a) > 1:
            ctx.err(f"{name}: Unknown option '{a[1:]}' (see \"{name} --help\")\n")
            return None
        else:
            rest.append(a)
        if value is not None:
            if not re.fullmatch(r"[-+]?\d+", value):
                ctx.err(f"{name}: Not integer: {value}\n")
                return None
            count = int(value)
        i += 1
    return count, rest


@command("head", "tail")
async def _head_tail(ctx: Ctx, argv: list[str]) -> int:
    parsed = _count_arg(argv[1:], argv[0], ctx)
    if parsed is None:
        return 1
    count, paths = parsed
    contents, rc = await ctx.read_input(argv[0], paths)
    for i, (name, data) in enumerate(contents):
        if len(contents) > 1:
            ctx.out(("\n" if i else "") + f"==> {name} <==\n")
        lines = data.split(b"\n")
        trailing = lines[-1] == b""
        if trailing:
            lines.pop()
        if argv[0] == "head":
            chosen = lines[:count] if count >= 0 else lines[:count]
            ends_last = trailing or len(chosen) < len(lines)
        else:
            chosen = lines[-count:] if count > 0 else []
            ends_last = trailing
        if chosen:
            ctx.out(b"\n".join(chosen) + (b"\n" if ends_last else b""))
    return rc


@command("wc")
async def _wc(ctx: Ctx, argv: list[str]) -> int:
    parsed = _split_opts(argv, "lwcm", "wc", ctx)
    if parsed is None:
        return 1
    flags, paths = parsed
    if "m" in flags:
        flags.add("c")
    selected = [f for f in "lwc" if f in flags] or ["l", "w", "c"]
    contents, rc = await ctx.read_input("wc", paths)
    totals = {"l": 0, "w": 0, "c": 0}
    for name, data in contents:
        counts = {"l": data.count(b"\n"), "w": len(data.split()), "c": len(data)}
        for k in totals:
            totals[k] += counts[k]
        _wc_line(ctx, selected, counts, name if name != "-" else "")
    if len(contents) > 1:
        _wc_line(ctx, selected, totals, "total")
    return rc


def _wc_line(ctx: Ctx, selected: list[str], counts: dict[str, int], name: str) -> None:
    if len(selected) == 1 and not name:
        ctx.out(f"{counts[selected[0]]}\n")
        return
    line = " ".join(f"{counts[k]:7d}" for k in selected)
    ctx.out(f"{line} {name}\n" if name else line + "\n")


@command("basename")
async def _basename(ctx: Ctx, argv: list[str]) -> int:
    if len(argv) < 2:
        ctx.err("basename: Needs 1 argument (see \"basename --help\")\n")
        return 1
    base = argv[1].rstrip("/").rsplit("/", 1)[-1] or "/"
    if len(argv) > 2 and base.endswith(argv[2]) and base != argv[2]:
        base = base[: -len(argv[2])]
    ctx.out(base + "\n")
    return 0


@command("dirname")
async def _dirname(ctx: Ctx, argv: list[str]) -> int:
    if len(argv) < 2:
        ctx.err("dirname: Needs 1 argument (see \"dirname --help\")\n")
        return 1
    path = argv[1].rstrip("/")
    ctx.out((path.rsplit("/", 1)[0] or "/" if "/" in path else ".") + "\n")
    return 0


@command("date")
async def _date(ctx: Ctx, argv: list[str]) -> int:
    now = _dt.datetime.now().astimezone()
    if len(argv) > 1 and argv[1].startswith("+"):
        ctx.out(now.strftime(argv[1][1:]) + "\n")
    else:
        ctx.out(now.strftime("%a %b %e %H:%M:%S %Z %Y") + "\n")
    return 0


@command("uname")
async def _uname(ctx: Ctx, argv: list[str]) -> int:
    if "-a" in argv:
        ctx.out("Linux localhost 3.4.0-perf-g0a1b2c3 #1 SMP PREEMPT Fri Jul 4 02:10:11 CST "
                "2014 armv7l\n")
    elif "-m" in argv:
        ctx.out("armv7l\n")
    elif "-r" in argv:
        ctx.out("3.4.0-perf-g0a1b2c3\n")
    else:
        ctx.out("Linux\n")
    return 0


@command("test", "[")
async def _test(ctx: Ctx, argv: list[str]) -> int:
    args = argv[1:]
    if argv[0] == "[":
        if not args or args[-1] != "]":
            ctx.err(f"{SH}: [: missing ]\n")
            return 2
        args = args[:-1]
    negate = False
    if args and args[0] == "!":
        negate, args = True, args[1:]
    result = _test_eval(ctx, args)
    if result is None:
        ctx.err(f"{SH}: {argv[0]}: unexpected operator\n")
        return 2
    return 0 if result != negate else 1


def _test_eval(ctx: Ctx, args: list[str]) -> bool | None:
    if not args:
        return False
    if len(args) == 1:
        return args[0] != ""
    if len(args) == 2:
        op, val = args
        if op == "-z":
            return val == ""
        if op == "-n":
            return val != ""
        dev = ctx.path(val)
        if op == "-e":
            return ctx.files.exists(dev)
        if op == "-f":
            return ctx.files.exists(dev) and not ctx.files.is_dir(dev)
        if op == "-d":
            return ctx.files.is_dir(dev)
        if op == "-s":
            try:
                return ctx.files.stat(dev).st_size > 0
            except FsError:
                return False
        if op in ("-r", "-w", "-x"):
            return ctx.files.exists(dev)
        return None
    if len(args) == 3:
        a, op, b = args
        if op in ("=", "=="):
            return a == b
        if op == "!=":
            return a != b
        ints = {"-eq": int.__eq__, "-ne": int.__ne__, "-lt": int.__lt__, "-le": int.__le__,
                "-gt": int.__gt__, "-ge": int.__ge__}
        if op in ints:
            try:
                return ints[op](int(a), int(b))
            except ValueError:
                return None
    return None
