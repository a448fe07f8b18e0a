"""Framework programs of the handset that are not in shell/cmd_android.py (imported to register)."""

from . import uname  # noqa: F401
