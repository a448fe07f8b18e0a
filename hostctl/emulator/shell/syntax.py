"""Tokenizer and parser for the emulated Android shell (a small subset of mksh).

Pure functions from text to a tree; nothing here executes anything. Supported: ``;`` ``&``
newlines, ``&&`` ``||``, pipes, ``!``, ``( list )`` and ``{ list; }`` groups, quoting (single,
double, backslash), ``$VAR`` ``${VAR}`` ``$?`` ``$$`` ``$#`` ``$0``-``$9``, ``VAR=x`` assignments,
``$(...)`` and backtick substitution (kept as source text and parsed when expanded), comments,
and redirections ``<`` ``>`` ``>>`` ``>|`` ``<&`` ``>&`` with an optional fd number.
"""

from __future__ import annotations

import re

from dataclasses import dataclass, field
from typing import Callable

__all__ = [
    "AndOr", "Arith", "Group", "Lit", "ParseError", "Pipeline", "Redirect", "Script", "SimpleCommand",
    "Sub", "Var", "Word", "parse",
]


class ParseError(ValueError):
    """Syntax the shell rejects; the message is mksh's wording without the "sh: " prefix."""


@dataclass(frozen=True, slots=True)
class Lit:
    text: str
    quoted: bool


@dataclass(frozen=True, slots=True)
class Var:
    name: str
    quoted: bool


@dataclass(frozen=True, slots=True)
class Sub:
    source: str
    quoted: bool


@dataclass(frozen=True, slots=True)
class Arith:
    expr: str
    quoted: bool


Part = Lit | Var | Sub | Arith


@dataclass(frozen=True, slots=True)
class Word:
    parts: tuple[Part, ...]

    @property
    def literal(self) -> str | None:
        """The text when the word is fully literal (no expansion), else None."""
        if all(isinstance(p, Lit) for p in self.parts):
            return "".join(p.text for p in self.parts)  # type: ignore[union-attr]
        return None

    @property
    def unquoted_literal(self) -> str | None:
        if all(isinstance(p, Lit) and not p.quoted for p in self.parts):
            return "".join(p.text for p in self.parts)  # type: ignore[union-attr]
        return None


@dataclass(frozen=True, slots=True)
class Redirect:
    fd: int
    op: str  # < > >> >| <& >&
    target: Word


@dataclass(slots=True)
class SimpleCommand:
    assigns: list[tuple[str, Word]] = field(default_factory=list)
    words: list[Word] = field(default_factory=list)
    redirects: list[Redirect] = field(default_factory=list)


@dataclass(slots=True)
class Group:
    body: "Script"
    subshell: bool
    redirects: list[Redirect] = field(default_factory=list)


@dataclass(slots=True)
class Pipeline:
    commands: list[SimpleCommand | Group]
    negate: bool = False


@dataclass(slots=True)
class AndOr:
    first: Pipeline
    rest: list[tuple[str, Pipeline]] = field(default_factory=list)


@dataclass(slots=True)
class Script:
    items: list[AndOr] = field(default_factory=list)


# --- tokenizer --------------------------------------------------------------------------------

_OPS = ("&&", "||", ">>", ">&", "<&", ">|", "<<", ";;", ";", "|", "&", "(", ")", "<", ">", "\n")
_SPECIAL_VARS = set("?$#!@*-0123456789")
_OP_START = frozenset(o[0] for o in _OPS)
# A run of characters that can only be literal word text (no quoting, expansion or operator).
_DQUOTE_RUN = re.compile(r"[^\\$`]+")
_PLAIN_RUN = re.compile(r"[^\s'\"\\$`#&|;()<>]+")


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # "word", "op", "redir"
    value: object
    fd: int | None = None


def _scan_paren(text: str, i: int) -> int:
    """Index just past the ')' closing the '$(' whose '(' is at text[i-1]."""
    depth = 1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "'":
            end = text.find("'", i + 1)
            if end < 0:
                raise ParseError("no closing quote")
            i = end + 1
            continue
        if ch == '"':
            i = _scan_dquote(text, i + 1)
            continue
        if ch == "`":
            i = _scan_backtick(text, i + 1)[1]
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ParseError("unexpected EOF while looking for matching ')'")


def _scan_dquote(text: str, i: int) -> int:
    """Index just past the closing '"' of a double-quoted string starting at i."""
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == '"':
            return i + 1
        if ch == "$" and text.startswith("$(", i):
            i = _scan_paren(text, i + 2)
            continue
        if ch == "`":
            i = _scan_backtick(text, i + 1)[1]
            continue
        i += 1
    raise ParseError("no closing quote")


