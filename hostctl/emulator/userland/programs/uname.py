"""``uname``: the handset's kernel, not the lab host's (the machine field cannot be changed by a
namespace, so the model answers). Options and output order as toybox's uname.c (-s -n -r -v -m,
-a all of them, -o "Toybox"; no option: -s)."""

from __future__ import annotations

from ...shell.registry import Ctx, command
from ..facts import kernel_for

_ORDER = "snrvm"


@command("uname")
async def _uname(ctx: Ctx, argv: list[str]) -> int:
    flags = set()
    for a in argv[1:]:
        if not a.startswith("-") or a == "-":
            ctx.err(f"uname: Unknown option '{a}'\nusage: uname [-asnrvmpo]\n")
            return 1
        for f in a[1:]:
            if f not in "asnrvmpo":
                ctx.err(f"uname: Unknown option '{f}'\nusage: uname [-asnrvmpo]\n")
                return 1
            flags.add(f)
    k = kernel_for(ctx.handset.getprop("ro.product.cpu.abi") or "armeabi-v7a")
    host = ctx.env.get("HOSTNAME") or "localhost"
    values = {"s": "Linux", "n": host, "r": k.release, "v": k.version, "m": k.machine}
    if "a" in flags:
        flags |= set(_ORDER) | {"o"}
    want = [values[f] for f in _ORDER if f in flags]
    if "p" in flags:
        want.append(k.machine)
    if "o" in flags:
        want.append("Toybox")
    ctx.out(" ".join(want or [values["s"]]) + "\n")
    return 0
