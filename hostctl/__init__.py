"""hostctl: audit MIUI Cloud Messaging on Xiaomi handsets over ADB and Frida."""

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

# the parcel decoder's public API, re-exported (listed so linters and readers see it)
__all__ = [
    "ParcelError",
    "ParcelExceptionError",
    "ParcelFormatError",
    "ParcelTransactionError",
    "decode_parcel",
    "decode_parcel_int",
    "parcel_bytes",
]