def _scan_backtick(text: str, i: int) -> tuple[str, int]:
    """(unescaped source, index past the closing backtick) for a backtick body starting at i."""
    out = []
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\" and i + 1 < n and text[i + 1] in "`\\$":
            out.append(text[i + 1])
            i += 2
            continue
        if ch == "`":
            return "".join(out), i + 1
        out.append(ch)
        i += 1
    raise ParseError("no closing quote")


def _read_dollar(text: str, i: int, quoted: bool) -> tuple[Part, int]:
    """Parse the expansion whose '$' is at text[i]."""
    n = len(text)
    j = i + 1
    if text.startswith("((", j):
        end = _scan_paren(text, j + 1)
        if text[end - 2:end] == "))":
            return Arith(text[j + 2:end - 2], quoted), end
    if j < n and text[j] == "(":
        end = _scan_paren(text, j + 1)
        return Sub(text[j + 1:end - 1], quoted), end
    if j < n and text[j] == "{":
        end = text.find("}", j + 1)
        if end < 0:
            raise ParseError("missing '}'")
        name = text[j + 1:end]
        if not (name in _SPECIAL_VARS or name.replace("_", "a").isalnum()) or not name:
            raise ParseError(f"${{{name}}}: bad substitution")
        return Var(name, quoted), end + 1
    if j < n and text[j] in _SPECIAL_VARS:
        return Var(text[j], quoted), j + 1
    if j < n and (text[j].isalpha() or text[j] == "_"):
        k = j
        while k < n and (text[k].isalnum() or text[k] == "_"):
            k += 1
        return Var(text[j:k], quoted), k
    return Lit("$", quoted), j


