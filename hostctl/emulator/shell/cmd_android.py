"""Android framework and system tools: getprop, settings, service, content, am, pm, input,
uiautomator, dumpsys, logcat, ps, pidof, id."""

from __future__ import annotations

import asyncio
import contextlib
import time

from .. import render
from ..android import am as am_fmt
from ..android import dumpsys as dumpsys_fmt
from ..android import ip as ip_fmt
from ..android import logcat as logcat_fmt
from ..android import pm as pm_fmt
from ..android import wm as wm_fmt
from ..android.apk import ApkError
from ..android.model import Battery, Display, Process, TopActivity
from ..handset import (
    CONTACTS_AUTHORITY,
    ContentError,
    Intent,
    LogEntry,
    ReadOnlyPropertyError,
    normalize_component,
)
from . import subinfo
from .files import FsError
from .parcel import parcel_error_text
from .registry import Ctx, command

# --- properties -------------------------------------------------------------------------------


@command("getprop")
async def _getprop(ctx: Ctx, argv: list[str]) -> int:
    props = ctx.handset.props()
    if len(argv) == 1:
        for key in sorted(props):
            ctx.out(f"[{key}]: [{props[key]}]\n")
        return 0
    default = argv[2] if len(argv) > 2 else ""
    ctx.out(props.get(argv[1], default) + "\n")
    return 0


@command("setprop")
async def _setprop(ctx: Ctx, argv: list[str]) -> int:
    if len(argv) != 3:
        ctx.err("usage: setprop <key> <value>\n")
        return 1
    key, value = argv[1], argv[2]
    try:
        ctx.handset.setprop(key, value)
    except ReadOnlyPropertyError:
        ctx.handset.log("E", "init", f"sys_prop: permission denied uid:2000  name:{key}", pid=1)
        if ctx.sdk >= 26:
            ctx.err(f"Failed to set property '{key}' to '{value}'.\nSee dmesg for error reason.\n")
            return 1
        return 0  # KitKat's setprop cannot tell: init refuses and logs it
    except ValueError:
        ctx.err("could not set property\n")
        return 1
    return 0


# --- settings ---------------------------------------------------------------------------------

_SETTINGS_USAGE = """usage:  settings [--user <USER_ID> | current] get namespace key
        settings [--user <USER_ID> | current] put namespace key value
        settings [--user <USER_ID> | current] delete namespace key
        settings [--user <USER_ID> | current] list namespace

'namespace' is one of {system, secure, global}, case-insensitive
If '--user <USER_ID> | current' is not given, the operations are performed on the system user.
"""


@command("settings")
async def _settings(ctx: Ctx, argv: list[str]) -> int:
    args = argv[1:]
    if len(args) >= 2 and args[0] == "--user":
        args = args[2:]
    if not args:
        ctx.err(_SETTINGS_USAGE)
        return 1
    verb, rest = args[0], args[1:]
    need = {"get": 2, "put": 3, "delete": 2, "list": 1}
    if verb not in need or len(rest) < need[verb] or rest[0].lower() not in ("system", "secure", "global"):
        ctx.err(_SETTINGS_USAGE)
        return 1
    ns = rest[0].lower()
    h = ctx.handset
    if verb == "get":
        value = h.settings_get(ns, rest[1])
        ctx.out(("null" if value is None else value) + "\n")
    elif verb == "put":
        h.settings_put(ns, rest[1], rest[2])
    elif verb == "delete":
        ctx.out(f"Deleted {h.settings_delete(ns, rest[1])} rows\n")
    else:
        for name, value in h.settings_list(ns):
            ctx.out(f"{name}={'null' if value is None else value}\n")
    return 0


# --- service ----------------------------------------------------------------------------------

_SERVICES = (
    ("phone", "com.android.internal.telephony.ITelephony"),
    ("iphonesubinfo", "com.android.internal.telephony.IPhoneSubInfo"),
    ("isms", "com.android.internal.telephony.ISms"),
    ("telephony.registry", "com.android.internal.telephony.ITelephonyRegistry"),
    ("activity", "android.app.IActivityManager"),
    ("package", "android.content.pm.IPackageManager"),
    ("window", "android.view.IWindowManager"),
    ("input", "android.hardware.input.IInputManager"),
    ("connectivity", "android.net.IConnectivityManager"),
    ("wifi", "android.net.wifi.IWifiManager"),
    ("power", "android.os.IPowerManager"),
    ("account", "android.accounts.IAccountManager"),
    ("content", "android.content.IContentService"),
    ("alarm", "android.app.IAlarmManager"),
    ("location", "android.location.ILocationManager"),
    ("notification", "android.app.INotificationManager"),
    ("statusbar", "com.android.internal.statusbar.IStatusBarService"),
    ("miui.security.SecurityManager", "miui.security.ISecurityManager"),
    # what real tools dump (adbutils, Mobly's bug report, Appium): each has a dump() in AOSP
    ("battery", ""),
    ("display", "android.hardware.display.IDisplayManager"),
    ("user", "android.os.IUserManager"),
    ("meminfo", ""),
    ("input_method", "com.android.internal.view.IInputMethodManager"),
    ("SurfaceFlinger", "android.ui.ISurfaceComposer"),
)
_MSIM = ("iphonesubinfo_msim", "com.android.internal.telephony.msim.IPhoneSubInfoMSim")


def _services(ctx: Ctx) -> tuple[tuple[str, str], ...]:
    """The registered services; CAF dual-SIM KitKat builds add iphonesubinfo_msim."""
    return _SERVICES + ((_MSIM,) if ctx.handset.profile.iphonesubinfo_msim else ())


_SERVICE_USAGE = """Usage: service [-h|-?]
       service list
       service check SERVICE
       service call SERVICE CODE [i32 INT | s16 STR] ...
Options:
   i32: Write the integer INT into the send parcel.
   s16: Write the UTF-16 string STR into the send parcel.
"""


@command("service")
async def _service(ctx: Ctx, argv: list[str]) -> int:
    args = argv[1:]
    if not args or args[0] in ("-h", "-?"):
        ctx.out(_SERVICE_USAGE)
        return 0
    if args[0] == "list":
        services = _services(ctx)
        ctx.out(f"Found {len(services)} services:\n")
        for i, (name, iface) in enumerate(services):
            ctx.out(f"{i}\t{name}: [{iface}]\n")
        return 0
    if args[0] == "check":
        if len(args) < 2:
            ctx.err("service: No service specified for check\n")
            return 10
        found = "found" if args[1] in dict(_services(ctx)) else "not found"
        ctx.out(f"Service {args[1]}: {found}\n")
        return 0
    if args[0] != "call":
        ctx.err(f"service: Unknown command {args[0]}\n")
        ctx.out(_SERVICE_USAGE)
        return 10
    if len(args) < 2:
        ctx.err("service: No service specified for call\n")
        return 10
    name = args[1]
    if name not in dict(_services(ctx)):
        ctx.err(f"service: Service {name} does not exist\n")
        return 10
    if len(args) < 3:
        ctx.err("service: No code specified for call\n")
        return 10
    try:
        code = int(args[2], 0)
    except ValueError:
        code = 0
    call_args: list[tuple[str, object]] = []
    rest = args[3:]
    i = 0
    while i < len(rest):
        kind = rest[i]
        if kind in ("i32", "i64", "s16", "f", "d"):
            if i + 1 >= len(rest):
                ctx.err(f"service: no {'string' if kind == 's16' else 'integer'} supplied for '{kind}'\n")
                return 10
            call_args.append((kind, rest[i + 1]))
            i += 2
        elif kind == "null":
            call_args.append(("null", None))
            i += 1
        else:
            ctx.err(f"service: unknown option {kind}\n")
            return 10
    if name == "iphonesubinfo":
        ctx.out(subinfo.transact(ctx.handset, code, call_args))
        return 0
    if name == _MSIM[0]:
        ctx.out(subinfo.transact_msim(ctx.handset, code, call_args))
        return 0
    ctx.out(parcel_error_text(74, "Not a data message"))
    return 0


