"""hostctl's pytest plugin: lab tests against a testbed file or an emulated lab.

Registered through the ``pytest11`` entry point, so ``pytest hw_tests --testbed lab.yaml`` works from
any directory once hostctl is installed (``-p no:hostctl`` turns it off).

Options
-------

``--testbed FILE`` (``--testbed-name NAME`` for a file with several testbeds)
    the handsets and gear to drive (:mod:`hostctl.testbed`). A file ``hostctl emulator up`` wrote
    is an emulated testbed: its profile's verdicts apply (``profile_expectations``).
``--emulator-profile NAME|PATH`` (repeatable)
    boot an emulated lab per profile for the session instead: two handsets and the modem on a
    private adb server on a free port (one per xdist worker), killed by port at the end; the lab
    boots when a test first asks for the testbed. With several profiles, tests that use the
    testbed run once per profile (``test_x[miui-v5-2014-07]``), one lab up at a time in a process.
    (A conftest of the session that already started a private adb server and pointed
    ``ANDROID_ADB_SERVER_PORT`` at it, as ``tests/conftest.py`` does, is shared instead: Frida in a
    process follows only the first server it was pointed at.)
``--evidence-dir DIR``
    where evidence goes: ``DIR/<UTC time of the session>/`` (shared by the xdist workers); by
    default ``<pytest's tmp root>/evidence``. ``evidence_dir`` is one folder per test in it.
``--lock-dir DIR``, ``--lock-timeout SECONDS``
    the handset locks (below); default ``$HOSTCTL_LOCK_DIR`` or ``/tmp/hostctl-locks`` (a session
    of emulated labs only: ``<pytest's tmp root>/locks``, its handsets being its own), 300 s.

Giving both ``--testbed`` and ``--emulator-profile`` is a usage error; giving neither skips every
test that needs a testbed with the reason ``no --testbed or --emulator-profile given``.

Fixtures
--------

``testbed`` (session)
    the :class:`~hostctl.testbed.Testbed` (of the current profile, with several).
``handset_pair`` (session)
    a :class:`HandsetPair`: the labels of one pair and the testbed cut down to them (what
    ``run_audit`` takes). Tests that use it (``handsets`` does) run once per pair.
``handsets`` / ``handset``
    the pair's handsets as ``{label: hostctl.device.Handset}``, locked for the test; ``handset(label)``
    any handset of the testbed by label (or serial), locked for the test.
``peer_modem``
    :class:`hostctl.lab.modem.Modem` opened on the testbed's modem, locked; skips without one.
``evidence_dir`` / ``evidence_root`` (session)
    a fresh folder per test / the session's evidence folder.
``profile_expectations`` (session)
    the emulated profile's ``audit_expectations`` (check id -> PASS/FAIL/NOT-TESTABLE); ``None`` on
    a real testbed.
``lock_equipment`` (session)
    ``with lock_equipment(*handset_specs, modem=testbed.modem): ...`` holds the locks of a whole
    audit.

Markers
-------

``@pytest.mark.requires(handsets=2, modem=True, relay=False, frida=True, capture=True, root=False)``
    skips, saying what the testbed lacks (``testbed 'rack-a' lacks: 2 handsets (pair hs3 has 1:
    hs3); a modem (no `modem:` entry)``). ``handsets`` counts the pair's when the test uses one,
    else the testbed's; the other keys are checked on the handsets counted (``root`` asks each
    one over adb: root is not in the testbed file). An unknown keyword fails the test.
``@pytest.mark.check("phone-numbers-encrypted")``
    the test checks that audit check: JUnit XML carries ``<property name="check_id" .../>``; an
    id not in ``hostctl.report.CHECK_IDS`` fails the test.

Sharding (pytest-xdist)
-----------------------

A testbed's handsets form pairs in file order (``hs1+hs2``, ``hs3+hs4``; an odd one out is a pair of
one). Every test that uses a pair gets ``xdist_group`` ``hostctl:<testbed>:<pair>`` (an emulated
lab's tests all share the lab's group), so ``pytest -n 2 --dist loadgroup`` gives each pair to
one worker. Whatever the distribution, a test that drives a handset holds its lock: an
``fcntl.flock`` on ``<lock dir>/adb-<host>-<port>-<serial>-<hash>.lock`` (the modem's on
``modem-<port>-<hash>.lock``), shared by every process on the host; the holder writes who it is
into the file, and a wait longer than ``--lock-timeout`` fails naming the holder. Locks are
re-entrant within a process (the audit's session fixture and a test of the same worker).

pytest-xdist 3.8 marks a group by rewriting a private node-id field that pytest 9.2 no longer
reads (pytest-dev/pytest-xdist#1386); in xdist workers the plugin carries the group over
(:class:`_LoadgroupShim`), a no-op where xdist's rewrite works.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import fcntl
import hashlib
import json
import os
import re
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

import pytest

from .errors import HostctlError

if TYPE_CHECKING:
    from .testbed import HandsetSpec, ModemSpec, Testbed

__all__ = [
    "Bed",
    "EquipmentLocks",
    "HandsetPair",
    "LockKey",
    "LockTimeout",
    "NO_TESTBED",
    "REQUIREMENTS",
    "missing_equipment",
]

NO_TESTBED = "no --testbed or --emulator-profile given"
REQUIREMENTS = ("handsets", "modem", "relay", "frida", "capture", "root")
LAB_HANDSETS = 2
DEFAULT_LOCK_TIMEOUT = 300.0
DEFAULT_LOCK_DIR = Path(tempfile.gettempdir()) / "hostctl-locks"
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_STATE = pytest.StashKey["_State"]()
# The adb server port this process was started with: a different value at the first lab boot
# means a conftest of this session started a private server (and pointed Frida at it), which the
# lab then shares, since Frida follows only the server ANDROID_ADB_SERVER_PORT named first.
_ADB_PORT_AT_LOAD = os.environ.get("ANDROID_ADB_SERVER_PORT")


# --- locks ------------------------------------------------------------------------------------


class LockTimeout(HostctlError):
    """A handset (or the modem) stayed locked by another process for longer than the timeout."""

    def __init__(self, message: str, *, path: Path, holder: Mapping[str, Any] | None) -> None:
        self.path = path
        self.holder = dict(holder) if holder else None
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class LockKey:
    """One piece of equipment's lock: its file name, and how a message names the equipment."""

    name: str
    what: str

    @classmethod
    def handset(cls, spec: HandsetSpec) -> LockKey:
        raw = f"adb-{spec.adb.host}-{spec.adb.port}-{spec.serial}"
        return cls(_lock_name(raw), f"handset {spec.label} ({spec.serial} on adb server {spec.adb})")

    @classmethod
    def modem(cls, spec: ModemSpec) -> LockKey:
        return cls(_lock_name(f"modem-{spec.port}"), f"the modem on {spec.port}")


