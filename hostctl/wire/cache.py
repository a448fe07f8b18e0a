"""Start-up for many identifiers: the patterns and the compiled hyperscan database, cached on
disk by content.

A lab of 100 handsets has about 1,000 identifiers, some 430,000 patterns: generating them takes
4-5 s and hyperscan compiles them in about 30 s (1.4 GB peak), while loading both back takes
about a second. The key is the SHA-256 of what decides them: the sources of the modules that make
patterns and expressions (``identifiers``, ``model.protections``, ``scan``), the hyperscan
version, and the identifiers (kind, value, label) with the country codes. A different key is a
new entry; nothing is ever reused for other patterns.

Where: ``$HOSTCTL_CACHE`` or ``$XDG_CACHE_HOME/hostctl`` (default ``~/.cache/hostctl``), under
``wire/``: the directory is 0700 and the files 0600, since the patterns hold the identifiers. A
damaged or unreadable entry is ignored (and rebuilt), never trusted: the pattern table is checked
against the identifiers it names, and a database that does not load is compiled again.
"""

from __future__ import annotations

import hashlib
import marshal
import os
from collections.abc import Sequence
from pathlib import Path

from hostctl.model import protections as _protections
from hostctl.wire import identifiers as _identifiers
from hostctl.wire import scan as _scan
from hostctl.wire.identifiers import Identifier, Pattern, patterns_for
from hostctl.wire.scan import ScanError, Scanner

__all__ = ["cache_dir", "cached_scanner"]

_FORMAT = b"hostctl-wire-cache/1"


def cache_dir() -> Path:
    root = os.environ.get("HOSTCTL_CACHE")
    if root:
        return Path(root) / "wire"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hostctl" / "wire"


def _key(idents: Sequence[Identifier], country_codes: Sequence[str] | None) -> str:
    h = hashlib.sha256(_FORMAT)
    for mod in (_identifiers, _protections, _scan):
        if mod.__file__ is None:
            raise RuntimeError(f"{mod.__name__} has no source file to key the cache on")
        h.update(Path(mod.__file__).read_bytes())
    hs = getattr(_scan, "_hs", None)
    h.update(repr(getattr(hs, "__version__", None)).encode())
    h.update(repr([(i.kind, i.value, i.label) for i in idents]).encode())
    h.update(repr(list(country_codes or ())).encode())
    return h.hexdigest()


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _load_patterns(path: Path, idents: Sequence[Identifier]) -> list[Pattern] | None:
    try:
        rows = marshal.loads(path.read_bytes())
    except (OSError, ValueError, EOFError, TypeError):
        return None
    try:
        return [Pattern(i, idents[r[0]], r[1], r[2], r[3], r[4], r[5], r[6]) for i, r in enumerate(rows)]
    except (IndexError, TypeError):
        return None


def cached_scanner(
    idents: Sequence[Identifier],
    *,
    engine: str = "auto",
    country_codes: Sequence[str] | None = None,
    directory: Path | None = None,
) -> tuple[list[Pattern], Scanner, str]:
    """(patterns, scanner, how) for ``idents``; ``how`` is "cached", "built" (and stored) or
    "built, not stored" (the cache directory is not writable)."""
    directory = cache_dir() if directory is None else directory
    key = _key(idents, country_codes)
    pat_path, db_path = directory / f"{key}.patterns", directory / f"{key}.hsdb"
    patterns = _load_patterns(pat_path, idents) if pat_path.exists() else None
    if patterns is not None:
        database = None
        if engine != "python" and db_path.exists():
            try:
                database = db_path.read_bytes()
            except OSError:
                database = None
        try:
            scanner = Scanner(patterns, engine=engine, database=database)
            if database is not None or scanner.engine_name == "python":
                return patterns, scanner, "cached"
            _store(directory, db_path, scanner.serialized())
            return patterns, scanner, "cached patterns, database built"
        except ScanError:
            pass  # a damaged database: compile again
    patterns = patterns_for(idents, country_codes=country_codes)
    scanner = Scanner(patterns, engine=engine)
    index = {ident: k for k, ident in enumerate(idents)}
    rows = [(index[p.ident], p.form, p.data, p.forms, p.variant, p.text, p.steps) for p in patterns]
    stored = _store(directory, pat_path, marshal.dumps(rows))
    db = scanner.serialized()
    if db is not None:
        stored = _store(directory, db_path, db) and stored
    return patterns, scanner, "built" if stored else "built, not stored"


def _store(directory: Path, path: Path, data: bytes | None) -> bool:
    if data is None:
        return True
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_private(path, data)
        return True
    except OSError:
        return False