# --- content ----------------------------------------------------------------------------------

_CONTENT_USAGE = """usage: adb shell content [subcommand] [options]

usage: adb shell content insert --uri <URI> [--user <USER_ID>] --bind <BINDING> [--bind <BINDING>...]
usage: adb shell content update --uri <URI> [--user <userId>] [--where <WHERE>]
usage: adb shell content delete --uri <URI> [--user <userId>] --bind <BINDING> [--bind <BINDING>...] [--where <WHERE>]
usage: adb shell content query --uri <URI> [--user <userId>] [--projection <PROJECTION>] [--where <WHERE>] [--sort <SORT_ORDER>]
"""


def _bind_value(binding: str) -> tuple[str, object]:
    parts = binding.split(":", 2)
    if len(parts) != 3:
        raise ValueError(f"Invalid binding: {binding}")
    name, kind, raw = parts
    if kind == "s":
        return name, raw
    if kind in ("i", "l"):
        return name, int(raw)
    if kind in ("f", "d"):
        return name, float(raw)
    if kind == "b":
        return name, 1 if raw.lower() == "true" else 0
    if kind == "n":
        return name, None
    raise ValueError(f"Unsupported type: {kind}")


# Content.java's null type (``column:n:``) is in Android 11's tool (and later), not in 4.4-7.x's
NULL_BINDING_MIN_SDK = 30


def _java_value(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bytes):
        return "BLOB"
    if isinstance(value, float):
        return repr(value) if value != int(value) or abs(value) >= 1e7 else f"{value:.1f}"
    return str(value)


@command("content")
async def _content(ctx: Ctx, argv: list[str]) -> int:
    args = argv[1:]
    if not args or args[0] not in ("query", "insert", "update", "delete"):
        ctx.err(_CONTENT_USAGE)
        return 1
    verb = args[0]
    opts: dict[str, str] = {}
    binds: dict[str, object] = {}
    i = 1
    while i < len(args):
        opt = args[i]
        if opt in ("--uri", "--projection", "--where", "--sort", "--user", "--bind") and i + 1 < len(args):
            if opt == "--bind":
                try:
                    if ctx.sdk < NULL_BINDING_MIN_SDK and args[i + 1].split(":", 2)[1:2] == ["n"]:
                        raise ValueError("Unsupported type: n")
                    key, value = _bind_value(args[i + 1])
                except ValueError as exc:
                    ctx.err(f"[ERROR] {exc}\n")
                    return 1
                binds[key] = value
            else:
                opts[opt[2:]] = args[i + 1]
            i += 2
            continue
        ctx.err(f"[ERROR] Unsupported argument: {opt}\n{_CONTENT_USAGE}")
        return 1
    uri = opts.get("uri")
    if not uri:
        ctx.err(f"[ERROR] Content provider URI not specified\n{_CONTENT_USAGE}")
        return 1
    if verb == "insert" and not binds:
        ctx.err(f"[ERROR] Bindings not specified\n{_CONTENT_USAGE}")
        return 1
    authority = uri.split("://", 1)[-1].split("/", 1)[0]
    h = ctx.handset
    try:
        if authority == "settings":
            return _content_settings(ctx, verb, uri, opts, binds)
        if authority == CONTACTS_AUTHORITY:
            return _content_contacts(ctx, verb, uri, opts, binds)
        if authority == "telephony" and uri.rstrip("/").endswith("/siminfo") and verb == "query":
            names, rows = h.siminfo_query()
            wanted = opts["projection"].split(":") if "projection" in opts else names
            if any(c not in names for c in wanted):
                raise ContentError(
                    "android.database.sqlite.SQLiteException: no such column: "
                    + next(c for c in wanted if c not in names)
                )
            _print_rows(ctx, wanted, [tuple(r[names.index(c)] for c in wanted) for r in rows])
            return 0
        if authority != "sms":
            raise ContentError(f"java.lang.IllegalStateException: Could not find provider: {authority}")
        if verb == "query":
            projection = opts["projection"].split(":") if "projection" in opts else None
            names, rows = h.sms_query(uri, projection, opts.get("where"), opts.get("sort"))
            if not rows:
                ctx.out("No result found.\n")
            for n, row in enumerate(rows):
                cells = ", ".join(f"{c}={_java_value(v)}" for c, v in zip(names, row))
                ctx.out(f"Row: {n} {cells}\n")
        elif verb == "insert":
            h.sms_insert(binds, uri)
        elif verb == "update":
            h.sms_update(binds, uri, opts.get("where"))
        else:
            h.sms_delete(uri, opts.get("where"))
    except ContentError as exc:
        ctx.err(f"Error while accessing provider:{authority}\n{exc}\n")
        return 1
    return 0


def _print_rows(ctx: Ctx, names: list[str], rows: list[tuple]) -> None:
    if not rows:
        ctx.out("No result found.\n")
    for n, row in enumerate(rows):
        cells = ", ".join(f"{c}={_java_value(v)}" for c, v in zip(names, row))
        ctx.out(f"Row: {n} {cells}\n")


def _content_contacts(ctx: Ctx, verb: str, uri: str, opts: dict, binds: dict) -> int:
    """ContactsProvider2 for the shell user (who holds READ/WRITE_CONTACTS): raw_contacts, data."""
    h = ctx.handset
    if verb == "query":
        projection = opts["projection"].split(":") if "projection" in opts else None
        _print_rows(ctx, *h.contacts_query(uri, projection, opts.get("where"), opts.get("sort")))
    elif verb == "insert":
        h.contacts_insert(binds, uri)
    elif verb == "delete":
        h.contacts_delete(uri, opts.get("where"))
    else:
        raise ContentError(f"java.lang.UnsupportedOperationException: update of {uri} is not emulated")
    return 0


def _content_settings(ctx: Ctx, verb: str, uri: str, opts: dict, binds: dict) -> int:
    parts = uri.split("://", 1)[-1].split("/")
    ns = parts[1] if len(parts) > 1 else ""
    if ns not in ("system", "secure", "global"):
        raise ContentError(f"java.lang.IllegalArgumentException: Invalid URI: {uri}")
    h = ctx.handset
    if verb == "query":
        rows = h.settings_list(ns)
        if len(parts) > 2:
            rows = [r for r in rows if r[0] == parts[2]]
        if opts.get("where"):
            rows = _settings_where(rows, opts["where"])
        if not rows:
            ctx.out("No result found.\n")
        for n, (name, value) in enumerate(rows):
            ctx.out(f"Row: {n} name={name}, value={_java_value(value)}\n")
    elif verb in ("insert", "update"):
        if "name" not in binds:
            raise ContentError("java.lang.IllegalArgumentException: name must not be null")
        h.settings_put(ns, str(binds["name"]), None if binds.get("value") is None else str(binds["value"]))
    else:
        where = opts.get("where", "")
        if where.startswith("name=") or where.startswith("name ="):
            h.settings_delete(ns, where.split("=", 1)[1].strip().strip("'\""))
    return 0


