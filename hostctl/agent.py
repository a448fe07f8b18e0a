"""The Frida agent bundle: build it from ``agent/`` with ``frida.Compiler``, find it, load it.

``make agent`` (run by ``make demo`` / ``make test``) installs the npm packages from the lock file
and calls :func:`build`. Nothing is fetched at run time: if the bundle is missing, :func:`source`
says how to build it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["AgentBundleError", "agent_dir", "build", "bundle_path", "source"]

ENTRY = "src/index.ts"


class AgentBundleError(RuntimeError):
    pass


def agent_dir() -> Path:
    """The agent's source folder (``HOSTCTL_AGENT_DIR`` overrides the checkout's ``agent/``)."""
    return Path(os.environ.get("HOSTCTL_AGENT_DIR") or Path(__file__).resolve().parent.parent / "agent")


def bundle_path() -> Path:
    return agent_dir() / "_agent.js"


def build(out: Path | None = None) -> Path:
    """Compile ``agent/src/index.ts`` and its npm imports into one script for Frida 17."""
    import frida

    root = agent_dir()
    if not (root / "node_modules" / "frida-java-bridge").is_dir():
        raise AgentBundleError(f"{root}/node_modules is missing: run `npm ci` in {root} (or `make agent`)")
    compiler = frida.Compiler()
    problems: list[str] = []
    compiler.on("diagnostics", lambda diags: problems.extend(str(d) for d in diags))
    try:
        bundle = compiler.build(ENTRY, project_root=str(root))
    except frida.InvalidArgumentError as exc:
        raise AgentBundleError(f"agent build failed: {exc}; {'; '.join(problems)}") from exc
    out = out or bundle_path()
    tmp = out.with_suffix(".tmp")
    tmp.write_text(bundle, encoding="utf-8")
    tmp.replace(out)
    return out


def source() -> str:
    path = bundle_path()
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AgentBundleError(f"agent bundle {path} not built: run `make agent`") from None


if __name__ == "__main__":
    try:
        print(build())
    except AgentBundleError as exc:
        print(f"hostctl.agent: {exc}", file=sys.stderr)
        sys.exit(1)
