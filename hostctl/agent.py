"""The Frida agent bundle: build it from ``agent/`` with ``frida.Compiler``, find it, load it.

Where the bundle is looked for, first hit wins:

1. ``$HOSTCTL_AGENT_DIR/_agent.js`` when ``HOSTCTL_AGENT_DIR`` is set (an override: a folder of
   your own build; nothing else is tried then);
2. ``hostctl/_agent.js`` inside the installed package: a wheel carries it, built when the wheel
   was built (``setup.py`` calls :func:`build_for_package`);
3. ``agent/_agent.js`` of a source checkout, which ``make agent`` writes (an editable install).

Nothing is fetched at run time: if no bundle is found, :func:`source` says how to get one.

This module imports nothing of hostctl and only the standard library at import time, so the
build (``setup.py``) loads it by path before hostctl's dependencies are installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["AgentBundleError", "agent_dir", "build", "build_for_package", "bundle_path", "source"]

ENTRY = "src/index.ts"
BUNDLE = "_agent.js"
PACKAGE_DIR = Path(__file__).resolve().parent
CHECKOUT_AGENT = PACKAGE_DIR.parent / "agent"
NPM_TIMEOUT = 600.0
# what the bundle is built from: a bundle older than any of these is stale
SOURCES = ("package.json", "package-lock.json", "tsconfig.json", "src")


class AgentBundleError(RuntimeError):
    pass


def agent_dir() -> Path:
    """The agent's source folder (``HOSTCTL_AGENT_DIR`` overrides the checkout's ``agent/``)."""
    return Path(os.environ.get("HOSTCTL_AGENT_DIR") or CHECKOUT_AGENT)


def bundle_path() -> Path:
    """The bundle :func:`source` reads (see the module's docstring for the order)."""
    override = os.environ.get("HOSTCTL_AGENT_DIR")
    if override:
        return Path(override) / BUNDLE
    packaged = PACKAGE_DIR / BUNDLE
    if packaged.is_file():
        return packaged
    return CHECKOUT_AGENT / BUNDLE


def npm_ci(root: Path) -> None:
    """Install the agent's npm packages from its lock file (npm's registry only)."""
    npm = shutil.which("npm")
    if npm is None:
        raise AgentBundleError(
            "npm is not installed: it fetches the agent's two npm packages (frida-java-bridge and "
            "the Frida types) from agent/package-lock.json. Install Node.js and npm (Debian/Ubuntu: "
            "`sudo apt-get install npm`; macOS: `brew install node`), or build the bundle elsewhere "
            "and set HOSTCTL_AGENT_BUNDLE=/path/to/_agent.js for the build"
        )
    try:
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=root, check=True, timeout=NPM_TIMEOUT
        )
    except subprocess.CalledProcessError as exc:
        raise AgentBundleError(f"`npm ci` in {root} failed (exit {exc.returncode})") from None
    except subprocess.TimeoutExpired:
        raise AgentBundleError(f"`npm ci` in {root} did not finish within {NPM_TIMEOUT:.0f} s") from None


def build(out: Path | None = None, root: Path | None = None) -> Path:
    """Compile ``agent/src/index.ts`` and its npm imports into one script for Frida 17."""
    import frida

    root = root or agent_dir()
    if not (root / "node_modules" / "frida-java-bridge").is_dir():
        raise AgentBundleError(f"{root}/node_modules is missing: run `npm ci` in {root} (or `make agent`)")
    compiler = frida.Compiler()
    problems: list[str] = []
    compiler.on("diagnostics", lambda diags: problems.extend(str(d) for d in diags))
    try:
        bundle = compiler.build(ENTRY, project_root=str(root))
    except frida.InvalidArgumentError as exc:
        raise AgentBundleError(f"agent build failed: {exc}; {'; '.join(problems)}") from exc
    out = out or root / BUNDLE
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(bundle, encoding="utf-8")
    tmp.replace(out)
    return out


def _newest_source(root: Path) -> float:
    times = []
    for name in SOURCES:
        path = root / name
        if path.is_dir():
            times += [p.stat().st_mtime for p in path.rglob("*") if p.is_file()]
        elif path.exists():
            times.append(path.stat().st_mtime)
    return max(times, default=0.0)


def build_for_package(root: Path, out: Path, log=print) -> Path:
    """The bundle a wheel carries, written to ``out`` (``hostctl/_agent.js`` in the build tree).

    ``HOSTCTL_AGENT_BUNDLE`` names a bundle built beforehand (a packager without npm); else a
    checkout's ``agent/_agent.js`` newer than every agent source is taken as it is; else the npm
    packages are installed from the lock file (when missing) and the bundle is compiled."""
    given = os.environ.get("HOSTCTL_AGENT_BUNDLE")
    if given:
        if not Path(given).is_file():
            raise AgentBundleError(f"HOSTCTL_AGENT_BUNDLE={given}: no such file")
        log(f"hostctl agent: using {given} (HOSTCTL_AGENT_BUNDLE)")
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(given, out)
        return out
    if not (root / ENTRY).is_file():
        raise AgentBundleError(f"{root / ENTRY} is missing: the agent's sources are needed to build hostctl")
    built = root / BUNDLE
    if built.is_file() and built.stat().st_mtime >= _newest_source(root):
        log(f"hostctl agent: using {built} (newer than its sources)")
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built, out)
        return out
    if not (root / "node_modules" / "frida-java-bridge").is_dir():
        log(f"hostctl agent: npm ci in {root}")
        npm_ci(root)
    log(f"hostctl agent: compiling {root / ENTRY} with frida.Compiler")
    return build(out=out, root=root)


def source() -> str:
    path = bundle_path()
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if os.environ.get("HOSTCTL_AGENT_DIR"):
            hint = "HOSTCTL_AGENT_DIR names a folder without a built bundle: unset it, or build one there"
        elif CHECKOUT_AGENT.is_dir():
            hint = "run `make agent` in the checkout"
        else:
            hint = "this installation lacks it: reinstall hostctl from a wheel or sdist (the build makes it)"
        raise AgentBundleError(f"agent bundle {path} not built: {hint}") from None


if __name__ == "__main__":
    try:
        print(build())
    except AgentBundleError as exc:
        print(f"hostctl.agent: {exc}", file=sys.stderr)
        sys.exit(1)