def _settings_where(rows: list[tuple[str, str | None]], where: str) -> list[tuple[str, str | None]]:
    """SettingsProvider hands ``--where`` to SQLite over its (name, value) table: so do we, on
    an in-memory copy that only SELECT may read."""
    import sqlite3

    db = sqlite3.connect(":memory:")
    try:
        db.execute("CREATE TABLE t (name TEXT, value TEXT)")
        db.executemany("INSERT INTO t VALUES (?, ?)", rows)
        allowed = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION}
        db.set_authorizer(lambda action, *_: sqlite3.SQLITE_OK if action in allowed else sqlite3.SQLITE_DENY)
        return db.execute(f"SELECT name, value FROM t WHERE {where}").fetchall()
    except sqlite3.Error as exc:
        raise ContentError(
            f"android.database.sqlite.SQLiteException: {exc} (code 1): , while compiling: "
            f"SELECT * FROM {'settings'} WHERE ({where})"
        ) from None
    finally:
        db.close()


# --- am / pm ----------------------------------------------------------------------------------


def _parse_intent(kind: str, args: list[str]) -> tuple[Intent, set[str]]:
    fields: dict = {"kind": kind, "categories": [], "extras": {}, "flags": 0}
    opts: set[str] = set()
    i = 0

    def take() -> str:
        nonlocal i
        if i + 1 >= len(args):
            raise ValueError(f'Argument expected after "{args[i]}"')
        i += 1
        return args[i]

    while i < len(args):
        a = args[i]
        if a == "-a":
            fields["action"] = take()
        elif a == "-d":
            fields["data"] = take()
        elif a == "-t":
            fields["mime_type"] = take()
        elif a == "-c":
            fields["categories"].append(take())
        elif a == "-n":
            fields["component"] = normalize_component(take())
        elif a == "-f":
            fields["flags"] |= int(take(), 0)
        elif a in ("-e", "--es"):
            k = take()
            fields["extras"][k] = take()
        elif a == "--esn":
            fields["extras"][take()] = None
        elif a in ("--ei", "--el"):
            k = take()
            fields["extras"][k] = int(take())
        elif a == "--ef":
            k = take()
            fields["extras"][k] = float(take())
        elif a == "--ez":
            k = take()
            v = take().lower()
            fields["extras"][k] = v == "true" or v == "1"
        elif a in ("--eu", "--ecn"):
            k = take()
            fields["extras"][k] = take()
        elif a == "--eia":
            k = take()
            fields["extras"][k] = [int(x) for x in take().split(",")]
        elif a == "--user":
            take()
        elif (
            a in ("-W", "-S", "-D", "--opengl-trace")
            or a.startswith("--activity-")
            or a.startswith("--receiver-")
            or a == "--include-stopped-packages"
        ):
            opts.add(a)
        elif a in ("-P", "--start-profiler", "--R", "-p"):
            take()
        elif a.startswith("-"):
            raise ValueError(f"Unknown option: {a}")
        elif "/" in a and ":" not in a:
            fields["component"] = normalize_component(a)
        elif ":" in a:
            fields["data"] = a
        else:
            fields["package"] = a
        i += 1
    fields["categories"] = tuple(fields["categories"])
    return Intent(**fields), opts


@command("am")
async def _am(ctx: Ctx, argv: list[str]) -> int:
    args = argv[1:]
    if not args:
        ctx.err(am_fmt.usage(ctx.sdk))
        return 1
    if args[0] in ("help", "-h"):
        ctx.out(am_fmt.usage(ctx.sdk))
        return 0
    verb = am_fmt.verbs(ctx.sdk).get(args[0])
    rest = args[1:]
    h = ctx.handset
    if verb is None:
        ctx.err(am_fmt.unknown_command(ctx.sdk, args[0]))
        return 255 if ctx.sdk >= am_fmt.NOUGAT else 1
    if verb == "get-current-user":
        ctx.out("0\n")
        return 0
    if verb == "instrument":
        comps = [a for a in rest if "/" in a or (a and not a.startswith("-"))]
        ctx.out(am_fmt.instrument_failed(ctx.sdk, comps[-1] if comps else ""))
        return 1 if ctx.sdk >= am_fmt.NOUGAT else 0
    if verb in ("force-stop", "kill"):
        pkgs = [a for a in rest if not a.startswith("--user")]
        if not pkgs:
            ctx.err('Error: Argument expected after "' + verb + '"\n')
            return 1
        if verb == "force-stop":
            h.force_stop(pkgs[-1])
        return 0
    kinds = {"start": "activity", "startservice": "service", "broadcast": "broadcast"}
    try:
        intent, opts = _parse_intent(kinds[verb], rest)
    except ValueError as exc:
        ctx.err(f"Error: {exc}\n")
        return 1
    code_on_error = 255 if ctx.sdk >= 26 else 0
    if verb == "start":
        ctx.out(f"Starting: {intent.describe()}\n")
        error = h.start_activity(intent)
        if error:
            ctx.err(error + "\n")
            return code_on_error
        if "-W" in opts:
            comp = h.current_screen.component
            short = Intent(kind="activity", component=comp).short_component()
            ctx.out(f"Status: ok\nActivity: {short}\nThisTime: 312\nTotalTime: 312\nComplete\n")
        return 0
    if verb == "startservice":
        ctx.out(f"Starting service: {intent.describe()}\n")
        error = h.start_service(intent)
        if error:
            ctx.err(error + "\n")
            return code_on_error
        return 0
    ctx.out(f"Broadcasting: {intent.describe()}\n")
    if ctx.sdk >= PROTECTED_FROM_SHELL_SDK and intent.action in PROTECTED_BROADCASTS:
        # 7.0 took the shell off the list of uids that may send protected broadcasts
        denial = (
            f"Permission Denial: not allowed to send broadcast {intent.action} from "
            f"pid={4000 + len(h.processes())}, uid=2000"
        )
        if ctx.sdk >= 26:
            ctx.err(
                f"Exception occurred while executing:\njava.lang.SecurityException: {denial}\n"
                "\tat com.android.server.am.ActivityManagerService.broadcastIntentLocked"
                "(ActivityManagerService.java)\n"
            )
            return 255
        ctx.err(f"Security exception: {denial}\n")
        return 0
    result = h.broadcast(intent)
    ctx.out(f"Broadcast completed: result={result}\n")
    return 0


PROTECTED_FROM_SHELL_SDK = 24
PROTECTED_BROADCASTS = frozenset(
    {
        "android.intent.action.AIRPLANE_MODE",
        "android.intent.action.BOOT_COMPLETED",
        "android.provider.Telephony.SMS_RECEIVED",
        "android.provider.Telephony.SMS_DELIVER",
    }
)