def tokenize(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    parts: list[Part] = []
    started = False  # a word is in progress (even an empty quoted one)
    i, n = 0, len(text)

    def lit(s: str, quoted: bool) -> None:
        if parts and isinstance(parts[-1], Lit) and parts[-1].quoted == quoted:
            parts[-1] = Lit(parts[-1].text + s, quoted)
        else:
            parts.append(Lit(s, quoted))

    def end_word() -> None:
        nonlocal parts, started
        if started:
            toks.append(_Tok("word", Word(tuple(parts))))
        parts, started = [], False

    while i < n:
        ch = text[i]
        if ch in " \t\r":
            end_word()
            i += 1
            continue
        if ch == "#" and not started:
            while i < n and text[i] != "\n":
                i += 1
            continue
        if ch == "\\":
            if i + 1 < n and text[i + 1] == "\n":
                i += 2
                continue
            started = True
            lit(text[i + 1] if i + 1 < n else "\\", i + 1 < n)
            i += 2
            continue
        if ch == "'":
            end = text.find("'", i + 1)
            if end < 0:
                raise ParseError("no closing quote")
            started = True
            lit(text[i + 1:end], True)
            i = end + 1
            continue
        if ch == '"':
            started = True
            end = _scan_dquote(text, i + 1)
            _dquote_parts(text[i + 1:end - 1], lit, parts)
            i = end
            continue
        if ch == "$":
            part, i = _read_dollar(text, i, False)
            started = True
            if isinstance(part, Lit):
                lit(part.text, False)
            else:
                parts.append(part)
            continue
        if ch == "`":
            src, i = _scan_backtick(text, i + 1)
            started = True
            parts.append(Sub(src, False))
            continue
        if ch not in _OP_START:
            run = _PLAIN_RUN.match(text, i)
            started = True
            if run is None:          # '#' inside a word, or other single literal character
                lit(ch, False)
                i += 1
            else:
                lit(run.group(), False)
                i = run.end()
            continue
        op = next((o for o in _OPS if text.startswith(o, i)), None)
        if op is not None:
            fd = None
            if op[0] in "<>" and started and len(parts) == 1 and isinstance(parts[0], Lit) \
                    and not parts[0].quoted and parts[0].text.isascii() and parts[0].text.isdigit():
                fd = int(parts[0].text)
                parts, started = [], False
            end_word()
            if op == "<<":
                raise ParseError("here documents are not supported")
            if op[0] in "<>":
                toks.append(_Tok("redir", op, fd))
            else:
                toks.append(_Tok("op", op))
            i += len(op)
            continue
        started = True
        lit(ch, False)
        i += 1
    end_word()
    return toks


def _dquote_parts(body: str, lit, parts: list[Part]) -> None:
    i, n = 0, len(body)
    if n == 0:
        lit("", True)
    while i < n:
        ch = body[i]
        if ch == "\\" and i + 1 < n and body[i + 1] in '$`"\\\n':
            if body[i + 1] != "\n":
                lit(body[i + 1], True)
            i += 2
            continue
        if ch == "$":
            part, i = _read_dollar(body, i, True)
            if isinstance(part, Lit):
                lit(part.text, True)
            else:
                parts.append(part)
            continue
        if ch == "`":
            src, i = _scan_backtick(body, i + 1)
            parts.append(Sub(src, True))
            continue
        run = _DQUOTE_RUN.match(body, i)
        lit(run.group() if run else ch, True)
        i = run.end() if run else i + 1


# --- parser -----------------------------------------------------------------------------------

_RESERVED_START = {"{", "}", "!"}


class _Parser:
    def __init__(self, toks: list[_Tok]) -> None:
        self.toks = toks
        self.pos = 0

    def peek(self) -> _Tok | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def is_op(self, *ops: str) -> bool:
        t = self.peek()
        return t is not None and t.kind == "op" and t.value in ops

    def is_word(self, text: str) -> bool:
        t = self.peek()
        return t is not None and t.kind == "word" and t.value.unquoted_literal == text

    def unexpected(self) -> ParseError:
        t = self.peek()
        if t is None:
            return ParseError("syntax error: unexpected EOF")
        shown = {"\n": "newline"}.get(str(t.value), t.value) if t.kind != "word" else \
            (t.value.literal or "word")
        return ParseError(f"syntax error: '{shown}' unexpected")

    def script(self, closers: tuple[str, ...] = ()) -> Script:
        items: list[AndOr] = []
        while True:
            while self.is_op("\n", ";"):
                if self.is_op(";") and not items:
                    raise self.unexpected()
                self.pos += 1
            t = self.peek()
            if t is None or (t.kind == "op" and t.value == ")" and ")" in closers) or \
                    (t.kind == "word" and "}" in closers and self.is_word("}")):
                return Script(items)
            items.append(self.and_or())
            if self.is_op(";", "&", "\n"):
                self.pos += 1
                continue
            t = self.peek()
            if t is None or (t.kind == "op" and t.value == ")" and ")" in closers) or \
                    ("}" in closers and self.is_word("}")):
                return Script(items)
            raise self.unexpected()

    def and_or(self) -> AndOr:
        node = AndOr(self.pipeline())
        while self.is_op("&&", "||"):
            op = self.peek().value
            self.pos += 1
            while self.is_op("\n"):
                self.pos += 1
            node.rest.append((op, self.pipeline()))
        return node

    def pipeline(self) -> Pipeline:
        negate = False
        if self.is_word("!"):
            negate = True
            self.pos += 1
        cmds = [self.command()]
        while self.is_op("|"):
            self.pos += 1
            while self.is_op("\n"):
                self.pos += 1
            cmds.append(self.command())
        return Pipeline(cmds, negate)

    def redirect(self) -> Redirect:
        t = self.toks[self.pos]
        self.pos += 1
        target = self.peek()
        if target is None or target.kind != "word":
            raise self.unexpected()
        self.pos += 1
        op = str(t.value)
        fd = t.fd if t.fd is not None else (0 if op[0] == "<" else 1)
        return Redirect(fd, op, target.value)

    def group(self, close: str, is_close: Callable[[str], bool], *, subshell: bool) -> Group:
        """``( list )`` or ``{ list; }`` with trailing redirections; the opener is current."""
        self.pos += 1
        body = self.script((close,))
        if not is_close(close):
            raise self.unexpected()
        self.pos += 1
        group = Group(body, subshell=subshell)
        while self.peek() is not None and self.peek().kind == "redir":
            group.redirects.append(self.redirect())
        return group

    def command(self) -> SimpleCommand | Group:
        if self.is_op("("):
            return self.group(")", self.is_op, subshell=True)
        if self.is_word("{"):
            return self.group("}", self.is_word, subshell=False)
        cmd = SimpleCommand()
        while True:
            t = self.peek()
            if t is None or t.kind == "op":
                break
            if t.kind == "redir":
                cmd.redirects.append(self.redirect())
                continue
            word: Word = t.value
            if not cmd.words and _is_assignment(word):
                first = word.parts[0]
                name, _, rest = first.text.partition("=")  # type: ignore[union-attr]
                value_parts = ((Lit(rest, False),) if rest else ()) + word.parts[1:]
                cmd.assigns.append((name, Word(value_parts)))
            else:
                cmd.words.append(word)
            self.pos += 1
        if not cmd.words and not cmd.assigns and not cmd.redirects:
            raise self.unexpected()
        return cmd


def _is_assignment(word: Word) -> bool:
    if not word.parts or not isinstance(word.parts[0], Lit) or word.parts[0].quoted:
        return False
    name, eq, _ = word.parts[0].text.partition("=")
    return bool(eq) and bool(name) and (name[0].isalpha() or name[0] == "_") and \
        name.replace("_", "a").isalnum()


def parse(text: str) -> Script:
    """Parse one command line (or a script) into a tree; raises ParseError."""
    parser = _Parser(tokenize(text))
    script = parser.script()
    if parser.peek() is not None:
        raise parser.unexpected()
    return script