def _lock_name(raw: str) -> str:
    # readable, and distinct even where sanitising maps two keys to the same text
    return f"{_SAFE.sub('_', raw)[:120]}-{hashlib.sha256(raw.encode()).hexdigest()[:8]}.lock"


class EquipmentLocks:
    """Exclusive locks on equipment, shared by every process on the host through ``lock_dir``.

    Re-entrant within a process (a session fixture holding a handset does not block a test of the
    same process that asks for it again); across processes a ``flock`` waits up to ``timeout``.
    """

    _held: ClassVar[dict[str, list[Any]]] = {}  # path -> [fd, count], for the whole process
    _guard = threading.Lock()

    def __init__(
        self,
        lock_dir: str | os.PathLike[str],
        *,
        timeout: float = DEFAULT_LOCK_TIMEOUT,
        worker: str | None = None,
        poll: float = 0.05,
    ) -> None:
        self.lock_dir = Path(lock_dir)
        self.timeout = timeout
        self.worker = worker
        self.poll = poll

    @contextlib.contextmanager
    def hold(self, keys: Iterable[LockKey], who: str) -> Iterator[None]:
        """Hold every lock of ``keys`` (taken in name order, so two holders never deadlock)."""
        taken: list[Path] = []
        try:
            for key in sorted(set(keys), key=lambda k: k.name):
                taken.append(self._acquire(key, who))
            yield
        finally:
            for path in reversed(taken):
                self._release(path)

    def _acquire(self, key: LockKey, who: str) -> Path:
        path = self.lock_dir / key.name
        with self._guard:
            if (entry := self._held.get(str(path))) is not None:
                entry[1] += 1
                return path
        fd = self._open(path)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    holder = read_holder(path)
                    raise LockTimeout(
                        f"{key.what} is in use by {describe_holder(holder)}; waited "
                        f"{self.timeout:g} s for it (lock file {path}; --lock-timeout "
                        "sets the wait)",
                        path=path,
                        holder=holder,
                    ) from None
                time.sleep(self.poll)
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "worker": self.worker,
            "test": who,
            "since": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        with self._guard:
            self._held[str(path)] = [fd, 1]
        return path

    def _release(self, path: Path) -> None:
        with self._guard:
            entry = self._held[str(path)]
            entry[1] -= 1
            if entry[1]:
                return
            del self._held[str(path)]
        fd = entry[0]
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # before unlocking: a reader never sees a stale holder
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def _open(self, path: Path) -> int:
        if not self.lock_dir.is_dir():
            self.lock_dir.mkdir(parents=True, exist_ok=True)
            if self.lock_dir == DEFAULT_LOCK_DIR:
                with contextlib.suppress(OSError):  # shared by every user of the rack host, like /tmp
                    self.lock_dir.chmod(0o1777)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise HostctlError(f"cannot open the lock file {path}: {exc.strerror or exc}") from None
        with contextlib.suppress(OSError):
            os.fchmod(fd, 0o666)
        return fd