def _pm_user(args: list[str]) -> tuple[list[str], str | None]:
    """Drop ``--user N`` (every user sees the same packages: the handset has user 0 only);
    returns the remaining args and the user asked for."""
    out, user, i = [], None, 0
    while i < len(args):
        if args[i] == "--user" and i + 1 < len(args):
            user = args[i + 1]
            i += 2
            continue
        out.append(args[i])
        i += 1
    return out, user


@command("pm")
async def _pm(ctx: Ctx, argv: list[str]) -> int:
    args, user = _pm_user(argv[1:])
    reg = ctx.handset.pm
    if user not in (None, "0", "all", "current", "cur"):
        ctx.err(f"Error: user {user} does not exist\n" if ctx.sdk >= pm_fmt.NOUGAT else f"Error: Unknown user {user}\n")
        return 255 if ctx.sdk >= pm_fmt.NOUGAT else 1
    if len(args) >= 2 and args[0] == "list" and args[1] in ("packages", "package"):
        flags = {a for a in args[2:] if a.startswith("-")}
        filters = [a for a in args[2:] if not a.startswith("-")]
        ctx.out(pm_fmt.list_packages(reg.all(), flags, filters[-1] if filters else None, "--show-versioncode" in flags))
        return 0
    if args == ["list", "users"]:
        ctx.out(pm_fmt.list_users(ctx.sdk))
        return 0
    if len(args) == 2 and args[0] == "path":
        p = reg.get(args[1])
        if p is None:
            return 1
        ctx.out(f"package:{p.code_path}\n")
        return 0
    if len(args) == 2 and args[0] == "dump":
        p = reg.get(args[1])
        if p is not None:
            ctx.out(pm_fmt.dump_package(ctx.sdk, p))
        return 0
    if len(args) >= 2 and args[0] == "clear":
        ok = ctx.handset.clear_package(args[-1])
        ctx.out("Success\n" if ok else "Failed\n")
        return 0
    if args and args[0] == "install":
        return await _pm_install(ctx, args[1:])
    if len(args) >= 2 and args[0] == "uninstall":
        pkg = args[-1]
        ok = reg.uninstall(pkg)
        if ok:
            ctx.handset.force_stop(pkg)
        ctx.out(pm_fmt.uninstall_result(ok))
        return 0 if ok or ctx.sdk < pm_fmt.NOUGAT else 1
    ctx.err(pm_fmt.usage(ctx.sdk))
    return 1 if ctx.sdk < pm_fmt.NOUGAT else 255


async def _read_exactly(ctx: Ctx, size: int) -> bytes:
    """Read SIZE bytes of stdin (fewer only at EOF), without waiting for EOF."""
    buf = bytearray()
    stdin = ctx.streams.stdin
    while len(buf) < size:
        chunk = await stdin.read()
        if not chunk:
            break
        buf += chunk
    if len(buf) > size and hasattr(stdin, "pending"):
        stdin.pending = bytes(buf[size:])
    return bytes(buf[:size])


async def _pm_install(ctx: Ctx, args: list[str]) -> int:
    """``pm install [-r] [-t] [-g] ... PATH`` (the APK pushed to the handset), or from 7.0
    ``cmd package install -S SIZE`` with the APK on stdin (what adb 29/36 stream)."""
    size: int | None = None
    path = None
    i = 0
    while i < len(args):
        a = args[i]
        if a == "-S" and i + 1 < len(args):
            try:
                size = int(args[i + 1])
            except ValueError:
                ctx.err(f"Error: Invalid size: {args[i + 1]}\n")
                return 1
            i += 2
            continue
        if a in (
            "-i",
            "--user",
            "--install-location",
            "--originating-uri",
            "--referrer",
            "-p",
            "--abi",
            "--pkg",
            "--install-reason",
        ):
            i += 2
            continue
        if not a.startswith("-") or a == "-":
            path = a
        i += 1
    if size is not None or path == "-":
        if ctx.sdk < pm_fmt.NOUGAT:
            ctx.err(pm_fmt.usage(ctx.sdk))
            return 1
        if size is not None:  # the host streams SIZE bytes and keeps its end open for the reply
            data = await _read_exactly(ctx, size)
        else:
            data = await ctx.stdin_bytes()
        if size is not None and len(data) != size:
            _install_reply(ctx, "INSTALL_FAILED_INVALID_APK: apk size mismatch")
            return 1
    elif path is None:
        ctx.err("Error: no package specified\n" if ctx.sdk < pm_fmt.NOUGAT else pm_fmt.usage(ctx.sdk))
        return 1
    else:
        try:
            data = ctx.files.read(ctx.path(path))
        except FsError as exc:
            if ctx.sdk < pm_fmt.NOUGAT:
                _install_reply(ctx, "INSTALL_FAILED_INVALID_URI", path)
            if ctx.sdk >= pm_fmt.NOUGAT:
                ctx.err(f"Error: Can't open file: {path}\n({exc.reason})\n")
            return 1
    try:
        info = ctx.handset.pm.install(data, replace=True)
    except ApkError as exc:
        _install_reply(ctx, f"{exc.code}: {exc.detail}", path)
        return 1
    ctx.handset.log("I", "PackageManager", f"Installed {info.package} versionCode={info.version_code}")
    _install_reply(ctx, None, path)
    return 0


def _install_reply(ctx: Ctx, error: str | None, path: str | None = None) -> None:
    out, err = pm_fmt.install_streams(ctx.sdk, error, path)
    if err:
        ctx.err(err)
    if out:
        ctx.out(out)


# --- input / uiautomator ----------------------------------------------------------------------

_INJECT_DENIED = (
    'Exception in thread "main" java.lang.SecurityException: Injecting to another application '
    "requires INJECT_EVENTS permission\n"
    "\tat android.os.Parcel.readException(Parcel.java:1465)\n"
    "\tat android.os.Parcel.readException(Parcel.java:1419)\n"
    "\tat android.hardware.input.IInputManager$Stub$Proxy.injectInputEvent"
    "(IInputManager.java:350)\n"
    "\tat android.hardware.input.InputManager.injectInputEvent(InputManager.java:641)\n"
    "\tat com.android.commands.input.Input.injectMotionEvent(Input.java:233)\n"
    "\tat com.android.commands.input.Input.run(Input.java:92)\n"
    "\tat com.android.commands.input.Input.main(Input.java:59)\n"
    "\tat com.android.internal.os.RuntimeInit.nativeFinishInit(Native Method)\n"
    "\tat com.android.internal.os.RuntimeInit.main(RuntimeInit.java:243)\n"
    "\tat dalvik.system.NativeStart.main(Native Method)\n"
)

_INPUT_USAGE = """Usage: input [<source>] <command> [<arg>...]

The sources are:\x20
      trackball
      joystick
      touchnavigation
      mouse
      keyboard
      gamepad
      touchpad
      dpad
      stylus
      touchscreen

The commands and default sources are:
      text <string> (Default: touchscreen)
      keyevent [--longpress] <key code number or name> ... (Default: keyboard)
      tap <x> <y> (Default: touchscreen)
      swipe <x1> <y1> <x2> <y2> [duration(ms)] (Default: touchscreen)
      press (Default: trackball)
      roll <dx> <dy> (Default: trackball)
"""

