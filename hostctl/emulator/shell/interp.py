"""The interpreter: runs parsed command lines against the handset, never against the host.

Each `adb shell` command runs in a fresh ``Session`` (its own cwd and variables), like a new
``sh -c``; an interactive shell keeps one session. Pipelines buffer: each stage runs to
completion and its output becomes the next stage's input.
"""

from __future__ import annotations

import asyncio
import fnmatch
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..handset import VirtualHandset
from .files import FsError, ShellFiles
from .io import ShellIO
from .syntax import AndOr, Arith, Group, Lit, ParseError, Pipeline, Script, SimpleCommand, Var, \
    Word, parse

__all__ = ["COMMANDS", "Ctx", "ExitShell", "Session", "command"]

SH = "/system/bin/sh"
_MAX_DEPTH = 24
_IFS_SPLIT = re.compile(r"[ \t\n]+")


class ExitShell(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


# --- streams ----------------------------------------------------------------------------------


class Input:
    async def read(self) -> bytes:
        """Next chunk; b"" at EOF."""
        return b""

    async def read_all(self) -> bytes:
        chunks = []
        while chunk := await self.read():
            chunks.append(chunk)
        return b"".join(chunks)


class BytesInput(Input):
    def __init__(self, data: bytes) -> None:
        self._data = data

    async def read(self) -> bytes:
        data, self._data = self._data, b""
        return data


class IOInput(Input):
    """Stdin of the ADB stream; ``pending`` holds bytes an interactive shell read ahead."""

    def __init__(self, io: ShellIO) -> None:
        self.io = io
        self.pending = b""
        self.eof = False

    async def read(self) -> bytes:
        if self.pending:
            data, self.pending = self.pending, b""
            return data
        if self.eof:
            return b""
        data = await self.io.read_stdin()
        if not data:
            self.eof = True
        return data


class Output:
    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class NullOutput(Output):
    def write(self, data: bytes) -> None:
        pass


class BufferOutput(Output):
    def __init__(self) -> None:
        self.buf = bytearray()

    def write(self, data: bytes) -> None:
        self.buf += data


class CallbackOutput(Output):
    def __init__(self, fn: Callable[[bytes], None]) -> None:
        self.fn = fn

    def write(self, data: bytes) -> None:
        if data:
            self.fn(data)


class FileOutput(Output):
    def __init__(self, f) -> None:
        self.f = f

    def write(self, data: bytes) -> None:
        if not self.f.closed:
            self.f.write(data)
            self.f.flush()

    def close(self) -> None:
        self.f.close()


@dataclass
class Streams:
    stdin: Input
    stdout: Output
    stderr: Output


# --- command context --------------------------------------------------------------------------


class Ctx:
    """What a command implementation sees: argv's environment, streams and the handset."""

    def __init__(self, session: "Session", streams: Streams, env: dict[str, str]) -> None:
        self.session = session
        self.streams = streams
        self.env = env

    @property
    def handset(self) -> VirtualHandset:
        return self.session.handset

    @property
    def files(self) -> ShellFiles:
        return self.session.files

    @property
    def cwd(self) -> str:
        return self.session.cwd

    @property
    def sdk(self) -> int:
        return self.session.handset.profile.sdk

    def path(self, p: str) -> str:
        return self.files.norm(p, self.session.cwd)

    def out(self, text: str | bytes) -> None:
        self.streams.stdout.write(text if isinstance(text, bytes)
                                  else text.encode("utf-8", "surrogateescape"))

    def err(self, text: str | bytes) -> None:
        self.streams.stderr.write(text if isinstance(text, bytes)
                                  else text.encode("utf-8", "surrogateescape"))

    async def stdin_bytes(self) -> bytes:
        return await self.streams.stdin.read_all()

    async def read_input(self, name: str, paths: list[str]) -> tuple[list[tuple[str, bytes]], int]:
        """Contents of each path ("-" or none: stdin); errors printed as ``name: p: reason``."""
        if not paths:
            return [("-", await self.stdin_bytes())], 0
        result, rc = [], 0
        for p in paths:
            if p == "-":
                result.append((p, await self.stdin_bytes()))
                continue
            try:
                result.append((p, self.files.read(self.path(p))))
            except FsError as exc:
                self.err(f"{name}: {p}: {exc.reason}\n")
                rc = 1
        return result, rc


CommandFn = Callable[[Ctx, list[str]], Awaitable[int]]
COMMANDS: dict[str, CommandFn] = {}


def command(*names: str) -> Callable[[CommandFn], CommandFn]:
    def register(fn: CommandFn) -> CommandFn:
        for name in names:
            COMMANDS[name] = fn
        return fn
    return register


# --- the session ------------------------------------------------------------------------------


_DEFAULT_ENV = {
    "PATH": "/sbin:/vendor/bin:/system/sbin:/system/bin:/system/xbin",
    "ANDROID_ROOT": "/system",
    "ANDROID_DATA": "/data",
    "ANDROID_ASSETS": "/system/app",
    "ANDROID_STORAGE": "/storage",
    "EXTERNAL_STORAGE": "/storage/emulated/legacy",
    "ASEC_MOUNTPOINT": "/mnt/asec",
    "LOOP_MOUNTPOINT": "/mnt/obb",
    "BOOTCLASSPATH": "/system/framework/core.jar:/system/framework/framework.jar",
    "HOSTNAME": "",
    "SHELL": SH,
    "TMPDIR": "/data/local/tmp",
    "USER": "shell",
    "HOME": "/",
}


class Session:
    def __init__(self, handset: VirtualHandset, *, depth: int = 0) -> None:
        self.handset = handset
        self.files = ShellFiles(handset)
        self.cwd = "/"
        self.vars: dict[str, str] = dict(_DEFAULT_ENV)
        self.vars["HOSTNAME"] = handset.profile.product.device
        self.exported: set[str] = set(_DEFAULT_ENV)
        self.last_rc = 0
        self.depth = depth
        self.pid = 4000 + (abs(hash(handset.label)) % 2000)
        self.positional: list[str] = []
        self._sub_rc: int | None = None
        self.arg0 = SH
        self.uid = 2000  # shell; 0 inside `su`

    def fork(self) -> "Session":
        child = Session(self.handset, depth=self.depth + 1)
        child.cwd = self.cwd
        child.vars = dict(self.vars)
        child.exported = set(self.exported)
        child.last_rc = self.last_rc
        child.pid = self.pid + 1
        child.positional = list(self.positional)
        child.arg0 = self.arg0
        child.uid = self.uid
        return child

    # --- entry points ---------------------------------------------------------------------

    async def run_text(self, text: str, streams: Streams) -> int:
        """Parse and run; a syntax error prints mksh's message and returns 1."""
        try:
            script = parse(text)
        except ParseError as exc:
            streams.stderr.write(f"{SH}: {exc}\n".encode())
            self.last_rc = 1
            return 1
        except RecursionError:
            streams.stderr.write(f"{SH}: syntax error: nesting too deep\n".encode())
            self.last_rc = 1
            return 1
        return await self.run_script(script, streams)

    async def run_script(self, script: Script, streams: Streams) -> int:
        rc = self.last_rc if not script.items else 0
        for item in script.items:
            rc = await self.run_and_or(item, streams)
        return rc

    async def run_and_or(self, node: AndOr, streams: Streams) -> int:
        rc = await self.run_pipeline(node.first, streams)
        for op, pipeline in node.rest:
            if (op == "&&") == (rc == 0):
                rc = await self.run_pipeline(pipeline, streams)
        return rc

    async def run_pipeline(self, node: Pipeline, streams: Streams) -> int:
        if len(node.commands) == 1:
            rc = await self.run_command(node.commands[0], streams)
        else:
            stdin: Input = streams.stdin
            rc = 0
            for i, cmd in enumerate(node.commands):
                last = i == len(node.commands) - 1
                out: Output = streams.stdout if last else BufferOutput()
                stage = self.fork()
                try:
                    rc = await stage.run_command(cmd, Streams(stdin, out, streams.stderr))
                except ExitShell as exc:
                    rc = exc.code
                if not last:
                    stdin = BytesInput(bytes(out.buf))  # type: ignore[attr-defined]
        if node.negate:
            rc = 0 if rc else 1
        self.last_rc = rc
        return rc

    async def run_command(self, node: SimpleCommand | Group, streams: Streams) -> int:
        if isinstance(node, Group):
            redirected = await self.redirect(node.redirects, streams)
            if redirected is None:
                return 1
            new_streams, opened = redirected
            try:
                if node.subshell:
                    sub = self.fork()
                    try:
                        return await sub.run_script(node.body, new_streams)
                    except ExitShell as exc:
                        return exc.code
                return await self.run_script(node.body, new_streams)
            finally:
                for o in opened:
                    o.close()
        return await self.run_simple(node, streams)

    async def run_simple(self, node: SimpleCommand, streams: Streams) -> int:
        self._sub_rc: int | None = None
        argv: list[str] = []
        for word in node.words:
            argv.extend(await self.expand(word, streams))
        assigns = [(name, "".join(await self.expand(value, streams, split=False)))
                   for name, value in node.assigns]
        redirected = await self.redirect(node.redirects, streams)
        if redirected is None:
            self.last_rc = 1
            return 1
        new_streams, opened = redirected
        try:
            if not argv:
                for name, value in assigns:
                    self.vars[name] = value
                rc = self._sub_rc if self._sub_rc is not None else 0
            else:
                env = {k: v for k, v in self.vars.items() if k in self.exported}
                env.update(assigns)
                rc = await self.invoke(argv, new_streams, env)
        finally:
            for o in opened:
                o.close()
        self.last_rc = rc
        return rc

    async def invoke(self, argv: list[str], streams: Streams, env: dict[str, str]) -> int:
        name = argv[0]
        fn = COMMANDS.get(name)
        if fn is None and "/" in name:
            base = name.rsplit("/", 1)[-1]
            dev = self.files.norm(name, self.cwd)
            if dev.rsplit("/", 1)[0] in ("/system/bin", "/system/xbin", "/sbin") \
                    and base in COMMANDS:
                fn = COMMANDS[base]
            elif self.files.exists(dev) and not self.files.is_dir(dev):
                return await self._exec_file(name, dev, argv, streams)
        if fn is None:
            streams.stderr.write(f"{SH}: {name}: inaccessible or not found\n"
                                 .encode("utf-8", "surrogateescape"))
            return 127
        ctx = Ctx(self, streams, env)
        try:
            rc = await fn(ctx, argv)
        except (ExitShell, asyncio.CancelledError):
            raise
        except FsError as exc:
            ctx.err(f"{name}: {exc}\n")
            rc = 1
        except Exception as exc:  # noqa: BLE001 - a command bug must not kill the session
            ctx.err(f"{name}: {type(exc).__name__}: {exc}\n")
            self.handset.log("E", "sh", f"{name} failed: {exc!r}")
            rc = 1
        return int(rc) & 0xFF

    async def _exec_file(self, name: str, dev: str, argv: list[str], streams: Streams) -> int:
        """Run a file: scripts starting with #! naming a shell run in the emulated shell."""
        try:
            data = self.files.read(dev)
        except FsError as exc:
            streams.stderr.write(f"{SH}: {name}: {exc.reason}\n".encode())
            return 126
        first = data.split(b"\n", 1)[0]
        if not (first.startswith(b"#!") and first.rstrip().endswith(b"sh")):
            streams.stderr.write(f"{SH}: {name}: can't execute: Permission denied\n".encode())
            return 126
        if self.depth >= _MAX_DEPTH:
            streams.stderr.write(f"{SH}: {name}: too deep\n".encode())
            return 1
        sub = self.fork()
        sub.positional = argv[1:]
        try:
            return await sub.run_text(data.decode("utf-8", "surrogateescape"), streams)
        except ExitShell as exc:
            return exc.code

    # --- expansion ------------------------------------------------------------------------

    def var(self, name: str) -> str:
        if name == "?":
            return str(self.last_rc)
        if name == "$":
            return str(self.pid)
        if name == "#":
            return str(len(self.positional))
        if name == "0":
            return self.arg0
        if name.isascii() and name.isdigit():
            i = int(name)
            return self.positional[i - 1] if i <= len(self.positional) else ""
        if name in ("@", "*"):
            return " ".join(self.positional)
        if name == "!":
            return ""
        if name == "-":
            return "hi"
        return self.vars.get(name, "")

    def arith(self, expr: str, streams: Streams) -> str:
        """$(( )) on integers: + - * / % comparisons, parentheses, variables; no host eval."""
        import ast

        def name_value(m: re.Match) -> str:
            v = self.vars.get(m.group(1), "0") if m.group(1) else self.var(m.group(2))
            return v if re.fullmatch(r"-?\d+", v.strip()) else "0"

        src = re.sub(r"\$?([A-Za-z_]\w*)|\$(\?|#|\d)", name_value, expr)
        ops = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
               ast.Mult: lambda a, b: a * b, ast.Mod: lambda a, b: a % b,
               ast.FloorDiv: lambda a, b: int(a / b), ast.Div: lambda a, b: int(a / b)}
        cmps = {ast.Lt: int.__lt__, ast.Gt: int.__gt__, ast.LtE: int.__le__,
                ast.GtE: int.__ge__, ast.Eq: int.__eq__, ast.NotEq: int.__ne__}

        def ev(node: ast.AST) -> int:
            if isinstance(node, ast.Expression):
                return ev(node.body)
            if isinstance(node, ast.Constant) and isinstance(node.value, int) \
                    and not isinstance(node.value, bool):
                return node.value
            if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
                v = ev(node.operand)
                return -v if isinstance(node.op, ast.USub) else v
            if isinstance(node, ast.BinOp) and type(node.op) in ops:
                a, b = ev(node.left), ev(node.right)
                if abs(a) > 2**63 or abs(b) > 2**63:
                    raise OverflowError
                return ops[type(node.op)](a, b)
            if isinstance(node, ast.Compare) and len(node.ops) == 1 \
                    and type(node.ops[0]) in cmps:
                return int(cmps[type(node.ops[0])](ev(node.left), ev(node.comparators[0])))
            raise ValueError(expr)

        try:
            if len(src) > 200:
                raise ValueError(expr)
            value = ev(ast.parse(src.strip() or "0", mode="eval"))
            return str(((value + 2**63) % 2**64) - 2**63)
        except (SyntaxError, ValueError, ZeroDivisionError, OverflowError, RecursionError):
            streams.stderr.write(f"{SH}: {expr}: bad arithmetic expression\n"
                                 .encode("utf-8", "surrogateescape"))
            return "0"

    async def substitute(self, source: str, streams: Streams) -> str:
        if self.depth >= _MAX_DEPTH:
            streams.stderr.write(f"{SH}: substitution nested too deeply\n".encode())
            return ""
        sub = self.fork()
        out = BufferOutput()
        try:
            rc = await sub.run_text(source, Streams(BytesInput(b""), out, streams.stderr))
        except ExitShell as exc:
            rc = exc.code
        self._sub_rc = rc
        return bytes(out.buf).decode("utf-8", "surrogateescape").rstrip("\n")

    async def expand(self, word: Word, streams: Streams, *, split: bool = True) -> list[str]:
        fields: list[str] = []
        cur = ""
        have = False
        glob = False
        for part in word.parts:
            if isinstance(part, Lit):
                cur += part.text
                have = True
                if not part.quoted and any(c in part.text for c in "*?["):
                    glob = True
                continue
            if isinstance(part, Var):
                value = self.var(part.name)
            elif isinstance(part, Arith):
                value = self.arith(part.expr, streams)
            else:
                value = await self.substitute(part.source, streams)
            if part.quoted or not split:
                cur += value
                have = True
                continue
            for k, piece in enumerate(_IFS_SPLIT.split(value)):
                if k > 0 and have:
                    fields.append(cur)
                    cur, have = "", False
                if piece:
                    cur += piece
                    have = True
        if have:
            fields.append(cur)
        if glob and split:
            globbed: list[str] = []
            for f in fields:
                globbed.extend(self.glob(f) or [f])
            return globbed
        return fields

    def glob(self, pattern: str) -> list[str]:
        """Pathname expansion inside the device root; no match leaves the word as is."""
        absolute = pattern.startswith("/")
        comps = [c for c in pattern.split("/") if c]
        bases = ["/" if absolute else ""]
        for i, comp in enumerate(comps):
            last = i == len(comps) - 1
            nxt = []
            for base in bases:
                if not any(c in comp for c in "*?["):
                    nxt.append(f"{base}{comp}" if base in ("", "/") else f"{base}/{comp}")
                    continue
                dev_dir = self.files.norm(base or ".", self.cwd)
                try:
                    names = self.files.listdir(dev_dir)
                except FsError:
                    continue
                for n in names:
                    if n.startswith(".") and not comp.startswith("."):
                        continue
                    if fnmatch.fnmatchcase(n, comp):
                        path = f"{base}{n}" if base in ("", "/") else f"{base}/{n}"
                        if last or self.files.is_dir(self.files.norm(path, self.cwd)):
                            nxt.append(path)
            bases = nxt
            if len(bases) > 10000:
                break
        return sorted(b for b in bases if self.files.exists(self.files.norm(b, self.cwd)))

    # --- redirection ----------------------------------------------------------------------

    async def redirect(self, redirects, streams: Streams
                       ) -> tuple[Streams, list[Output]] | None:
        if not redirects:
            return streams, []
        fds: dict[int, Input | Output] = {0: streams.stdin, 1: streams.stdout,
                                          2: streams.stderr}
        opened: list[Output] = []

        def fail(msg: str) -> None:
            for o in opened:
                o.close()
            streams.stderr.write(f"{SH}: {msg}\n".encode("utf-8", "surrogateescape"))

        for r in redirects:
            fields = await self.expand(r.target, streams)
            if len(fields) != 1:
                fail(f"{''.join(fields) or 'redirect'}: ambiguous redirect"
                     if fields else "ambiguous redirect")
                return None
            target = fields[0]
            if r.op in (">&", "<&"):
                if target == "-":
                    fds[r.fd] = NullOutput() if r.op == ">&" else BytesInput(b"")
                    continue
                if target.isascii() and target.isdigit():
                    src = int(target)
                    if src not in fds:
                        fail(f"{target}: bad file descriptor")
                        return None
                    fds[r.fd] = fds[src]
                    continue
                if r.op == "<&":
                    fail(f"{target}: illegal file descriptor name")
                    return None
            dev = self.files.norm(target, self.cwd)
            if r.op == "<" or r.op == "<&":
                try:
                    fds[r.fd] = BytesInput(self.files.read(dev))
                except FsError as exc:
                    fail(f"can't open {target}: {exc.reason}")
                    return None
                continue
            if dev in ("/dev/stdout", "/dev/tty"):
                fds[r.fd] = streams.stdout
                continue
            if dev == "/dev/stderr":
                fds[r.fd] = streams.stderr
                continue
            try:
                f = self.files.open_write(dev, append=r.op == ">>")
            except FsError as exc:
                fail(f"can't create {target}: {exc.reason}")
                return None
            out: Output = NullOutput() if f is None else FileOutput(f)
            if f is not None:
                opened.append(out)
            fds[r.fd] = out
            if r.op == ">&":  # ">& file": stdout and stderr
                fds[2] = out
        stdin = fds[0] if isinstance(fds[0], Input) else BytesInput(b"")
        stdout = fds[1] if isinstance(fds[1], Output) else NullOutput()
        stderr = fds[2] if isinstance(fds[2], Output) else NullOutput()
        return Streams(stdin, stdout, stderr), opened