def read_holder(path: Path) -> dict[str, Any] | None:
    """What the holder of a lock wrote into it (None if unknown)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "null")
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def describe_holder(holder: Mapping[str, Any] | None) -> str:
    if not holder:
        return "another process (it has not said who it is)"
    text = f"pid {holder.get('pid')} on {holder.get('host')}"
    if holder.get("worker"):
        text += f" (xdist worker {holder['worker']})"
    if holder.get("test"):
        text += f", running {holder['test']}"
    if holder.get("since"):
        text += f", since {holder['since']}"
    return text


# --- what a test runs against -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bed:
    """A testbed the session can run against: a file's, or an emulated lab booted from a profile.
    ``labels`` are known before anything boots (an emulated lab's are hs1, hs2)."""

    key: str
    labels: tuple[str, ...]
    testbed: Testbed | None = None  # a file's testbed
    profile: str | None = None  # an emulated lab's profile (name or absolute path)

    @property
    def pairs(self) -> list[tuple[str, ...]]:
        """The handsets two by two, in file order (an odd one out is a pair of one)."""
        return [self.labels[i : i + 2] for i in range(0, len(self.labels), 2)]

    @property
    def emulated(self) -> bool:
        return self.profile is not None

    def group(self, pair: tuple[str, ...] | None) -> str | None:
        """The xdist group: the pair's; an emulated lab's tests all stay on the worker that booted it."""
        if self.emulated:
            return f"hostctl:{self.key}"
        return f"hostctl:{self.key}:{'+'.join(pair)}" if pair else None


@dataclass(frozen=True)
class HandsetPair:
    """The handsets a test (or an audit) drives together, and the testbed cut down to them."""

    id: str  # "hs1+hs2"
    labels: tuple[str, ...]
    testbed: Testbed  # only these handsets; the modem, relay and params kept
    group: str | None

    @property
    def specs(self) -> tuple[HandsetSpec, ...]:
        return self.testbed.handsets


# --- the session ------------------------------------------------------------------------------


class _State:
    """The plugin's state for one pytest session (one per xdist worker)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.beds: list[Bed] = []
        self.source: str | None = None
        self.lock_dir_given = _lock_dir(config) is not None
        self.locks = EquipmentLocks(
            _lock_dir(config) or DEFAULT_LOCK_DIR,
            timeout=config.getoption("hostctl_lock_timeout"),
            worker=os.environ.get("PYTEST_XDIST_WORKER"),
        )
        self.run_stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self._labs: dict[str, tuple[Any, Testbed]] = {}
        self.adb_port: int | None = None
        self.started_adb_server = False
        self._saved_env: str | None = None

    # -- beds ----------------------------------------------------------------------------------
    def bed(self, key: str | None) -> Bed:
        """The bed with this key; None: the only one (skips when there is none)."""
        if not self.beds:
            pytest.skip(NO_TESTBED)
        return next(b for b in self.beds if b.key == key) if key is not None else self.beds[0]

    def params(self, *, pairs: bool) -> tuple[list[tuple[str, ...]], list[str]]:
        """The parametrisation of a test that uses a bed (and a pair): values and ids. The values
        are strings, so pytest groups the tests of one bed (one pair) and sets each up once."""
        many_beds = len(self.beds) > 1
        values: list[tuple[str, ...]] = []
        ids: list[str] = []
        for bed in self.beds:
            for pair in bed.pairs if pairs else [None]:
                parts = [bed.key] if many_beds else []
                if pair is not None and len(bed.pairs) > 1:
                    parts.append("+".join(pair))
                values.append((bed.key, "+".join(pair)) if pair is not None else (bed.key,))
                ids.append(":".join(parts) or bed.key)
        return values, ids

    def testbed(self, bed: Bed, tmp_path_factory: pytest.TempPathFactory) -> Testbed:
        if bed.testbed is not None:
            return bed.testbed
        if bed.key in self._labs:
            return self._labs[bed.key][1]
        self.stop_labs()  # one lab at a time in a process: two cores, several helpers
        return self._boot(bed, tmp_path_factory)

    def _boot(self, bed: Bed, tmp_path_factory: pytest.TempPathFactory) -> Testbed:
        from .emulator.lab import LabConfig, LabError, LabThread
        from .testbed import testbed_for_lab

        if bed.profile is None:
            raise ValueError(f"testbed {bed.key}: neither a testbed file nor an emulator profile")
        port = self._adb_server()
        home = tmp_path_factory.mktemp(f"lab-{bed.key}")
        lt = LabThread(LabConfig(adb_port=port, handsets=LAB_HANDSETS, profile=bed.profile, home=home))
        try:
            lt.start()
        except Exception as exc:  # noqa: BLE001 - whatever stopped it, the tests cannot run: say why once
            what = str(exc) if isinstance(exc, LabError) else f"{type(exc).__name__}: {exc}"
            _fail(f"--emulator-profile {bed.profile}: the emulated lab did not start: {what}")
        testbed = testbed_for_lab(lt.lab, name=f"emulator-{bed.key}")
        self._labs[bed.key] = (lt, testbed)
        return testbed

    def _adb_server(self) -> int:
        from .emulator.lab import adb_server_running, ensure_adb_server, free_loopback_port

        if self.adb_port is not None:
            return self.adb_port
        current = os.environ.get("ANDROID_ADB_SERVER_PORT")
        if current and current != _ADB_PORT_AT_LOAD and current.isdigit() and adb_server_running(int(current)):
            self.adb_port = int(current)  # this session's private server (see _ADB_PORT_AT_LOAD)
            return self.adb_port
        port = free_loopback_port()
        ensure_adb_server(port)
        self.adb_port, self.started_adb_server = port, True
        self._saved_env = current
        os.environ["ANDROID_ADB_SERVER_PORT"] = str(port)  # Frida finds the lab's handsets there
        return port

    def stop_labs(self) -> None:
        for key in list(self._labs):
            lt, _ = self._labs.pop(key)
            with contextlib.suppress(Exception):
                lt.stop()

    def close(self) -> None:
        self.stop_labs()
        if self.started_adb_server and self.adb_port is not None:
            from .emulator.lab import kill_adb_server

            with contextlib.suppress(Exception):
                kill_adb_server(self.adb_port)
            if self._saved_env is None:
                os.environ.pop("ANDROID_ADB_SERVER_PORT", None)
            else:
                os.environ["ANDROID_ADB_SERVER_PORT"] = self._saved_env
            self.started_adb_server = False

    # -- evidence ----------------------------------------------------------------------------
    def evidence_root(self, tmp_path_factory: pytest.TempPathFactory) -> Path:
        given = self.config.getoption("hostctl_evidence_dir")
        if not given:
            root = tmp_path_factory.getbasetemp() / "evidence"
        else:
            base = Path(given)
            if not base.is_absolute():
                base = self.config.invocation_params.dir / base
            root = base / self.run_stamp
        root.mkdir(parents=True, exist_ok=True)
        return root


def _lock_dir(config: pytest.Config) -> Path | None:
    """--lock-dir, else $HOSTCTL_LOCK_DIR; None when neither is given."""
    given = config.getoption("hostctl_lock_dir") or os.environ.get("HOSTCTL_LOCK_DIR")
    if not given:
        return None
    path = Path(given)
    return path if path.is_absolute() else config.invocation_params.dir / path


def _fail(message: str) -> NoReturn:
    """Fail the test with ``message`` alone (no traceback, not the exception being handled)."""
    raise pytest.fail.Exception(message, pytrace=False) from None


def _state(config: pytest.Config) -> _State:
    return config.stash[_STATE]


# --- hooks ------------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hostctl", "hostctl lab testbed")
    group.addoption(
        "--testbed",
        dest="hostctl_testbed",
        metavar="FILE",
        help="testbed file (hostctl.testbed) naming the handsets and lab gear to drive",
    )
    group.addoption(
        "--testbed-name",
        dest="hostctl_testbed_name",
        metavar="NAME",
        help="which testbed of a --testbed file that lists several",
    )
    group.addoption(
        "--emulator-profile",
        dest="hostctl_emulator_profiles",
        action="append",
        default=[],
        metavar="NAME|PATH",
        help="boot an emulated lab on this firmware profile for the session (repeatable: one target per profile)",
    )
    group.addoption(
        "--evidence-dir",
        dest="hostctl_evidence_dir",
        metavar="DIR",
        help="evidence goes to DIR/<UTC time of the session>/ (default: pytest's tmp root)",
    )
    group.addoption(
        "--lock-dir",
        dest="hostctl_lock_dir",
        metavar="DIR",
        help=f"where the handset locks live (default: $HOSTCTL_LOCK_DIR or {DEFAULT_LOCK_DIR})",
    )
    group.addoption(
        "--lock-timeout",
        dest="hostctl_lock_timeout",
        type=float,
        default=DEFAULT_LOCK_TIMEOUT,
        metavar="SECONDS",
        help=f"how long to wait for a handset another test holds (default {DEFAULT_LOCK_TIMEOUT:g})",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "requires(handsets=N, modem=False, relay=False, frida=False, capture=False, root=False): "
        "skip unless the testbed has this equipment (hostctl)",
    )
    config.addinivalue_line(
        "markers",
        "check(check_id): the audit check this test checks; JUnit XML carries it as the property check_id (hostctl)",
    )
    if not config.pluginmanager.hasplugin("xdist"):  # xdist registers its own
        config.addinivalue_line("markers", "xdist_group(name): one pytest-xdist worker runs the group")
    state = _State(config)
    state.beds, state.source = _beds(config)
    config.stash[_STATE] = state
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistHooks(state), "hostctl-xdist")
        if getattr(config, "workerinput", None) is not None:
            config.pluginmanager.register(_LoadgroupShim(), "hostctl-loadgroup-shim")
    workerinput = getattr(config, "workerinput", None)
    if workerinput and workerinput.get("hostctl_run_stamp"):
        state.run_stamp = workerinput["hostctl_run_stamp"]


class _XdistHooks:
    """The workers write evidence under the controller's session time, not each its own."""

    def __init__(self, state: _State) -> None:
        self.state = state

    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["hostctl_run_stamp"] = self.state.run_stamp


def _beds(config: pytest.Config) -> tuple[list[Bed], str | None]:
    """The beds the options name; a bad option, file or profile is a usage error."""
    path = config.getoption("hostctl_testbed")
    name = config.getoption("hostctl_testbed_name")
    profiles = config.getoption("hostctl_emulator_profiles") or []
    if path and profiles:
        raise pytest.UsageError("give --testbed FILE or --emulator-profile NAME, not both")
    if name and not path:
        raise pytest.UsageError("--testbed-name needs --testbed FILE")
    if config.getoption("hostctl_lock_timeout") < 0:
        raise pytest.UsageError("--lock-timeout must be 0 or more seconds")
    here = config.invocation_params.dir
    if path:
        from .errors import ConfigError
        from .testbed import load_testbed

        file = Path(path).expanduser()
        file = file if file.is_absolute() else here / file
        try:
            tb = load_testbed(file, name)
        except ConfigError as exc:
            raise pytest.UsageError(f"--testbed: {exc}") from None
        return [Bed(tb.name, tuple(tb.labels), testbed=tb)], str(file)
    beds: list[Bed] = []
    for ref in profiles:
        from .emulator.profiles import ProfileError, load_profile

        is_path = "/" in ref or ref.endswith((".yaml", ".yml"))
        resolved = str((here / Path(ref).expanduser()).resolve()) if is_path else ref
        try:
            load_profile(resolved)
        except ProfileError as exc:
            raise pytest.UsageError(f"--emulator-profile {ref}: {exc}") from None
        key = _SAFE.sub("_", Path(ref).stem if is_path else ref)
        if key in {b.key for b in beds}:
            key = f"{key}-{len(beds) + 1}"
        beds.append(Bed(key, tuple(f"hs{i + 1}" for i in range(LAB_HANDSETS)), profile=resolved))
    return beds, None


def pytest_report_header(config: pytest.Config) -> list[str]:
    state = _state(config)
    if not state.beds:
        return []
    if state.source:
        bed = state.beds[0]
        pairs = ", ".join("+".join(p) for p in bed.pairs) or "none"
        return [f"hostctl: testbed {bed.key} ({state.source}); handset pairs: {pairs}; locks in {state.locks.lock_dir}"]
    return [f"hostctl: emulated lab per profile: {', '.join(b.profile or '' for b in state.beds)}"]


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is not None:
        state.close()


@pytest.hookimpl(trylast=True)  # after the session's fixtures are torn down
def pytest_sessionfinish(session: pytest.Session) -> None:
    state = session.config.stash.get(_STATE, None)
    if state is not None:
        state.stop_labs()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests that use a testbed run once per bed (``--emulator-profile`` repeated), and once per
    pair of each bed when they use a pair."""
    names = metafunc.fixturenames
    if "_hostctl_bed" not in names:
        if metafunc.definition.get_closest_marker("requires") is None:
            return
        names.append("_hostctl_bed")  # requires() reads the testbed
    pairs = "_hostctl_pair" in names
    values, ids = _state(metafunc.config).params(pairs=pairs)
    if len(values) > 1:
        if pairs:
            metafunc.parametrize(("_hostctl_bed", "_hostctl_pair"), values, ids=ids, indirect=True, scope="session")
        else:
            metafunc.parametrize("_hostctl_bed", [v[0] for v in values], ids=ids, indirect=True, scope="session")


@pytest.hookimpl(tryfirst=True)  # before xdist's, which reads xdist_group into the node ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    state = _state(config)
    for item in items:
        for mark in item.iter_markers("check"):
            check_id = mark.args[0] if mark.args else mark.kwargs.get("check_id")
            item.user_properties.append(("check_id", check_id))
        names = getattr(item, "fixturenames", ())
        if "_hostctl_bed" not in names or not state.beds or item.get_closest_marker("xdist_group"):
            continue
        params = getattr(getattr(item, "callspec", None), "params", {})
        bed = next(b for b in state.beds if b.key == params.get("_hostctl_bed", state.beds[0].key))
        pair = None
        if "_hostctl_pair" in names:
            pair = (
                tuple(params["_hostctl_pair"].split("+")) if "_hostctl_pair" in params else next(iter(bed.pairs), None)
            )
        if group := bed.group(pair):
            item.add_marker(pytest.mark.xdist_group(group))


class _LoadgroupShim:
    """pytest-xdist 3.8 marks a group by rewriting ``item._nodeid`` to ``<id>@<group>``, which
    pytest 9.2's structured node ids no longer read, so ``--dist loadgroup`` silently stops
    grouping (pytest-dev/pytest-xdist#1386). Carry the rewritten id over to the structured one, as
    the proposed fix (#1388) does; a no-op wherever xdist's rewrite still takes effect."""

    @pytest.hookimpl(trylast=True)  # after xdist's
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        try:
            from _pytest.nodeid import NodeId
        except ImportError:  # a pytest whose node ids are still strings
            return
        for item in items:
            rewritten = vars(item).get("_nodeid")
            if isinstance(rewritten, str) and rewritten != item.nodeid and hasattr(item, "_id"):
                item._id = NodeId.parse(rewritten)


def pytest_runtest_setup(item: pytest.Item) -> None:
    from .report import CHECK_IDS

    for mark in item.iter_markers("check"):
        check_id = mark.args[0] if mark.args else mark.kwargs.get("check_id")
        if check_id not in CHECK_IDS:
            close = difflib.get_close_matches(str(check_id), CHECK_IDS, n=1)
            pytest.fail(
                f"@pytest.mark.check({check_id!r}): not an audit check id"
                + (f"; did you mean {close[0]!r}?" if close else "")
                + f" (known: {', '.join(CHECK_IDS)})",
                pytrace=False,
            )


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def _hostctl_bed(request: pytest.FixtureRequest) -> Bed:
    return _state(request.config).bed(getattr(request, "param", None))


@pytest.fixture(scope="session")
def _hostctl_pair(request: pytest.FixtureRequest, _hostctl_bed: Bed) -> tuple[str, ...]:
    if hasattr(request, "param"):
        return tuple(request.param.split("+"))
    if not _hostctl_bed.pairs:
        pytest.skip(f"testbed {_hostctl_bed.key!r} has no handsets")
    return _hostctl_bed.pairs[0]


@pytest.fixture(scope="session")
def testbed(_hostctl_bed: Bed, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Testbed:
    """The testbed of the current bed (an emulated lab boots on first use)."""
    return _state(request.config).testbed(_hostctl_bed, tmp_path_factory)


@pytest.fixture(scope="session")
def handset_pair(_hostctl_bed: Bed, _hostctl_pair: tuple[str, ...], testbed: Testbed) -> HandsetPair:
    """The pair of handsets this test runs on (tests that use it run once per pair)."""
    from .errors import ConfigError

    try:
        specs = tuple(testbed.handset(label) for label in _hostctl_pair)
    except ConfigError as exc:
        _fail(str(exc))
    return HandsetPair(
        "+".join(_hostctl_pair),
        _hostctl_pair,
        dataclasses.replace(testbed, handsets=specs),
        _hostctl_bed.group(_hostctl_pair),
    )


@pytest.fixture(scope="session")
def lock_equipment(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., contextlib.AbstractContextManager[None]]:
    """``with lock_equipment(*handset_specs, modem=spec_or_None, who=...)``: hold their locks (a
    wait past --lock-timeout fails the test, naming the holder)."""
    state = _state(request.config)
    if state.beds and all(b.emulated for b in state.beds) and not state.lock_dir_given:
        # the labs this session boots are its own (no other process reaches their handsets): keep
        # their lock files with the session's, not in the host-wide folder
        state.locks.lock_dir = tmp_path_factory.getbasetemp() / "locks"
    locks = state.locks

    @contextlib.contextmanager
    def hold(*handsets: HandsetSpec, modem: ModemSpec | None = None, who: str | None = None) -> Iterator[None]:
        keys = [LockKey.handset(h) for h in handsets] + ([LockKey.modem(modem)] if modem is not None else [])
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(locks.hold(keys, who or request.node.nodeid))
            except LockTimeout as exc:
                _fail(str(exc))
            yield

    return hold


@pytest.fixture
def handsets(
    handset_pair: HandsetPair, lock_equipment: Callable[..., Any], request: pytest.FixtureRequest
) -> Iterator[dict[str, Any]]:
    """The pair's handsets by label (``hostctl.device.Handset``), locked for the test."""
    from .device import Handset

    with lock_equipment(*handset_pair.specs, who=request.node.nodeid):
        yield {h.label: Handset(h.serial, server=h.adb) for h in handset_pair.specs}


@pytest.fixture
def handset(
    testbed: Testbed, lock_equipment: Callable[..., Any], request: pytest.FixtureRequest
) -> Iterator[Callable[[str], Any]]:
    """``handset(label)``: that handset of the testbed (label or serial), locked for the test."""
    from .device import Handset
    from .errors import ConfigError

    with contextlib.ExitStack() as stack:
        made: dict[str, Any] = {}

        def get(label: str) -> Any:
            try:
                spec = testbed.handset(label)
            except ConfigError as exc:
                _fail(str(exc))
            if spec.label not in made:
                stack.enter_context(lock_equipment(spec, who=request.node.nodeid))
                made[spec.label] = Handset(spec.serial, server=spec.adb)
            return made[spec.label]

        yield get


@pytest.fixture
def peer_modem(testbed: Testbed, lock_equipment: Callable[..., Any], request: pytest.FixtureRequest) -> Iterator[Any]:
    """The testbed's GSM modem (the peer phone), opened and initialised; skips without one."""
    from .lab.modem import Modem, ModemError

    spec = testbed.modem
    if spec is None:
        pytest.skip(f"testbed {testbed.name!r} has no modem (no `modem:` entry)")
    with lock_equipment(modem=spec, who=request.node.nodeid):
        try:
            modem = Modem.open(**spec.controller_config())
        except ModemError as exc:
            _fail(f"the modem on {spec.port} did not open: {exc}")
        with modem:
            yield modem


@pytest.fixture(scope="session")
def evidence_root(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's evidence folder (``--evidence-dir DIR``/<time>, or under pytest's tmp root)."""
    return _state(request.config).evidence_root(tmp_path_factory)


@pytest.fixture
def evidence_dir(evidence_root: Path, request: pytest.FixtureRequest) -> Path:
    """A fresh folder for this test's evidence, named after the test."""
    name = _SAFE.sub("_", request.node.nodeid).strip("_")
    if len(name) > 150:
        name = f"{name[:140]}-{hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:8]}"
    path = evidence_root / name
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def profile_expectations(_hostctl_bed: Bed, testbed: Testbed) -> dict[str, str] | None:
    """The emulated profile's ``audit_expectations`` (check id -> verdict); None on real handsets."""
    from .emulator.profiles import ProfileError, load_profile

    profile = _hostctl_bed.profile or (testbed.emulator.profile if testbed.emulator else None)
    if profile is None:
        return None
    try:
        return dict(load_profile(profile).audit_expectations)
    except ProfileError as exc:
        _fail(f"testbed {testbed.name!r}: {exc}")


@pytest.fixture(autouse=True)
def _hostctl_requires(request: pytest.FixtureRequest) -> None:
    marker = request.node.get_closest_marker("requires")
    if marker is None:
        return
    unknown = [k for k in marker.kwargs if k not in REQUIREMENTS]
    if marker.args or unknown:
        what = ", ".join(map(repr, unknown)) if unknown else "positional arguments"
        pytest.fail(
            f"@pytest.mark.requires: {what} not understood (keywords: {', '.join(REQUIREMENTS)})", pytrace=False
        )
    testbed = request.getfixturevalue("testbed")
    pair = request.getfixturevalue("handset_pair") if "handset_pair" in request.fixturenames else None
    missing = missing_equipment(testbed, marker.kwargs, pair=pair)
    if missing:
        pytest.skip(f"testbed {testbed.name!r} lacks: {'; '.join(missing)}")


def missing_equipment(testbed: Testbed, wants: Mapping[str, Any], *, pair: HandsetPair | None = None) -> list[str]:
    """What ``@pytest.mark.requires(**wants)`` finds missing, one phrase per item."""
    pool = pair.specs if pair is not None else testbed.handsets
    where = f"pair {pair.id}" if pair is not None else "it"
    count = int(wants.get("handsets") or 0)
    used = pool[:count] if count else pool
    missing = []
    if count > len(pool):
        have = ", ".join(h.label for h in pool) or "none"
        missing.append(f"{count} handsets ({where} has {len(pool)}: {have})")
    if wants.get("modem") and testbed.modem is None:
        missing.append("a modem (no `modem:` entry)")
    if wants.get("relay"):
        if testbed.relay is None:
            missing.append("a relay (no `relay:` entry)")
        missing += [f"a relay channel for {h.label} (no `relay_channel:`)" for h in used if h.relay_channel is None]
    if wants.get("frida"):
        missing += [f"frida on {h.label} (no `frida:` entry)" for h in used if h.frida is None]
    if wants.get("capture"):
        missing += [
            f"a capture source for {h.label} ("
            + ("no `capture:` entry" if h.capture is None else "capture: none")
            + ")"
            for h in used
            if h.capture is None or h.capture.source == "none"
        ]
    if wants.get("root") and not missing:
        missing += _unrooted(used)
    return missing


def _unrooted(specs: Iterable[HandsetSpec]) -> list[str]:
    """Root is not in the testbed file: ask each handset (an su binary, or adbd running as root)."""
    from .device import Handset, RootStatus

    out = []
    for h in specs:
        try:
            status, _ = Handset(h.serial, server=h.adb, timeout=10.0).root_status()
        except HostctlError as exc:
            out.append(f"root on {h.label} (could not ask it: {exc})")
            continue
        if status not in (RootStatus.ADBD, RootStatus.SU_PRESENT, RootStatus.SU):
            out.append(f"root on {h.label} (no su binary, adbd not root)")
    return out