_KEYCODES = {
    "HOME": 3,
    "BACK": 4,
    "CALL": 5,
    "ENDCALL": 6,
    "DPAD_UP": 19,
    "DPAD_DOWN": 20,
    "DPAD_LEFT": 21,
    "DPAD_RIGHT": 22,
    "DPAD_CENTER": 23,
    "VOLUME_UP": 24,
    "VOLUME_DOWN": 25,
    "POWER": 26,
    "CAMERA": 27,
    "TAB": 61,
    "SPACE": 62,
    "ENTER": 66,
    "DEL": 67,
    "MENU": 82,
    "SEARCH": 84,
    "APP_SWITCH": 187,
    "WAKEUP": 224,
}
_SOURCES = {
    "trackball",
    "joystick",
    "touchnavigation",
    "mouse",
    "keyboard",
    "gamepad",
    "touchpad",
    "dpad",
    "stylus",
    "touchscreen",
}


@command("input")
async def _input(ctx: Ctx, argv: list[str]) -> int:
    args = argv[1:]
    if args and args[0] in _SOURCES:
        args = args[1:]
    if not args:
        ctx.err(_INPUT_USAGE)
        return 1
    verb, rest = args[0], args[1:]
    arity = {"tap": (2, 2), "swipe": (4, 5), "text": (1, 1), "keyevent": (1, 99), "press": (0, 0), "roll": (2, 2)}
    if verb not in arity or not arity[verb][0] <= len(rest) <= arity[verb][1]:
        ctx.err(f"Error: Invalid arguments for command: {verb}\n{_INPUT_USAGE}")
        return 1
    if ctx.handset.profile.input_injection_blocked:
        ctx.err(_INJECT_DENIED)
        return 1
    h = ctx.handset
    try:
        if verb == "tap":
            h.tap(int(float(rest[0])), int(float(rest[1])))
        elif verb == "swipe":
            [float(v) for v in rest]
        elif verb == "text":
            h.type_text(rest[0].replace("%s", " "))
        elif verb == "keyevent":
            for key in rest:
                if key == "--longpress":
                    continue
                name = key.upper().removeprefix("KEYCODE_")
                code = int(key) if key.isdigit() else _KEYCODES.get(name)
                if code is None:
                    continue
                if code == 3:
                    h.go_home()
                elif code == 4 or (code == 6 and h.end_call()):
                    h.go_back()
    except ValueError as exc:
        ctx.err(f'Exception in thread "main" java.lang.NumberFormatException: Invalid float: "{exc}"\n')
        return 1
    return 0


@command("uiautomator")
async def _uiautomator(ctx: Ctx, argv: list[str]) -> int:
    args = argv[1:]
    if not args or args[0] != "dump":
        ctx.err(
            "Usage: uiautomator <subcommand> [options]\n\nAvailable subcommands:\n\n"
            "help: displays help message\n\nruntest: executes UI automation tests\n\n"
            "dump: creates an XML dump of current UI hierarchy\n\n"
            "events: prints out accessibility events until terminated\n"
        )
        return 1
    paths = [a for a in args[1:] if not a.startswith("--")]
    target = paths[0] if paths else "/sdcard/window_dump.xml"
    xml = ctx.handset.ui_dump_xml()
    dev = ctx.path(target)
    if dev in ("/dev/tty", "/dev/stdout"):
        ctx.out(xml)
    else:
        try:
            ctx.files.write(dev, xml.encode("utf-8"))
        except FsError as exc:
            ctx.err(f"ERROR: could not write {target}: {exc.reason}\n")
            return 1
    ctx.out(f"UI hierchary dumped to: {dev}\n")
    return 0


# --- dumpsys ----------------------------------------------------------------------------------


@command("dumpsys")
async def _dumpsys(ctx: Ctx, argv: list[str]) -> int:
    h = ctx.handset
    if len(argv) == 1 or argv[1] == "-l":
        ctx.out("Currently running services:\n")
        for name, _ in sorted(_services(ctx)):
            ctx.out(f"  {name}\n")
        return 0
    name = argv[1]
    if name not in dict(_services(ctx)):
        ctx.err(f"Can't find service: {name}\n")
        return 0
    sims = h.identity.sims
    if name == "iphonesubinfo":
        # KitKat's PhoneSubInfo.dump(); from 5.0 the service (PhoneSubInfoController) has no
        # dump() and dumpsys prints nothing
        if h.profile.dumpsys_iphonesubinfo and sims:
            ctx.out(f"Phone Subscriber Info:\n  Phone Type = GSM\n  Device ID = {sims[0].imei}\n")
        return 0
    if name == "telephony.registry":
        ctx.out("last known state:\n")
        for sim in sims:
            state = h.call_state if sim.slot == 0 else 0
            ctx.out(
                f"  Phone Id={sim.slot}\n  mCallState={state}\n  mCallIncomingNumber=\n"
                f"  mServiceState=0 0 voice home data home {sim.operator_name} "
                f"{sim.operator_name} {sim.mcc_mnc}  UMTS UMTS CSS not supported -1 -1 "
                "RoamInd=-1 DefRoamInd=-1 EmergOnly=false\n"
                "  mSignalStrength=SignalStrength: 14 0 -120 -160 -120 -1 -1 99 2147483647 "
                "2147483647 2147483647 2147483647 2147483647 gsm|lte\n"
                "  mMessageWaiting=false\n  mCallForwarding=false\n  mDataActivity=0\n"
                "  mDataConnectionState=2\n  mDataConnectionPossible=true\n"
                f"  mDataConnectionApn=cmnet\n"
            )
        return 0
    if name == "account":
        from ..screens import XIAOMI_ACCOUNT_TYPE, micloud_account

        account = micloud_account(h)
        ctx.out("User UserInfo{0:Owner:13}:\n")
        ctx.out(f"  Accounts: {1 if account else 0}\n")
        if account:
            ctx.out(f"    Account {{name={account}, type={XIAOMI_ACCOUNT_TYPE}}}\n")
        ctx.out("\n  Active Sessions: 0\n")
        return 0
    text = dumpsys_text(h, name, argv[2:])
    if text:
        ctx.out(text)
    return 0


def top_activity(h) -> TopActivity:
    comp = h.current_screen.component
    pids = h.pids_of(comp.split("/", 1)[0])
    uids = [p.uid for p in h.processes() if pids and p.pid == pids[0]]
    return TopActivity(comp, pids[0] if pids else 0, uid=uids[0] if uids else 10001)


def display_state(h) -> Display:
    from ..handset import SCREEN_H, SCREEN_W

    # 720x1280 at xhdpi (320) is the Redmi/Mi 720p panel's density (a guess kept as data)
    return Display(SCREEN_W, SCREEN_H, 320, 0, h.screen_on)


def app_processes(h) -> list[Process]:
    return [Process(p.pid, p.name, p.user, p.uid) for p in h.processes() if p.ppid == h.zygote_pid]


