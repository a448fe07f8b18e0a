"""Evidence of a run: one folder per run with a manifest of every file's SHA-256, and redaction.

Layout (Mobly-like)::

    <out>/<testbed>/
        latest -> 20250131T091502Z         # symlink to the newest run, replaced atomically
        20250131T091502Z/                  # one run (UTC start time; -2, -3... if taken)
            manifest.json                  # every file below, with size and SHA-256
            report.json, junit.xml, ...    # run-wide files
            handsets/<label>/...           # one folder per handset (pcapng, agent JSONL, logcat...)

``manifest.json`` (``schema`` ``hostctl.manifest``, ``schema_version`` 1)::

    {"schema": "hostctl.manifest", "schema_version": 1,
     "run_id": "rack-a/20250131T091502Z", "testbed": "rack-a",
     "started": "2025-01-31T09:15:02Z", "updated": "2025-01-31T09:15:20Z",
     "status": "running" | "complete" | "degraded" | "interrupted" | "failed",
     "sequence": 3,                        # how many times it was written
     "handsets": ["hs1", "hs2"],
     "files": [{"path": "handsets/hs1/capture.pcapng", "size": 1234, "sha256": "...",
                "kind": "pcapng", "handset": "hs1", "complete": true}, ...],   # sorted by path
     "missing": ["handsets/hs2/logcat.txt"],   # recorded, but not there when written
     ...}                                  # extra keys given to write_manifest

It is written atomically (temp file + rename) every time :meth:`RunFolder.write_manifest` is
called, so after each phase, and on Ctrl-C, the folder on disk is consistent: every file listed
has the recorded hash. A file still open through :meth:`RunFolder.open` is flushed and listed with
``complete: false``. :func:`verify` re-hashes a run folder and reports missing, changed and
unlisted files.

:class:`Redactor` replaces identifiers (numbers, IMEIs, IMSIs, ICCIDs) and their common forms in
text with a stable reference ``[imei:<first 8 hex digits of the SHA-256 of the value>]``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any

from .errors import HostctlError
from .model.identity import CC1, CC2

__all__ = [
    "EvidenceError",
    "FileRecord",
    "MANIFEST",
    "RunFolder",
    "Redactor",
    "SCHEMA",
    "SCHEMA_VERSION",
    "Verification",
    "verify",
]

SCHEMA = "hostctl.manifest"
SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
LATEST = "latest"
HANDSETS = "handsets"
STATUSES = ("running", "complete", "degraded", "interrupted", "failed")  # degraded: complete, but the
# host's tooling broke (see the report)

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_TMP_PREFIX = ".tmp-"
_KINDS = {
    ".pcapng": "pcapng",
    ".pcap": "pcap",
    ".jsonl": "jsonl",
    ".json": "json",
    ".log": "log",
    ".txt": "text",
    ".xml": "xml",
    ".html": "html",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".csv": "csv",
}


class EvidenceError(HostctlError):
    """A run folder could not be made, written or read; ``path`` says where."""

    def __init__(self, message: str, *, path: str | os.PathLike[str] | None = None) -> None:
        self.path = None if path is None else str(path)
        super().__init__(message)


def _utc(clock: Callable[[], datetime]) -> datetime:
    now = clock()
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S") + (f".{t.microsecond // 1000:03d}" if t.microsecond else "") + "Z"


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


PRIVATE_DIR = 0o700  # a run folder holds identifiers (IMEI, IMSI, numbers, raw captures): owner only
PRIVATE_FILE = 0o600


def _private_opener(path: str, flags: int) -> int:
    return os.open(path, flags, PRIVATE_FILE)


def make_private_dirs(path: Path) -> None:
    """``path`` and its missing parents, each made 0700 (``mkdir(parents=True)`` would give the
    parents the umask's mode)."""
    missing = []
    p = Path(path)
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):
            d.mkdir(mode=PRIVATE_DIR)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file and one rename (a reader sees the old file or
    the new one), owner-only (0600). The temp name starts with ``.tmp-`` (ignored by verify)."""
    path = Path(path)
    tmp = path.with_name(f"{_TMP_PREFIX}{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        with open(tmp, "xb", opener=_private_opener) as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


_atomic_write = atomic_write


@dataclass
class FileRecord:
    """One evidence file of a run, as the manifest lists it."""

    path: str  # relative to the run folder, '/'-separated
    kind: str
    handset: str | None = None
    complete: bool = True
    size: int | None = None
    sha256: str | None = None
    _stamp: tuple[int, int, int] | None = field(default=None, repr=False)  # (size, mtime_ns, inode) hashed

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "size": self.size,
            "sha256": self.sha256,
            "kind": self.kind,
            "handset": self.handset,
            "complete": self.complete,
        }


class RunFolder:
    """One run's evidence folder. Thread-safe: capture threads may record files while the main
    thread writes the manifest.

    >>> with RunFolder.create("out", "rack-a", handsets=["hs1"]) as run:   # doctest: +SKIP
    ...     with run.open("handsets/hs1/logcat.txt", "w") as fh:
    ...         fh.write(logcat)
    ...     run.write_manifest()                  # after each phase
    ...                                           # on leaving: status complete/failed/interrupted
    """

    def __init__(
        self, path: Path, *, testbed: str, run_id: str, started: datetime, clock: Callable[[], datetime]
    ) -> None:
        self.path = path
        self.testbed = testbed
        self.run_id = run_id
        self.started = started
        self.status = "running"
        self.handsets: list[str] = []
        self.meta: dict[str, Any] = {}
        self._clock = clock
        self._files: dict[str, FileRecord] = {}
        self._open: dict[str, IO[Any]] = {}
        self._sequence = 0
        self._lock = threading.RLock()

    # -- making one ---------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        out_dir: str | os.PathLike[str],
        testbed_name: str,
        *,
        clock: Callable[[], datetime] | None = None,
        handsets: Iterable[str] = (),
    ) -> RunFolder:
        """Make ``<out_dir>/<testbed_name>/<UTC start time>/`` (with ``-2``, ``-3``... when a run
        started in the same second), its ``handsets/<label>/`` folders, a first manifest, and
        point ``<out_dir>/<testbed_name>/latest`` at it."""
        clock = clock or (lambda: datetime.now(UTC))
        if not _SAFE_NAME.fullmatch(testbed_name):
            raise EvidenceError(f"testbed name {testbed_name!r} cannot name a folder")
        started = _utc(clock)
        base = Path(out_dir) / testbed_name
        stamp = started.strftime("%Y%m%dT%H%M%SZ")
        try:
            make_private_dirs(base)
            for n in range(1, 1000):
                name = stamp if n == 1 else f"{stamp}-{n}"
                try:
                    (base / name).mkdir(mode=PRIVATE_DIR)
                    break
                except FileExistsError:
                    continue
            else:
                raise EvidenceError(f"no free run folder name for {stamp} in {base}", path=base)
        except OSError as exc:
            raise EvidenceError(f"cannot make the run folder in {base}: {exc}", path=base) from None
        run = cls(base / name, testbed=testbed_name, run_id=f"{testbed_name}/{name}", started=started, clock=clock)
        for label in handsets:
            run.handset_dir(label)
        run.write_manifest()
        run._point_latest()
        return run

    @classmethod
    def resume(cls, run_dir: str | os.PathLike[str], *, clock: Callable[[], datetime] | None = None) -> RunFolder:
        """An existing run folder, with the files its manifest lists (to add to it later)."""
        path = Path(run_dir)
        doc = _read_manifest(path)
        started = datetime.fromisoformat(doc["started"].replace("Z", "+00:00"))
        run = cls(
            path,
            testbed=doc["testbed"],
            run_id=doc["run_id"],
            started=started,
            clock=clock or (lambda: datetime.now(UTC)),
        )
        run._sequence = int(doc.get("sequence", 0))
        run.handsets = list(doc.get("handsets", []))
        for f in doc.get("files", []):
            rec = FileRecord(
                f["path"],
                f.get("kind", "file"),
                f.get("handset"),
                bool(f.get("complete", True)),
                f.get("size"),
                f.get("sha256"),
            )
            run._files[rec.path] = rec
        for p in doc.get("missing", []):
            run._files.setdefault(p, FileRecord(p, _kind_of(p), _handset_of(p)))
        return run

    def _point_latest(self) -> None:
        """``latest`` -> this run, swapped in with one rename (a reader sees the old or the new)."""
        link = self.path.parent / LATEST
        tmp = self.path.parent / f"{_TMP_PREFIX}{LATEST}.{os.getpid()}.{secrets.token_hex(4)}"
        try:
            os.symlink(self.path.name, tmp, target_is_directory=True)
            os.replace(tmp, link)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise EvidenceError(f"cannot point {link} at {self.path.name}: {exc}", path=link) from None

    # -- paths ------------------------------------------------------------------------------
    def handset_dir(self, label: str) -> Path:
        """``handsets/<label>/`` (made on first use; the label joins the manifest's list)."""
        if not _SAFE_NAME.fullmatch(label):
            raise EvidenceError(f"handset label {label!r} cannot name a folder")
        path = self.path / HANDSETS / label
        make_private_dirs(path)
        with self._lock:
            if label not in self.handsets:
                self.handsets.append(label)
        return path

    def _rel(self, rel_path: str | os.PathLike[str]) -> str:
        p = Path(rel_path)
        if p.is_absolute():
            try:
                p = p.resolve().relative_to(self.path.resolve())
            except ValueError:
                raise EvidenceError(f"{rel_path} is outside the run folder {self.path}", path=rel_path) from None
        parts = PurePosixPath(p.as_posix()).parts
        if (
            not parts
            or any(part in ("..", ".", "") for part in parts)
            or parts[0] in (MANIFEST, LATEST)
            or any(part.startswith(_TMP_PREFIX) for part in parts)
        ):
            raise EvidenceError(f"{str(rel_path)!r} is not a usable evidence path in the run folder", path=rel_path)
        return "/".join(parts)

    def path_for(self, rel_path: str | os.PathLike[str]) -> Path:
        """The absolute path of ``rel_path`` in the run (its folder made); records nothing."""
        path = self.path / self._rel(rel_path)
        make_private_dirs(path.parent)
        return path

    # -- recording files ----------------------------------------------------------------------
    def add_file(
        self,
        rel_path: str | os.PathLike[str],
        data: bytes | str | None = None,
        *,
        kind: str | None = None,
        handset: str | None = None,
    ) -> Path:
        """Record a file of the run. With ``data`` (bytes, or text written as UTF-8) the file is
        written first, atomically; without, it is a file something else writes (a console
        recorder, a capture) and is hashed when the manifest is written. ``kind`` defaults from
        the suffix, ``handset`` from a ``handsets/<label>/`` path."""
        rel = self._rel(rel_path)
        path = self.path_for(rel)
        if data is not None:
            try:
                _atomic_write(path, data.encode("utf-8") if isinstance(data, str) else bytes(data))
            except OSError as exc:
                raise EvidenceError(f"cannot write {path}: {exc}", path=path) from None
        self._record(rel, kind, handset, complete=True)
        return path

    record = add_file

    def copy_file(
        self,
        source: str | os.PathLike[str],
        rel_path: str | os.PathLike[str],
        *,
        kind: str | None = None,
        handset: str | None = None,
    ) -> Path:
        """Copy a file from elsewhere (a testbed file, a capture written outside) into the run."""
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise EvidenceError(f"cannot read {source}: {exc}", path=source) from None
        return self.add_file(rel_path, data, kind=kind, handset=handset)

    @contextlib.contextmanager
    def open(
        self,
        rel_path: str | os.PathLike[str],
        mode: str = "wb",
        *,
        kind: str | None = None,
        handset: str | None = None,
        encoding: str = "utf-8",
    ) -> Iterator[IO[Any]]:
        """A file of the run opened for writing (``wb``, ``w``, ``ab``, ``a``, ``xb``, ``x``),
        recorded at once: a manifest written while it is open lists it (flushed) as incomplete,
        one written after it closed cleanly as complete."""
        if mode not in ("wb", "w", "ab", "a", "xb", "x"):
            raise ValueError(f"mode {mode!r}: evidence files are opened for writing only")
        rel = self._rel(rel_path)
        path = self.path_for(rel)
        try:
            # not a with-block: the file is closed in the finally below, under the lock
            fh = open(path, mode, encoding=None if "b" in mode else encoding, opener=_private_opener)  # noqa: SIM115
        except OSError as exc:
            raise EvidenceError(f"cannot open {path}: {exc}", path=path) from None
        self._record(rel, kind, handset, complete=False)
        with self._lock:
            self._open[rel] = fh
        ok = False
        try:
            yield fh
            ok = True
        finally:
            with self._lock:
                self._open.pop(rel, None)
                fh.close()
                self._files[rel].complete = ok

    def _record(self, rel: str, kind: str | None, handset: str | None, *, complete: bool) -> None:
        handset = handset or _handset_of(rel)
        if handset is not None:
            self.handset_dir(handset)
        with self._lock:
            rec = self._files.get(rel)
            if rec is None:
                self._files[rel] = FileRecord(rel, kind or _kind_of(rel), handset, complete)
            else:
                rec.kind, rec.handset, rec.complete = kind or rec.kind, handset or rec.handset, complete

    @property
    def files(self) -> list[FileRecord]:
        with self._lock:
            return sorted(self._files.values(), key=lambda r: r.path)

    # -- the manifest -------------------------------------------------------------------------
    def _refresh(self, rec: FileRecord) -> bool:
        """Hash ``rec`` unless its size, mtime and inode are what was hashed (large captures are
        not re-read after every phase); False when missing. verify() always re-hashes."""
        path = self.path / rec.path
        fh = self._open.get(rec.path)
        if fh is not None:
            with contextlib.suppress(OSError, ValueError):
                fh.flush()
        try:
            st = path.stat()
        except FileNotFoundError:
            rec.size = rec.sha256 = rec._stamp = None
            return False
        if st.st_mode & 0o077:  # written by another tool (a capture, the tracer) under a looser umask
            with contextlib.suppress(OSError):
                os.chmod(path, PRIVATE_FILE)
        for parent in path.relative_to(self.path).parents:  # and the folders it made for it
            d = self.path / parent
            with contextlib.suppress(OSError):
                if d.stat().st_mode & 0o077:
                    os.chmod(d, PRIVATE_DIR)
        stamp = (st.st_size, st.st_mtime_ns, st.st_ino)
        if rec._stamp != stamp or rec.sha256 is None:
            rec.sha256 = _sha256(path)
            rec.size, rec._stamp = st.st_size, stamp
        return True

    def manifest(self, **meta: Any) -> dict[str, Any]:
        """The manifest document as it would be written now."""
        with self._lock:
            self.meta.update(meta)
            files, missing = [], []
            for rec in sorted(self._files.values(), key=lambda r: r.path):
                if self._refresh(rec):
                    files.append(rec.to_json())
                else:
                    missing.append(rec.path)
            doc = {
                "schema": SCHEMA,
                "schema_version": SCHEMA_VERSION,
                "run_id": self.run_id,
                "testbed": self.testbed,
                "started": _iso(self.started),
                "updated": _iso(_utc(self._clock)),
                "status": self.status,
                "sequence": self._sequence + 1,
                "handsets": list(self.handsets),
                "files": files,
                "missing": missing,
            }
            for key, value in self.meta.items():
                doc.setdefault(key, value)
            return doc

    def write_manifest(self, status: str | None = None, **meta: Any) -> Path:
        """Write ``manifest.json`` atomically (call it after each phase, and on Ctrl-C). ``status``
        (``running``, ``complete``, ``interrupted``, ``failed``) stays until changed; ``meta``
        keys join the document (and stay for later writes)."""
        if status is not None:
            if status not in STATUSES:
                raise ValueError(f"status {status!r} is not one of {', '.join(STATUSES)}")
            self.status = status
        with self._lock:
            doc = self.manifest(**meta)
            path = self.path / MANIFEST
            try:
                _atomic_write(path, (json.dumps(doc, indent=2) + "\n").encode())
            except OSError as exc:
                raise EvidenceError(f"cannot write {path}: {exc}", path=path) from None
            self._sequence = doc["sequence"]
            return path

    def close(self, status: str = "complete") -> Path:
        return self.write_manifest(status)

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        """The last manifest: ``complete``, ``interrupted`` (Ctrl-C) or ``failed`` (an exception,
        named in ``error``). The exception itself goes on."""
        if kind is None:
            self.close("complete")
        elif issubclass(kind, KeyboardInterrupt):
            self.close("interrupted")
        else:
            self.write_manifest("failed", error=f"{kind.__name__}: {exc}")


def _handset_of(rel: str) -> str | None:
    parts = rel.split("/")
    return parts[1] if len(parts) > 2 and parts[0] == HANDSETS else None


def _kind_of(rel: str) -> str:
    name = rel.rsplit("/", 1)[-1].lower()
    for suffix, kind in _KINDS.items():
        if name.endswith(suffix):
            return kind
    return "file"


# --- verification ------------------------------------------------------------------------------


@dataclass
class Verification:
    """What :func:`verify` found. ``ok`` when every listed file is there with its hash."""

    run_dir: str
    status: str
    checked: int = 0
    missing: list[str] = field(default_factory=list)  # listed (or listed as missing), not on disk
    changed: list[str] = field(default_factory=list)  # on disk with another size or hash
    unlisted: list[str] = field(default_factory=list)  # on disk, no hash in the manifest (not ok)

    @property
    def ok(self) -> bool:
        """Every listed file there with its hash, and no file the manifest does not list (a file
        added afterwards, or written by a run that crashed before hashing it, is not evidence)."""
        return not self.missing and not self.changed and not self.unlisted

    def to_json(self) -> dict[str, Any]:
        return {
            "run_dir": self.run_dir,
            "status": self.status,
            "ok": self.ok,
            "checked": self.checked,
            "missing": self.missing,
            "changed": self.changed,
            "unlisted": self.unlisted,
        }


def _read_manifest(run_dir: Path) -> dict[str, Any]:
    path = run_dir / MANIFEST
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EvidenceError(f"{run_dir} has no {MANIFEST}", path=path) from None
    except (OSError, ValueError) as exc:
        raise EvidenceError(f"cannot read {path}: {exc}", path=path) from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA or not isinstance(doc.get("files"), list):
        raise EvidenceError(f"{path} is not a hostctl manifest", path=path)
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise EvidenceError(f"{path}: schema version {doc.get('schema_version')!r} is not {SCHEMA_VERSION}", path=path)
    return doc


def verify(run_dir: str | os.PathLike[str]) -> Verification:
    """Re-hash every file ``manifest.json`` lists; report missing, changed and unlisted files."""
    root = Path(run_dir)
    doc = _read_manifest(root)
    result = Verification(str(root), str(doc.get("status")))
    listed = set()
    for entry in doc["files"]:
        rel = str(entry["path"])
        listed.add(rel)
        result.checked += 1
        path = root / rel
        if not path.is_file():
            result.missing.append(rel)
        elif path.stat().st_size != entry.get("size") or _sha256(path) != entry.get("sha256"):
            result.changed.append(rel)
    # recorded but absent when the manifest was written: still missing, or there now unhashed
    result.missing.extend(str(p) for p in doc.get("missing", []) if not (root / str(p)).is_file())
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if (
            path.is_file()
            and not path.is_symlink()
            and rel != MANIFEST
            and rel not in listed
            and not path.name.startswith(_TMP_PREFIX)
        ):
            result.unlisted.append(rel)
    return result


# --- redaction ---------------------------------------------------------------------------------

_SEP = r"[\s.\-]?"  # what people and tools put between digits: "+86 138-0000-0001"
_KIND_ALIASES = {"number": "msisdn", "phone": "msisdn", "msisdn": "msisdn"}
_MIN_FORM = 6  # shorter forms would hit unrelated digits


def country_code(e164: str) -> str:
    """The country calling code of an E.164 number (``+8613800000001`` -> ``86``)."""
    digits = e164.lstrip("+")
    if digits[:1] in CC1:
        return digits[:1]
    return digits[:2] if digits[:2] in CC2 else digits[:3]


def _swap_nibbles(digits: str) -> str:
    """Semi-octets as SIM files and SMS PDUs store them: ``8613`` -> ``6831``, odd length padded F."""
    if len(digits) % 2:
        digits += "F"
    return "".join(digits[i + 1] + digits[i] for i in range(0, len(digits), 2))


def _encodings(value: str) -> set[str]:
    """Hex digests and Base64 of a value: a report quoting what was found on the wire shows these."""
    raw = value.encode()
    out = {hashlib.new(name, raw).hexdigest() for name in ("md5", "sha1", "sha256")}
    out.add(base64.b64encode(raw).decode().rstrip("="))
    out.add(base64.urlsafe_b64encode(raw).decode().rstrip("="))
    return out


class Redactor:
    """Replaces identifiers in text with stable references.

    ``Redactor({"imei": ["864804021234567"], "msisdn": ["+8613800000001"]})`` (or pairs
    ``[("imei", "864804021234567"), ...]``) turns every form of each value into
    ``[imei:<first 8 hex digits of sha256(value)>]`` (the value as given: E.164 for numbers). The
    same value gives the same reference in every report, so someone who knows an identifier can
    find it, and nobody reads it. Forms replaced:

    - numbers (kind ``msisdn``, also given as ``number``): ``+CCN``, ``CCN``, ``00CCN``, ``0N``,
      ``N`` (the national number), with spaces, dots or dashes between digits, and as swapped
      semi-octets (SMS PDUs, ``AT`` logs);
    - ICCIDs: with or without a trailing ``F``, and nibble-swapped (EF_ICCID as read by AT+CRSM);
    - IMEIs: all 15 digits and the first 14 (IMEISV and the check-digit-less form);
    - every value: its MD5 / SHA-1 / SHA-256 hex digests and Base64 (case-insensitive hex).

    Over-redaction is preferred to a leak: forms are matched wherever they occur, also inside
    longer digit runs. Text that must stay parseable (JSON) should go through
    :meth:`redact_obj`, which rewrites string values and keys only. ``key`` makes references
    keyed (HMAC-SHA-256): a plain hash of a phone number can be reversed by trying all numbers.
    """

    def __init__(
        self, identifiers: Mapping[str, Iterable[str]] | Iterable[tuple[str, str]] = (), *, key: bytes | None = None
    ) -> None:
        self._key = key
        self._forms: dict[str, str] = {}  # normalised form -> reference
        self._refs: dict[str, str] = {}  # reference -> kind
        self._pattern: re.Pattern[str] | None = None
        pairs = (
            ((k, v) for k, vs in identifiers.items() for v in ([vs] if isinstance(vs, str) else vs))
            if isinstance(identifiers, Mapping)
            else identifiers
        )
        for kind, value in pairs:
            self.add(kind, value)

    @classmethod
    def for_testbed(cls, testbed: Any, *, extra: Iterable[tuple[str, str]] = (), key: bytes | None = None) -> Redactor:
        """Every identifier the testbed names (see ``Testbed.identifiers``), plus ``extra`` (what
        the run read from the handsets)."""
        red = cls(testbed.identifiers(), key=key)
        for kind, value in extra:
            red.add(kind, value)
        return red

    def reference(self, kind: str, value: str) -> str:
        kind = _KIND_ALIASES.get(kind.lower(), kind.lower())
        if self._key is None:
            digest = hashlib.sha256(value.encode()).hexdigest()
        else:
            import hmac

            digest = hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()
        return f"[{kind}:{digest[:8]}]"

    def forms(self, kind: str, value: str) -> set[str]:
        """The forms of one identifier that are looked for (before separator tolerance)."""
        kind = _KIND_ALIASES.get(kind.lower(), kind.lower())
        value = value.strip()
        forms = {value} | _encodings(value)
        digits = re.sub(r"\D", "", value)
        if kind == "msisdn" and digits:
            forms |= {digits, "+" + digits, _swap_nibbles(digits)} | _encodings(digits) | _encodings("+" + digits)
            if value.startswith("+") and len(digits) > 3:
                national = digits[len(country_code(digits)) :]
                forms |= {"00" + digits, national, "0" + national, _swap_nibbles(national)} | _encodings(national)
        elif kind == "iccid" and digits:
            core = value.rstrip("fF")
            forms |= {core, core + "F", _swap_nibbles(core)}
        elif kind == "imei" and len(digits) == 15:
            forms |= {digits[:14]}
        return {f for f in forms if len(f) >= _MIN_FORM}

    def add(self, kind: str, value: str) -> str:
        """Look for ``value`` too; returns its reference."""
        value = str(value).strip()
        ref = self.reference(kind, value)
        if not value:
            return ref
        self._refs[ref] = _KIND_ALIASES.get(kind.lower(), kind.lower())
        for form in self.forms(kind, value):
            self._forms.setdefault(_normalise(form), ref)
        self._pattern = None
        return ref

    @property
    def references(self) -> dict[str, str]:
        """Reference -> kind, for a report's legend (no values)."""
        return dict(self._refs)

    def _compiled(self) -> re.Pattern[str] | None:
        if self._pattern is None and self._forms:
            # one trie of all forms: each position of the text costs one branch per character
            # matched, not one per form (hundreds, with digests), so megabytes of logcat stay cheap
            trie: dict[str, Any] = {}
            for form in self._forms:
                node = trie
                for atom in _atoms(form):
                    node = node.setdefault(atom, {})
                node[""] = {}
            self._pattern = re.compile(_trie_regex(trie), re.IGNORECASE)
        return self._pattern

    def redact(self, text: str) -> str:
        pattern = self._compiled()
        if pattern is None or not text:
            return text
        return pattern.sub(lambda m: self._forms.get(_normalise(m.group()), m.group()), text)

    __call__ = redact

    def redact_bytes(self, data: bytes) -> bytes:
        """Byte logs (an AT dialogue, a console): bytes are kept, identifiers replaced."""
        return self.redact(data.decode("latin-1")).encode("latin-1")

    def redact_obj(self, obj: Any) -> Any:
        """A JSON-like structure with every string (keys too) redacted; an integer whose digits
        are an identifier becomes its reference."""
        if isinstance(obj, str):
            return self.redact(obj)
        if isinstance(obj, bool) or obj is None or isinstance(obj, float):
            return obj
        if isinstance(obj, int):
            red = self.redact(str(obj))
            return obj if red == str(obj) else red
        if isinstance(obj, Mapping):
            return {self.redact_obj(k) if isinstance(k, str) else k: self.redact_obj(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [self.redact_obj(v) for v in obj]
        return obj


def _atoms(form: str) -> list[str]:
    """A form as regex pieces: digits may have a separator between them, other forms are exact."""
    if form.lstrip("+").isdigit():
        return [re.escape(form[0])] + [_SEP + re.escape(ch) for ch in form[1:]]
    return [re.escape(ch) for ch in form]


def _trie_regex(node: dict[str, Any]) -> str:
    """The regex of a trie; longer continuations are tried before ending (the longest form wins)."""
    ends = "" in node
    branches = [atom + _trie_regex(child) for atom, child in sorted(node.items()) if atom]
    if not branches:
        return ""
    body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
    if ends:
        return f"(?:{body})?" if len(branches) > 1 or len(body) > 1 else body + "?"
    return body


def _normalise(form: str) -> str:
    """The lookup key of a matched form: digits without separators, anything else upper-cased."""
    bare = re.sub(r"[\s.\-]", "", form)
    return bare if bare.lstrip("+").isdigit() else form.upper()
