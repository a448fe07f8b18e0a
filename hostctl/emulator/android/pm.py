"""What ``pm`` / ``cmd package`` print, per release, and the install outcomes.

Sources: 4.4/5.0 frameworks/base/cmds/pm/src/com/android/commands/pm/Pm.java (``runList``
takes ``package`` or ``packages``; ``runInstall`` prints ``\\tpkg: PATH`` then ``Success`` or
``Failure [INSTALL_...]``; ``runUninstall`` prints ``Success`` / ``Failure [DELETE_FAILED_INTERNAL_ERROR]``);
from 7.0 services/core/java/com/android/server/pm/PackageManagerShellCommand.java
(``list packages`` with ``--user``; ``install -S SIZE`` reads the APK from stdin, which is what
adb 29/36 stream through ``exec:cmd package install -S``; ``pm`` itself became a wrapper that
runs ``cmd package`` in 7.0). ``dumpsys package PKG``: services/core/.../pm/PackageManagerService.java
``dumpPackagesLPr`` (``Package [pkg] (hash):``, ``versionCode=N targetSdk=N``, ``versionName=``).
"""

from __future__ import annotations

from .model import Package, object_id

NOUGAT = 24

USAGE_KITKAT = """usage: pm list packages [-f] [-d] [-e] [-s] [-3] [-i] [-u] [--user USER_ID] [FILTER]
       pm list permission-groups
       pm list permissions [-g] [-f] [-d] [-u] [GROUP]
       pm list instrumentation [-f] [TARGET-PACKAGE]
       pm list features
       pm list libraries
       pm list users
       pm path PACKAGE
       pm dump PACKAGE
       pm install [-l] [-r] [-t] [-i INSTALLER_PACKAGE_NAME] [-s] [-f]
                  [--algo <algorithm name> --key <key-in-hex> --iv <IV-in-hex>]
                  [--originating-uri <URI>] [--referrer <URI>] PATH
       pm uninstall [-k] [--user USER_ID] PACKAGE
       pm clear [--user USER_ID] PACKAGE
       pm enable [--user USER_ID] PACKAGE_OR_COMPONENT
       pm disable [--user USER_ID] PACKAGE_OR_COMPONENT
"""

HELP_SHELL_COMMAND = """Package manager (package) commands:
  help
    Print this help text.

  path [--user USER_ID] PACKAGE
    Print the path to the .apk of the given PACKAGE.

  dump PACKAGE
    Print various system state associated with the given PACKAGE.

  list packages [-f] [-d] [-e] [-s] [-3] [-i] [-l] [-u] [-U]
      [--show-versioncode] [--apex-only] [--uid UID] [--user USER_ID] [FILTER]
    Prints all packages; optionally only those whose name contains
    the text in FILTER.

  install [-rtfdgw] [-i PACKAGE] [--user USER_ID|all|current]
       [-p INHERIT_PACKAGE] [--install-location 0/1/2]
       [-S BYTES] [PATH|-]
    Install an application.  Must provide the apk data to install, either as a
    file path or '-' to read from stdin.

  uninstall [-k] [--user USER_ID] [--versionCode VERSION_CODE] PACKAGE
    Remove the given package name from the system.

  clear [--user USER_ID] PACKAGE
    Deletes all data associated with a package.
"""


def list_users(sdk: int) -> str:
    """``pm list users``: 4.4-6.0 Pm.java ``runListUsers``, from 7.0 UserManagerService's shell
    ``list`` (what ``cmd package list users`` calls): ``Users:`` then one ``\t`` +
    ``UserInfo.toString()`` (``UserInfo{id:name:hex flags}``) + `` running`` per user. The handset
    has its owner only: flags PRIMARY|ADMIN|INITIALIZED (0x13), plus FULL|SYSTEM (0xc00) from 7.0,
    where user 0 became the system user. The name ``Owner`` is R.string.owner_name's English
    text; a zh-CN build may show its translation (a guess: not seen on a MIUI dump)."""
    flags = 0xC13 if sdk >= NOUGAT else 0x13
    return f"Users:\n\tUserInfo{{0:Owner:{flags:x}}} running\n"


def usage(sdk: int) -> str:
    return HELP_SHELL_COMMAND if sdk >= NOUGAT else USAGE_KITKAT


def list_packages(
    packages: list[Package], flags: set[str], name_filter: str | None, show_versioncode: bool = False
) -> str:
    out = []
    for p in sorted(packages, key=lambda p: p.name):
        if ("-3" in flags and p.system) or ("-s" in flags and not p.system):
            continue
        if name_filter and name_filter not in p.name:
            continue
        line = f"package:{p.code_path}={p.name}" if "-f" in flags else f"package:{p.name}"
        if show_versioncode:
            line += f" versionCode:{p.version_code}"
        if "-U" in flags:
            line += f" uid:{p.uid}"
        out.append(line + "\n")
    return "".join(out)


def install_result(sdk: int, error: str | None, path: str | None = None) -> str:
    """``Success``, or ``Failure [INSTALL_...]``; before 7.0 prefixed with ``\\tpkg: PATH``."""
    head = f"\tpkg: {path}\n" if sdk < NOUGAT and path else ""
    return head + ("Success\n" if error is None else f"Failure [{error}]\n")


def install_streams(sdk: int, error: str | None, path: str | None = None) -> tuple[str, str]:
    """(stdout, stderr) of an install: before 7.0 Pm.java prints ``\tpkg: PATH`` and
    ``Failure [..]`` with System.err and only ``Success`` with System.out; from 7.0
    PackageManagerShellCommand prints both outcomes on its output writer."""
    if sdk >= NOUGAT:
        return install_result(sdk, error, path), ""
    head = f"\tpkg: {path}\n" if path else ""
    if error is None:
        return "Success\n", head
    return "", head + f"Failure [{error}]\n"


def uninstall_result(ok: bool) -> str:
    return "Success\n" if ok else "Failure [DELETE_FAILED_INTERNAL_ERROR]\n"


def dump_package(sdk: int, p: Package) -> str:
    code_dir = p.code_path.rsplit("/", 1)[0] if p.code_path.endswith("/base.apk") else p.code_path
    return (
        f"Packages:\n  Package [{p.name}] ({object_id('pkg', p.name)}):\n"
        f"    userId={p.uid}\n"
        f"    pkg=Package{{{object_id('pkgobj', p.name)} {p.name}}}\n"
        f"    codePath={code_dir}\n    resourcePath={code_dir}\n"
        f"    versionCode={p.version_code} targetSdk={p.target_sdk or sdk}\n"
        f"    versionName={p.version_name}\n"
        f"    flags=[ {'SYSTEM ' if p.system else ''}HAS_CODE ALLOW_CLEAR_USER_DATA ]\n"
        f"    timeStamp={p.first_install}\n"
        f"    firstInstallTime={p.first_install}\n"
        f"    lastUpdateTime={p.first_install}\n"
        f"    User 0: installed=true hidden=false stopped=false notLaunched=false enabled=0\n"
    )
