"""``wm size`` / ``wm density``: frameworks/base/cmds/wm/src/com/android/commands/wm/Wm.java
(4.4/5.0: ``Physical size: WxH`` / ``Physical density: N``, plus ``Override ...`` lines when
set); from 10 the same text comes from WindowManagerShellCommand.java."""

from __future__ import annotations

from .model import Display

USAGE = """usage: wm [subcommand] [options]
       wm size [reset|WxH]
       wm density [reset|DENSITY]
       wm overscan [reset|LEFT,TOP,RIGHT,BOTTOM]
"""


def size(d: Display) -> str:
    return f"Physical size: {d.width}x{d.height}\n"


def density(d: Display) -> str:
    return f"Physical density: {d.density}\n"