def dumpsys_text(h, name: str, args: list[str]) -> str:
    """The text ``dumpsys NAME ARGS`` prints for the sections real tools read ("" if none)."""
    sdk = h.profile.sdk
    if name == "activity":
        sub = args[0] if args else ""
        top = top_activity(h)
        if sub in ("top",):
            return dumpsys_fmt.activity_top(sdk, top)
        if sub in ("activities", "a"):
            return dumpsys_fmt.activity_activities(sdk, top)
        if sub in ("processes", "p"):
            return dumpsys_fmt.activity_processes(app_processes(h))
        return dumpsys_fmt.activity_activities(sdk, top) + dumpsys_fmt.activity_processes(app_processes(h))
    if name == "window":
        return dumpsys_fmt.window(sdk, top_activity(h), args[0] if args else None)
    if name == "power":
        return dumpsys_fmt.power(sdk, display_state(h))
    if name == "battery":
        return dumpsys_fmt.battery(sdk, Battery())
    if name == "display":
        return dumpsys_fmt.display(sdk, display_state(h))
    if name == "user":
        return dumpsys_fmt.user(sdk)
    if name == "meminfo":
        return dumpsys_fmt.meminfo(sdk, app_processes(h), int(h.uptime() * 1000))
    if name == "input_method":
        return (
            "Input Method Manager Service state:\n  mCurMethodId=com.baidu.input_mi/.ImeService\n  mInputShown=false\n"
        )
    if name == "package" and args:
        p = h.pm.get(args[-1])
        return pm_fmt.dump_package(sdk, p) if p is not None else ""
    return ""


# --- logcat -----------------------------------------------------------------------------------


@command("logcat")
async def _logcat(ctx: Ctx, argv: list[str]) -> int:
    """logcat (system/core/logcat/logcat.cpp): -d, -c/--clear, -b BUF, -v FORMAT[,MOD],
    -t/-T COUNT, -f FILE, -s, TAG:LEVEL filters; streams until the caller goes away."""
    h = ctx.handset
    args = argv[1:]
    dump = clear = False
    fmt = "threadtime"
    mods: set[str] = set()
    tail: int | None = None
    since: float | None = None
    outfile: str | None = None
    specs: list[str] = []
    silence_rest = False
    expanded: list[str] = []
    for a in args:  # --opt=value, and bundled short options without values (-dv -> -d -v)
        if a.startswith("--") and "=" in a:
            expanded += a.split("=", 1)
        else:
            expanded.append(a)
    args = expanded
    long_opts = {"--clear": "-c", "--dump": "-d", "--format": "-v", "--buffer": "-b", "--file": "-f", "--last": "-L"}
    i = 0
    while i < len(args):
        a = long_opts.get(args[i], args[i])
        if a == "-d":
            dump = True
        elif a == "-c":
            clear = True
        elif a == "-L":
            dump = True
        elif a in ("-v", "-b", "-t", "-T", "-f", "-r", "-n", "-G", "-e") or (a == "-s" and i + 1 < len(args)):
            if a == "-s":
                silence_rest = True
                i += 1
                continue
            if i + 1 >= len(args):
                ctx.err(f"logcat: option requires an argument -- '{a[1]}'\n")
                return 1
            value = args[i + 1]
            if a == "-v":
                for part in value.split(","):
                    if part in logcat_fmt.FORMATS:
                        fmt = part
                    elif part in logcat_fmt.MODIFIERS and ctx.sdk >= 24:
                        mods.add(part)
                    else:
                        ctx.err(f"Invalid parameter '{part}' to -v\n")
                        return 1
            elif a == "-b":
                if any(b not in logcat_fmt.BUFFERS for b in value.split(",")):
                    ctx.err(
                        f"logcat: unknown buffer {value}\n"
                        if ctx.sdk >= 24
                        else f"Unable to open log device '/dev/log/{value}': No such file or directory\n"
                    )
                    return 1
            elif a == "-f":
                outfile = value
            elif a in ("-t", "-T"):
                try:
                    tail = int(value)
                except ValueError:
                    since = logcat_fmt.parse_since(value, time.time())
                    if since is None:
                        ctx.err(f"logcat: -t {value}: invalid count or time\n")
                        return 1
                dump = dump or a == "-t"
            i += 2
            continue
        elif a == "-s":
            silence_rest = True
        elif a == "-g":
            ctx.out("main: ring buffer is 256Kb (0Kb consumed), max entry is 5120b, max payload is 4076b\n")
            return 0
        elif a.startswith("-"):
            ctx.err(f"logcat: invalid option -- '{a[1:2]}'\n")
            return 1
        else:
            specs.append(a)
        i += 1
    if clear:
        h.log_clear()
        return 0
    levels: dict[str, int] = {}
    default_level = 9 if silence_rest else 0
    order = "VDIWEFS"
    for spec in specs:
        tag, _, level = spec.partition(":")
        lvl = order.index(level.upper()[:1]) if level and level.upper()[:1] in order else 0
        if tag == "*":
            default_level = lvl if lvl < 6 else 9
        else:
            levels[tag] = lvl if lvl < 6 else 9

    def wanted(entry) -> bool:
        return order.index(entry.priority) >= levels.get(entry.tag, default_level)

    chunks: list[str] = []

    def emit(text: str) -> None:
        if outfile is None:
            ctx.out(text)
        else:
            chunks.append(text)

    header = logcat_fmt.header(ctx.sdk)
    entries = [e for e in h.log_entries() if wanted(e) and (since is None or e.time >= since)]
    if tail is not None:
        entries = entries[-tail:] if tail > 0 else []
    printed_header = False
    for e in entries:
        if not printed_header:
            emit(header + "\n")
            printed_header = True
        emit(logcat_fmt.format_entry(e, fmt, mods) + "\n")
    if dump:
        if outfile is not None:
            try:
                ctx.files.write(ctx.path(outfile), "".join(chunks).encode())
            except FsError as exc:
                ctx.err(f"couldn't open output file: {exc.reason}\n")
                return 1
        return 0
    # Stream until the caller cancels (the ADB stream closed).
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()

    def listen(e: LogEntry) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, e)

    remove = h.add_log_listener(listen)
    try:
        while True:
            e = await queue.get()
            if wanted(e):
                if not printed_header:
                    emit(header + "\n")
                    printed_header = True
                emit(logcat_fmt.format_entry(e, fmt, mods) + "\n")
                if outfile is not None:
                    with contextlib.suppress(FsError):
                        ctx.files.write(ctx.path(outfile), "".join(chunks).encode())
    finally:
        remove()


# --- processes & identity ---------------------------------------------------------------------

_PS_HEADER = "USER           PID  PPID     VSZ    RSS WCHAN            ADDR S NAME\n"


@command("ps")
async def _ps(ctx: Ctx, argv: list[str]) -> int:
    args = argv[1:]
    show_all = ctx.sdk < 26 or any(a in ("-A", "-e", "-ef", "-Af") for a in args)
    pids: set[int] | None = None
    names = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "-p" and i + 1 < len(args):
            pids = {int(x) for x in args[i + 1].split(",") if x.isdigit()}
            show_all = True
            i += 2
            continue
        if not a.startswith("-"):
            names.append(a)
            show_all = True
        i += 1
    ctx.out(_PS_HEADER)
    procs = ctx.handset.processes()
    if not show_all:
        procs = [p for p in procs if p.uid == 2000]
    for p in procs:
        if pids is not None and p.pid not in pids:
            continue
        if names and not any(n in p.name for n in names):
            continue
        ctx.out(f"{p.user:<12} {p.pid:>5} {p.ppid:>5} {p.vsz:>7} {p.rss:>6} {p.wchan:<16} {0:>4} {p.state} {p.name}\n")
    return 0


