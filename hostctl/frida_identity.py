"""The ``frida`` identity strategy: the agent reads TelephonyManager inside com.android.phone.

Frida reaches a handset the way the frida CLI does: its device manager finds the adb serial on
the adb server named by ``ANDROID_ADB_SERVER_PORT`` and talks to frida-server on the device's
``tcp:27042`` (on the emulated lab, a portal answers there). The Java part needs a real Android
runtime; where the process has none, the agent says so and this strategy reports it.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from . import agent
from .device import AdbAddress, Handset, HostctlError

__all__ = ["FridaIdentityError", "call_agent", "frida_device", "read_telephony"]

PHONE_PROCESS = "com.android.phone"


class FridaIdentityError(HostctlError):
    pass


def frida_device(handset: Handset, timeout: float = 10.0) -> Any:
    """The frida Device for this handset's serial, or FridaIdentityError saying why not."""
    import frida

    # Frida's own adb client reads only ANDROID_ADB_SERVER_PORT, on the loopback
    local = AdbAddress("127.0.0.1", int(os.environ.get("ANDROID_ADB_SERVER_PORT") or 5037))
    if handset.server != local:
        raise FridaIdentityError(
            f"Frida reaches devices only through the adb server named by ANDROID_ADB_SERVER_PORT "
            f"({local}); {handset.serial} is on {handset.server}"
        )
    try:
        return frida.get_device_manager().get_device(handset.serial, timeout=timeout)
    except (frida.InvalidArgumentError, frida.TimedOutError) as exc:
        raise FridaIdentityError(f"Frida does not see {handset.serial} through adb ({exc})") from exc


def _pid_of(device: Any, process: str) -> int | str:
    """The pid of the app whose package is ``process``, else ``process`` (a process name). Frida
    >= 15 names an Android app's process by its label, not its package (frida/frida#1828, #2031),
    so a package is looked up among the applications by identifier."""
    if "." in process and not process.isdigit():
        apps = device.enumerate_applications(identifiers=[process])
        running = [a.pid for a in apps if a.identifier == process and a.pid]
        if running:
            return running[0]
    return process


def call_agent(
    handset: Handset, process: str, export: str, *args: Any, device: Any = None, timeout: float = 20.0
) -> Any:
    """Attach to ``process`` on the handset, load the agent and call one of its RPC exports;
    attach, load and the call all count against ``timeout``. Errors say what to do."""
    import frida

    try:
        code = agent.source()
    except agent.AgentBundleError as exc:
        raise FridaIdentityError(str(exc)) from exc
    device = device or frida_device(handset, timeout=min(timeout, 10.0))
    sessions: list[Any] = []

    def work() -> Any:
        session = device.attach(_pid_of(device, process))
        sessions.append(session)
        script = session.create_script(code, name="hostctl-agent")
        script.load()
        return getattr(script.exports_sync, export)(*args)

    pool = ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(work).result(timeout=timeout)
    except FutureTimeout:
        raise FridaIdentityError(
            f"attaching to {process} on {handset.serial} and asking the agent did not finish within {timeout:g} s"
        ) from None
    except frida.ProcessNotFoundError as exc:
        raise FridaIdentityError(f"{process} is not running on {handset.serial} ({exc})") from exc
    except frida.ServerNotRunningError as exc:
        raise FridaIdentityError(
            f"no frida-server reachable on {handset.serial}: start one matching frida {frida.__version__} ({exc})"
        ) from exc
    except (frida.ProtocolError, frida.NotSupportedError) as exc:
        raise FridaIdentityError(
            f"cannot attach to {process} on {handset.serial}: {exc} (the "
            f"frida-server major version must match the client's "
            f"{frida.__version__})"
        ) from exc
    except frida.core.RPCException as exc:
        raise FridaIdentityError(f"the agent in {process} failed: {exc}") from exc
    except (frida.InvalidOperationError, frida.TransportError) as exc:
        raise FridaIdentityError(f"{process} on {handset.serial} went away: {exc}") from exc
    finally:
        pool.shutdown(wait=False)
        for session in sessions:
            try:
                session.detach()
            except frida.InvalidOperationError:
                pass


def read_telephony(
    handset: Handset, *, device: Any = None, timeout: float = 20.0, process: str = PHONE_PROCESS
) -> dict[int, dict[str, Any]]:
    """Per-slot rows from the agent's ``readTelephony`` (see agent/src/telephony.ts)."""
    result = call_agent(handset, process, "read_telephony", device=device, timeout=timeout)
    if not result.get("java"):
        raise FridaIdentityError(
            f"{process} on {handset.serial}: " + "; ".join(result.get("errors") or ["no Java runtime"])
        )
    rows = {int(row["slot"]): row for row in result.get("slots", [])}
    for err in result.get("errors", []):
        rows.setdefault(0, {"slot": 0, "errors": []}).setdefault("errors", []).append(err)
    return rows
