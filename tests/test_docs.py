"""The documentation against the code: every ``hostctl ...`` command line in README.md and docs/
uses only options the command's parser has, and every option of every command appears in at
least one documented command line of that command. Also: the user docs name no internal issue
numbers and link only to files that exist, and the mkdocs site builds with no warning.
"""

from __future__ import annotations

import argparse
import io
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hostctl.cli import Environment, build_parser

REPO = Path(__file__).resolve().parent.parent
PAGES = sorted((REPO / "docs").glob("*.md")) + [REPO / "README.md"]
GLOBAL_OPTIONS = {"--adb": True, "--version": False}  # before the command; True: takes a value
IGNORED = {"-h", "--help"}
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*|-[a-zA-Z])(?![\w])")


def _commands() -> tuple[dict[tuple[str, ...], set[str]], dict[tuple[str, ...], list[tuple[str, ...]]]]:
    """Every command path (("emulator", "up"), ("audit",) ...) with its option strings, and with
    its options grouped by argument (``("-s", "--serial")``: either spelling documents it)."""
    parser = build_parser(Environment(stdout=io.StringIO(), stderr=io.StringIO(), vars={}))
    found: dict[tuple[str, ...], set[str]] = {}
    grouped: dict[tuple[str, ...], list[tuple[str, ...]]] = {}

    def walk(p: argparse.ArgumentParser, path: tuple[str, ...]) -> None:
        found[path] = {o for a in p._actions for o in a.option_strings} - IGNORED
        grouped[path] = [
            tuple(a.option_strings) for a in p._actions if a.option_strings and not set(a.option_strings) & IGNORED
        ]
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    walk(child, (*path, name))

    walk(parser, ())
    return found, grouped


COMMANDS, ARGUMENTS = _commands()
LEAVES = {
    path for path in COMMANDS if path and not any(len(o) > len(path) and o[: len(path)] == path for o in COMMANDS)
}


def _spans(text: str) -> list[str]:
    """Code the docs show: fenced blocks (continuation lines joined) and inline code spans."""
    spans: list[str] = []
    for block in re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M):
        joined = re.sub(r"\n[ \t]+", " ", block)  # a synopsis continued on indented lines
        spans += joined.splitlines()
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.S | re.M)
    spans += re.findall(r"``\s?(.+?)\s?``", prose)
    prose = re.sub(r"``.+?``", "", prose)
    spans += re.findall(r"`([^`\n]+)`", prose)
    return spans


def _usages(span: str) -> list[tuple[tuple[str, ...], str]]:
    """(command path, the text of its options) for each `hostctl ...` command line in a span."""
    out = []
    for m in re.finditer(r"(?:^|[\s$;(&|])hostctl((?:\s+\S+)+)", span.replace("\\|", "|")):
        words = m.group(1).split()
        while words and words[0] in GLOBAL_OPTIONS:  # hostctl --adb HOST:PORT devices
            takes_value = GLOBAL_OPTIONS[words.pop(0)]
            if takes_value and words:
                words.pop(0)
        if not words or (words[0],) not in COMMANDS:
            continue  # "hostctl: ..." messages, prose
        path: tuple[str, ...] = (words.pop(0),)
        while words and any(len(p) > len(path) and p[: len(path)] == path for p in COMMANDS):
            alternatives = [w for w in words[0].strip("[]()").split("|") if (*path, w) in COMMANDS]
            if not alternatives:
                break
            words.pop(0)
            rest = " ".join(words)
            # `relay on|off ...`: the options hold for each alternative
            out += [((*path, alt), rest) for alt in alternatives[1:]]
            path = (*path, alternatives[0])
        rest = " ".join(words)
        if path == ("shell",) and " -- " in f" {rest} ":
            rest = rest.split(" -- ", 1)[0]  # the device command's own options
        out.append((path, rest))
    return out


def _documented() -> dict[tuple[str, ...], dict[str, list[str]]]:
    """Command path -> option -> where it was documented (page: the command line)."""
    doc: dict[tuple[str, ...], dict[str, list[str]]] = {}
    for page in PAGES:
        for span in _spans(page.read_text()):
            for path, rest in _usages(span):
                entry = doc.setdefault(path, {})
                for option in OPTION.findall(rest):
                    entry.setdefault(option, []).append(
                        f"{page.relative_to(REPO)}: hostctl {' '.join(path)} {rest}"[:160]
                    )
    return doc


DOCUMENTED = _documented()


def test_the_docs_show_command_lines_at_all() -> None:
    assert len(DOCUMENTED) > 20 and ("audit",) in DOCUMENTED and ("emulator", "up") in DOCUMENTED


def test_every_option_in_the_docs_exists_in_help() -> None:
    unknown = [
        f"{where}  <- {option} is not an option of `hostctl {' '.join(path)}`"
        for path, options in DOCUMENTED.items()
        for option, places in options.items()
        if option not in COMMANDS[path]
        for where in places[:1]
    ]
    assert not unknown, "\n".join(unknown)


@pytest.mark.parametrize("path", sorted(LEAVES), ids=" ".join)
def test_every_option_in_help_is_documented(path: tuple[str, ...]) -> None:
    documented = set(DOCUMENTED.get(path, {}))
    missing = sorted("/".join(spellings) for spellings in ARGUMENTS[path] if not set(spellings) & documented)
    assert not missing, (
        f"`hostctl {' '.join(path)}` options missing from every documented command line "
        f"of it (docs/cli.md's synopsis is the place): {missing}"
    )


def test_no_internal_issue_numbers_in_user_docs() -> None:
    hits = [
        f"{p.relative_to(REPO)}:{n}: {line.strip()}"
        for p in PAGES
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if re.search(r"\bissues? #?\d+\b|MISSION\.md", line)
    ]
    assert not hits, "\n".join(hits)


def test_links_point_at_files_that_exist() -> None:
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if re.match(r"[a-z]+://|mailto:", target):
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(REPO)}: {target}")
    assert not broken, broken


def test_exit_codes_in_the_docs_are_the_cli_ones() -> None:
    from hostctl.cli import ExitStatus

    table = (REPO / "docs" / "cli.md").read_text().split("## Exit codes", 1)[1]
    codes = {int(c) for c in re.findall(r"^\| (\d+) \|", table, flags=re.M)}
    assert codes == {int(s) for s in ExitStatus}


@pytest.mark.skipif(
    shutil.which("mkdocs") is None and not (Path(sys.prefix) / "bin" / "mkdocs").exists(),
    reason="mkdocs is not installed (pip install -e '.[docs]')",
)
def test_the_site_builds_strictly(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "WARNING" not in r.stderr
