"""hostctl: audit MIUI Cloud Messaging on Xiaomi handsets over ADB and Frida."""

from . import parcel as _parcel
from .parcel import (
    ParcelError,
    ParcelExceptionError,
    ParcelFormatError,
    ParcelTransactionError,
    decode_parcel,
    decode_parcel_int,
    parcel_bytes,
)

__version__ = "0.1.0"

# the package re-exports the parcel decoder's public API (its table of names stays in hostctl.parcel)
__all__ = [name for name in _parcel.__all__ if name != "EXCEPTION_NAMES"]
