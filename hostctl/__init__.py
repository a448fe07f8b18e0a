"""hostctl: audit MIUI Cloud Messaging on Xiaomi handsets over ADB and Frida."""
__version__ = "0.1.0"