@command("pidof")
async def _pidof(ctx: Ctx, argv: list[str]) -> int:
    names = [a for a in argv[1:] if not a.startswith("-")]
    pids: list[int] = []
    for name in names:
        pids.extend(ctx.handset.pids_of(name))
    if not pids:
        return 1
    ctx.out(" ".join(str(p) for p in sorted(pids, reverse=True)) + "\n")
    return 0


_ID_GROUPS = (
    "1003(graphics),1004(input),1007(log),1009(mount),1011(adb),1015(sdcard_rw),"
    "1028(sdcard_r),3001(net_bt_admin),3002(net_bt),3003(inet),3006(net_bw_stats)"
)


@command("id")
async def _id(ctx: Ctx, argv: list[str]) -> int:
    flags = "".join(a[1:] for a in argv[1:] if a.startswith("-"))
    root = ctx.session.uid == 0
    if "u" in flags or "g" in flags:
        ctx.out(("root" if root else "shell") if "n" in flags else ("0" if root else "2000"))
        ctx.out("\n")
        return 0
    if root:
        ctx.out("uid=0(root) gid=0(root) groups=0(root) context=u:r:su:s0\n")
        return 0
    ctx.out(f"uid=2000(shell) gid=2000(shell) groups={_ID_GROUPS} context=u:r:shell:s0\n")
    return 0


@command("whoami")
async def _whoami(ctx: Ctx, argv: list[str]) -> int:
    ctx.out("root\n" if ctx.session.uid == 0 else "shell\n")
    return 0


@command("su")
async def _su(ctx: Ctx, argv: list[str]) -> int:
    """/system/xbin/su on a rooted build (profile ``su``): runs CMD (or stdin) as uid 0 in the
    handset's sandbox (a root shell without capabilities): no host command runs."""
    if not ctx.handset.profile.su:
        ctx.err(f"/system/bin/sh: {argv[0]}: inaccessible or not found\n")
        return 127
    args = argv[1:]
    while args and args[0] in ("root", "0", "-", "-l", "--login"):
        args = args[1:]
    if args and args[0] in ("-c", "--command"):
        if len(args) < 2:
            ctx.err("su: option requires an argument -- c\n")
            return 1
        script = " ".join(args[1:])
    elif args:
        ctx.err(f"su: unknown option {args[0]}\n")
        return 1
    else:
        script = (await ctx.stdin_bytes()).decode("utf-8", "surrogateescape")
    if ctx.run_as_root is None:
        ctx.err("su: no sandbox to run a root shell in\n")
        return 1
    return await ctx.run_as_root(script, ctx)


@command("getenforce")
async def _getenforce(ctx: Ctx, argv: list[str]) -> int:
    ctx.out("Enforcing\n" if ctx.sdk >= 19 else "Permissive\n")
    return 0


# --- cmd (7.0+) and reboot ----------------------------------------------------------------------

CMD_MIN_SDK = 24  # /system/bin/cmd came with Android 7.0
AIRPLANE_CMD_MIN_SDK = 28  # ConnectivityService's shell command "airplane-mode": Android 9
_CONNECTIVITY_HELP = """Connectivity service commands:
  help
    Print this help text.
  airplane-mode [enable|disable]
    Turn airplane mode on or off.
  airplane-mode
    Get airplane mode.
"""


@command("cmd")
async def _cmd(ctx: Ctx, argv: list[str]) -> int:
    """``cmd SERVICE ARGS``: a service's shell command. ``activity``/``package``/``settings`` run
    what am/pm/settings run; ``connectivity airplane-mode`` toggles the radio as the system does
    (the setting, then AIRPLANE_MODE broadcast by the system, which the shell may not send)."""
    if ctx.sdk < CMD_MIN_SDK:
        ctx.err(f"/system/bin/sh: {argv[0]}: inaccessible or not found\n")
        return 127
    args = argv[1:]
    if not args:
        ctx.err("cmd: No service specified; use -l to list all services\n")
        return 20
    names = {name for name, _ in _services(ctx)} | ({"settings"} if ctx.sdk >= 26 else set())
    if args[0] == "-l":
        ctx.out("Currently running services:\n" + "".join(f"  {n}\n" for n in sorted(names)))
        return 0
    service, rest = args[0], args[1:]
    if service not in names:
        ctx.err(f"cmd: Can't find service: {service}\n")
        return 20
    delegate = {"activity": _am, "package": _pm, "settings": _settings}.get(service)
    if delegate is not None:
        return await delegate(ctx, [service, *rest])
    if service == "connectivity" and ctx.sdk >= AIRPLANE_CMD_MIN_SDK:
        return _connectivity(ctx, rest)
    ctx.err("No shell command implementation.\n")
    return 0


def _connectivity(ctx: Ctx, args: list[str]) -> int:
    h = ctx.handset
    if not args or args[0] == "help":
        ctx.out(_CONNECTIVITY_HELP)
        return 0
    if args[0] == "airplane-mode" and len(args) == 1:
        ctx.out("enabled\n" if h.settings_get("global", "airplane_mode_on") == "1" else "disabled\n")
        return 0
    if args[0] == "airplane-mode" and args[1] in ("enable", "disable"):
        on = args[1] == "enable"
        h.settings_put("global", "airplane_mode_on", "1" if on else "0")
        h.broadcast(Intent(kind="broadcast", action="android.intent.action.AIRPLANE_MODE", extras={"state": on}))
        return 0
    ctx.out(_CONNECTIVITY_HELP)
    return 255


@command("reboot")
async def _reboot(ctx: Ctx, argv: list[str]) -> int:
    """``reboot [-p] [REASON]``: sets sys.powerctl (the shell user may, as adbd's ``reboot:``
    service does); the lab power-cycles the handset a moment later."""
    args = argv[1:]
    poweroff = "-p" in args
    reason = next((a for a in args if not a.startswith("-")), "")
    ctx.handset.request_reboot(reason, poweroff=poweroff)
    return 0


# --- screen, window manager, network, bug reports, app_process ---------------------------------

_SCREENCAP_USAGE = """usage: screencap [-hp] [-d display-id] [FILENAME]
   -h: this message
   -p: save the file as a png.
   -d: specify the display id to capture, default 0.
If FILENAME ends with .png it will be saved as a png.
If FILENAME is not given, the results will be printed to stdout.
"""


def screen_image(h):
    """The current screen rendered from its view hierarchy (render.py)."""
    from ..handset import SCREEN_H, SCREEN_W

    return render.render(h.current_screen.root, (SCREEN_W, SCREEN_H))


@command("screencap")
async def _screencap(ctx: Ctx, argv: list[str]) -> int:
    """frameworks/base/cmds/screencap/screencap.cpp: PNG with -p or a .png name, else the raw
    header + RGBA pixels; to FILENAME or stdout."""
    args = argv[1:]
    as_png = False
    target = None
    i = 0
    while i < len(args):
        a = args[i]
        if a == "-h":
            ctx.err(_SCREENCAP_USAGE)
            return 0
        if a == "-p":
            as_png = True
        elif a == "-a" or a == "":  # -a: every display (we have one); Mobly passes '' without it
            pass
        elif a == "-d" and i + 1 < len(args):
            if args[i + 1] != "0":
                ctx.err(f"Display Id '{args[i + 1]}' is not valid.\n")
                return 1
            i += 1
        elif a.startswith("-"):
            ctx.err(_SCREENCAP_USAGE)
            return 1
        else:
            target = a
        i += 1
    img = screen_image(ctx.handset)
    if target is not None and target.endswith(".png"):
        as_png = True
    data = render.png(img) if as_png else render.raw(img, ctx.sdk)
    if target is None:
        ctx.out(data)
        return 0
    try:
        ctx.files.write(ctx.path(target), data)
    except FsError as exc:
        ctx.err(f"Error opening file: {target} ({exc.reason})\n")
        return 1
    return 0


