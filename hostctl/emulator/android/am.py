"""What ``am`` prints, per release.

Sources: 4.4/5.0 frameworks/base/cmds/am/src/com/android/commands/am/Am.java (``onShowUsage``:
``usage: am [subcommand] [options]``; errors ``Error: Unknown command: X``); from 7.0 the
command runs in system_server: services/core/java/com/android/server/am/
ActivityManagerShellCommand.java (``Activity manager (activity) commands:`` help,
``start|start-activity``, ``get-current-user`` = ``ActivityManager.getCurrentUser()``),
and ``am instrument`` (Instrument.java / Am.runInstrument: ``INSTRUMENTATION_FAILED``).
"""

from __future__ import annotations

NOUGAT = 24

USAGE_KITKAT = """usage: am [subcommand] [options]
usage: am start [-D] [-W] [-P <FILE>] [--start-profiler <FILE>]
               [--R COUNT] [-S] [--opengl-trace]
               [--user <USER_ID> | current] <INTENT>
       am startservice [--user <USER_ID> | current] <INTENT>
       am stopservice [--user <USER_ID> | current] <INTENT>
       am force-stop [--user <USER_ID> | all | current] <PACKAGE>
       am kill [--user <USER_ID> | all | current] <PACKAGE>
       am kill-all
       am broadcast [--user <USER_ID> | all | current] <INTENT>
       am instrument [-r] [-e <NAME> <VALUE>] [-p <FILE>] [-w]
               [--user <USER_ID> | current]
               [--no-window-animation] <COMPONENT>
       am stack list
       am switch-user <USER_ID>
       am to-uri [INTENT]
"""

USAGE_LOLLIPOP = USAGE_KITKAT.replace(
    "       am stack list\n",
    "       am stack start <DISPLAY_ID> <INTENT>\n       am stack list\n       am task lock <TASK_ID>\n"
    "       am get-config\n",
)

HELP_SHELL_COMMAND = """Activity manager (activity) commands:
  help
      Print this help text.
  start-activity [-D] [-N] [-W] [-P <FILE>] [--start-profiler <FILE>]
          [--sampling INTERVAL] [--streaming] [-R COUNT] [-S]
          [--track-allocation] [--user <USER_ID> | current] <INTENT>
      Start an Activity.  Options are:
      -W: wait for launch to complete
      -S: force stop the target app before starting the activity
  start-service [--user <USER_ID> | current] <INTENT>
      Start a Service.
  broadcast [--user <USER_ID> | all | current] <INTENT>
      Send a broadcast Intent.
  instrument [-r] [-e <NAME> <VALUE>] [-p <FILE>] [-w]
          [--user <USER_ID> | current] <COMPONENT>
      Start an Instrumentation.
  force-stop [--user <USER_ID> | all | current] <PACKAGE>
      Completely stop the given application package.
  kill [--user <USER_ID> | all | current] <PACKAGE>
      Kill all background processes associated with the given application.
  get-current-user
      Returns id of the current foreground user.
"""


def usage(sdk: int) -> str:
    if sdk >= NOUGAT:
        return HELP_SHELL_COMMAND
    return USAGE_LOLLIPOP if sdk >= 21 else USAGE_KITKAT


def unknown_command(sdk: int, verb: str) -> str:
    if sdk >= NOUGAT:
        return f"Unknown command: {verb}\n"
    return f"Error: Unknown command: {verb}\n{usage(sdk)}"


def verbs(sdk: int) -> dict[str, str]:
    """The verbs this release's ``am`` knows, mapped to the canonical one."""
    known = {
        "start": "start",
        "startservice": "startservice",
        "broadcast": "broadcast",
        "force-stop": "force-stop",
        "kill": "kill",
        "instrument": "instrument",
    }
    if sdk >= NOUGAT:
        known |= {"start-activity": "start", "start-service": "startservice", "get-current-user": "get-current-user"}
    return known


def instrument_failed(sdk: int, component: str) -> str:
    """No instrumentation can run: the emulated handset has no Java VM, so no test APK's
    instrumentation is ever installed. What Am.runInstrument prints for an unknown one."""
    comp = component if "/" in component else f"{component}/"
    pkg, _, cls = comp.partition("/")
    if cls.startswith("."):
        cls = pkg + cls
    text = (
        f"INSTRUMENTATION_STATUS: Error=Unable to find instrumentation info for: "
        f"ComponentInfo{{{pkg}/{cls}}}\nINSTRUMENTATION_STATUS_CODE: -1\n"
    )
    if sdk >= NOUGAT:
        return text + (f"android.util.AndroidException: INSTRUMENTATION_FAILED: {pkg}/{cls}\n")
    return text + (
        f"android.util.AndroidException: INSTRUMENTATION_FAILED: {pkg}/{cls}\n"
        "\tat com.android.commands.am.Am.runInstrument(Am.java)\n"
    )
