"""Android's framework tools as pure formatters: typed handset state in, the release's text out.

One module per tool (``am``, ``pm``, ``dumpsys``, ``logcat``, ``wm``, ``ip``); each function takes
the SDK level and plain values and returns what that release's tool prints, with the AOSP file
it follows cited next to it. The shell commands (``shell/cmd_android.py``, or the programs of the
sandboxed shell) gather the state from the handset and print what these return, so the formats
live in one place whichever shell runs them.
"""