@command("wm")
async def _wm(ctx: Ctx, argv: list[str]) -> int:
    args = argv[1:]
    d = display_state(ctx.handset)
    if args == ["size"]:
        ctx.out(wm_fmt.size(d))
        return 0
    if args == ["density"]:
        ctx.out(wm_fmt.density(d))
        return 0
    ctx.err(wm_fmt.USAGE)
    return 1


def wlan(h) -> ip_fmt.Interface:
    return ip_fmt.Interface("wlan0", h.wlan_address, h.wlan_mac)


@command("ip")
async def _ip(ctx: Ctx, argv: list[str]) -> int:
    args = [a for a in argv[1:] if a not in ("-4", "-f", "inet")]
    if not args or args[0] not in ("addr", "address", "a"):
        ctx.err(
            "Usage: ip [ OPTIONS ] OBJECT { COMMAND | help }\nwhere  OBJECT := { link | address | "
            "addrlabel | route | rule | neigh | ntable | tunnel | tuntap | maddress | mroute | "
            "mrule | monitor | xfrm | netns | l2tp | tcp_metrics | token }\n"
        )
        return 255
    rest = [a for a in args[1:] if a not in ("show", "list", "dev")]
    text = ip_fmt.ip_addr([wlan(ctx.handset)], rest[0] if rest else None)
    if text is None:
        ctx.err(f'Device "{rest[0]}" does not exist.\n')
        return 1
    ctx.out(text)
    return 0


@command("ifconfig")
async def _ifconfig(ctx: Ctx, argv: list[str]) -> int:
    iface = wlan(ctx.handset)
    names = argv[1:]
    if names and names[0] != iface.name:
        ctx.err(
            f"ifconfig: {names[0]}: No such device\n"
            if ctx.sdk < ip_fmt.MARSHMALLOW
            else "ifconfig: ioctl 8913: No such device\n"
        )
        return 1
    ctx.out(ip_fmt.ifconfig(ctx.sdk, iface))
    return 0


BUGREPORTZ_MIN_SDK = 24  # frameworks/native/cmds/bugreportz: Android 7.0


def bugreport_text(h) -> str:
    """The sections of a bug report (frameworks/native/cmds/dumpstate/dumpstate.cpp prints
    ``== dumpstate: <time>`` then ``------ NAME (cmd) ------`` per section)."""
    import time as _time

    props = h.props()
    parts = [
        "========================================================",
        f"== dumpstate: {_time.strftime('%Y-%m-%d %H:%M:%S')}",
        "========================================================",
        "",
        f"Build: {props.get('ro.build.display.id', props.get('ro.build.id', ''))}",
        f"Build fingerprint: '{props.get('ro.build.fingerprint', '')}'",
        "Kernel: Linux version 3.4.0",
        "",
        "------ SYSTEM PROPERTIES (getprop) ------",
    ]
    parts += [f"[{k}]: [{v}]" for k, v in sorted(props.items())]
    parts += ["", "------ SYSTEM LOG (logcat -v threadtime -d *:v) ------"]
    parts += [e.format("threadtime") for e in h.log_entries()]
    for name in ("activity", "window", "power", "battery", "display", "user", "meminfo"):
        parts += ["", f"DUMP OF SERVICE {name}:", dumpsys_text(h, name, [])]
    return "\n".join(parts) + "\n"


@command("bugreportz")
async def _bugreportz(ctx: Ctx, argv: list[str]) -> int:
    """frameworks/native/cmds/bugreportz/bugreportz.cpp: ``-v`` prints the version (1.1 on
    7.1+) to stderr, otherwise writes the zip and prints ``OK:<path>`` (``-p`` adds
    ``BEGIN:``/``PROGRESS:`` lines first)."""
    if ctx.sdk < BUGREPORTZ_MIN_SDK:
        ctx.err(f"/system/bin/sh: {argv[0]}: not found\n")
        return 127
    args = argv[1:]
    if "-v" in args:  # bugreportz.cpp prints the version on stderr; adb's bugreport.cpp reads it there
        ctx.err("1.1\n")
        return 0
    import io
    import time as _time
    import zipfile

    h = ctx.handset
    stamp = _time.strftime("%Y-%m-%d-%H-%M-%S")
    base = f"bugreport-{h.getprop('ro.product.device')}-{h.getprop('ro.build.id')}-{stamp}"
    # 7.0-10 write into the shell app's own data dir; 11 names it /bugreports (the same
    # directory, shell-owned, so `rm` after `adb pull` works: Mobly does that). The 11 path is
    # from real devices' `adb bugreport` output, not from a source file we read.
    folder = "/bugreports" if ctx.sdk >= 30 else "/data/user_de/0/com.android.shell/files/bugreports"
    path = f"{folder}/{base}.zip"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{base}.txt", bugreport_text(h))
        zf.writestr("main_entry.txt", f"{base}.txt")
        zf.writestr("version.txt", "2.0")
    if "-p" in args:
        ctx.out(f"BEGIN:{path}\nPROGRESS:100/100\n")
    try:  # dumpstate (uid system) writes it, not the shell: the shell may only read it back
        host = h.fs.host_path(path)
        host.parent.mkdir(parents=True, exist_ok=True)
        host.write_bytes(buf.getvalue())
    except OSError as exc:
        ctx.out(f"FAIL:Could not write {path}: {exc.strerror}\n")
        return 1
    ctx.out(f"OK:{path}\n")
    return 0


@command("bugreport")
async def _bugreport(ctx: Ctx, argv: list[str]) -> int:
    """Before 7.0 ``bugreport`` prints the dumpstate text; after it the text is gone (adb
    pulls the bugreportz zip instead) and the shell command says so."""
    if ctx.sdk >= BUGREPORTZ_MIN_SDK:
        ctx.err(
            "=============================================================================\n"
            "WARNING: Flat (text file, non-zipped) bugreports are deprecated.\n"
            "WARNING: Please generate zipped bugreports instead.\n"
            "WARNING: On the host use: adb bugreport filename.zip\n"
            "WARNING: On the device use: bugreportz\n"
            "WARNING: bugreportz will output the filename to use with adb pull.\n"
            "=============================================================================\n"
        )
    ctx.out(bugreport_text(ctx.handset))
    return 0


@command("app_process", "app_process32", "app_process64", "dalvikvm")
async def _app_process(ctx: Ctx, argv: list[str]) -> int:
    """There is no Java VM on the emulated handset: say so as Android's runtime does when it
    cannot start one (frameworks/base/cmds/app_process/app_main.cpp / AndroidRuntime.cpp)."""
    ctx.err(
        f"{argv[0]}: JNI_CreateJavaVM failed: the emulated handset has no Java VM (ART/Dalvik); "
        "Java code (uiautomator jars, instrumentation, app_process tools) cannot run here\n"
    )
    return 1
