"""`service call iphonesubinfo CODE [ARGS]` as the handset's PhoneSubInfo answers it.

The profile says which method a code calls (``iphonesubinfo``), what the method's AIDL
parameters are (``iphonesubinfo_args``), whether it insists on a calling package and what every
call returns (``iphonesubinfo_reply``). The `service call` arguments are laid out in a Parcel as
cmds/service does and read back with the method's parameter types as libbinder would, so a
wrongly typed argument misreads exactly like on a handset: an ``i64`` read as an ``int`` is its
low word, and the high word becomes the next parameter.

Slots: ``phone_id`` is the 0-based slot; ``sub_id``/``sub_id64`` is a subscription id: the
profile's ``sim_sub_ids`` (the ids its sms rows keep in ``sim_id`` and its
``content://telephony/siminfo`` lists), slot + 1 by default (the first SIM inserted on a fresh
device gets id 1). An id that names no slot falls back to slot 0, as AOSP's PhoneSubInfoController does (``getPhoneId`` invalid ->
phone 0); a method without an id parameter answers for the default subscription, slot 0.
"""

from __future__ import annotations

import re
import struct

from ..handset import SHELL_UID, VirtualHandset
from ..profiles import ARG_KINDS
from .parcel import (
    EX_SECURITY,
    ParcelReader,
    ParcelWriter,
    exception_parcel,
    format_parcel,
    parcel_error_text,
)

__all__ = ["base_method", "call_parcel", "transact", "transact_msim"]

_SUFFIXES = ("ForSubscriber", "ForPhone", "UsingSubId", "WithFeature", "ForSlot")
_VALUES = {
    "getDeviceId": "imei",
    "getImei": "imei",
    "getSubscriberId": "imsi",
    "getIccSerialNumber": "iccid",
    "getLine1Number": "msisdn",
    "getMsisdn": "msisdn",
}
_DEVICE_IDENTIFIERS = {"getDeviceId", "getImei", "getMeid", "getSubscriberId", "getIccSerialNumber", "getNai"}
_PHONE_NUMBERS = {"getLine1Number", "getMsisdn"}
_VOID_METHODS = {"setCarrierInfoForImsiEncryption", "resetCarrierKeysForImsiEncryption"}
_PARCELABLE_METHODS = {"getCarrierInfoForImsiEncryption"}  # null Parcelable: int32 0
_BINDER_TYPE_BINDER = 0x73622A85
_FLAT_BINDER_FLAGS = 0x17F  # FLAT_BINDER_FLAG_ACCEPTS_FDS | priority 0x7f


def base_method(method: str) -> str:
    """getSubscriberIdForSubscriber -> getSubscriberId (the name AOSP's messages use)."""
    changed = True
    while changed:
        changed = False
        for suffix in _SUFFIXES:
            if method.endswith(suffix) and len(method) > len(suffix):
                method, changed = method[: -len(suffix)], True
    return method


def _atoi(text: str, bits: int) -> int:
    m = re.match(r"\s*([+-]?\d+)", text)
    value = int(m.group(1)) if m else 0
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >= 1 << (bits - 1) else value


def _atof(text: str) -> float:
    m = re.match(r"\s*[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?)", text)
    return float(m.group(0)) if m else 0.0


def call_parcel(args: list[tuple[str, object]], sdk: int) -> bytes:
    """The data Parcel after the interface token, as cmds/service writes the arguments."""
    w = ParcelWriter()
    for kind, value in args:
        text = "" if value is None else str(value)
        if kind == "i32":
            w.write_int32(_atoi(text, 32))
        elif kind == "i64":
            w.write_int64(_atoi(text, 64))
        elif kind == "s16":
            w.write_string16(text)
        elif kind == "f":
            w.write_float(_atof(text))
        elif kind == "d":
            w.write_double(_atof(text))
        elif kind == "null":  # writeStrongBinder(NULL): a flat_binder_object (32/64-bit)
            fmt = "<IIQQ" if sdk >= 21 else "<IIII"
            w.write_raw(struct.pack(fmt, _BINDER_TYPE_BINDER, _FLAT_BINDER_FLAGS, 0, 0))
    return w.data()


def _denial(method: str, sdk: int) -> str:
    base = base_method(method)
    if sdk >= 29 and base in _DEVICE_IDENTIFIERS:
        return f"{base}: The user {SHELL_UID} does not meet the requirements to access device identifiers."
    if sdk >= 29 and base in _PHONE_NUMBERS:
        return (
            f"{base}: Neither user {SHELL_UID} nor current process has "
            "android.permission.READ_PHONE_STATE, android.permission.READ_SMS, or "
            "android.permission.READ_PHONE_NUMBERS"
        )
    prefix = base if sdk >= 29 else "Requires READ_PHONE_STATE"
    return f"{prefix}: Neither user {SHELL_UID} nor current process has android.permission.READ_PHONE_STATE."


def _int_arg(values: dict[str, object], kind: str) -> int:
    value = values[kind]
    if not isinstance(value, (int, str)):
        raise TypeError(f"{kind}: {value!r} is not a number")
    return int(value)


def _slot(values: dict[str, object], sims: int, handset: VirtualHandset) -> int:
    if "phone_id" in values:
        phone = _int_arg(values, "phone_id")
        return phone if 0 <= phone < sims else 0
    for kind in ("sub_id", "sub_id64"):
        if kind in values:
            sub = _int_arg(values, kind)
            # SubscriptionController.getPhoneId(subId): the slot holding that subscription
            slot = handset.profile.slot_of_sub_id(sub)
            return slot if slot is not None and slot < sims else 0
    return 0


def _value(handset: VirtualHandset, method: str, values: dict[str, object]) -> str | None:
    sims = handset.identity.sims
    if not sims:
        return None
    base = base_method(method)
    if base == "getDeviceSvn":
        return "01"
    attr = _VALUES.get(base)
    return getattr(sims[_slot(values, len(sims), handset)], attr) if attr else None


def transact(handset: VirtualHandset, code: int, args: list[tuple[str, object]]) -> str:
    """What `service call iphonesubinfo CODE ARGS...` prints."""
    profile = handset.profile
    method = profile.iphonesubinfo_method(code)
    if method is None:
        return parcel_error_text(74, "Not a data message")  # -EBADMSG: unknown transaction
    reader = ParcelReader(call_parcel(args, profile.sdk))
    values: dict[str, object] = {}
    for kind in profile.iphonesubinfo_arg_kinds(method):
        parcel_type = ARG_KINDS[kind]
        value = (
            reader.read_int32()
            if parcel_type == "i32"
            else reader.read_int64()
            if parcel_type == "i64"
            else reader.read_string16()
        )
        values.setdefault(kind, value)
    if profile.iphonesubinfo_needs_package and "package" in values and values["package"] is None:
        message = f"{method}: Package null does not belong to {SHELL_UID}"
        return format_parcel(exception_parcel(EX_SECURITY, message, profile.sdk))
    return _answer(handset, method, values)


def transact_msim(handset: VirtualHandset, code: int, args: list[tuple[str, object]]) -> str:
    """What `service call iphonesubinfo_msim CODE i32 SLOT` prints (CAF's MSimPhoneSubInfoProxy,
    which indexes its phones by the int: an out-of-range slot answers a null string)."""
    profile = handset.profile
    method = next((m for m, c in profile.iphonesubinfo_msim.items() if c == code), None)
    if method is None:
        return parcel_error_text(74, "Not a data message")
    slot = ParcelReader(call_parcel(args, profile.sdk)).read_int32()
    if not 0 <= slot < len(handset.identity.sims):
        return format_parcel(ParcelWriter().write_no_exception().write_string16(None).data())
    return _answer(handset, method, {"phone_id": slot})


def _answer(handset: VirtualHandset, method: str, values: dict[str, object]) -> str:
    """The reply of an IPhoneSubInfo getter whose arguments have been read."""
    profile = handset.profile
    reply = profile.iphonesubinfo_reply
    if reply == "denied":
        return format_parcel(exception_parcel(EX_SECURITY, _denial(method, profile.sdk), profile.sdk))
    if method in _VOID_METHODS or method in _PARCELABLE_METHODS:
        w = ParcelWriter().write_no_exception()
        return format_parcel((w.write_int32(0) if method in _PARCELABLE_METHODS else w).data())
    if reply == "empty":  # length 0 and no terminator, as MediaTek builds answer
        return format_parcel(ParcelWriter().write_no_exception().write_int32(0).data())
    value = None if reply == "null" else _value(handset, method, values)
    return format_parcel(ParcelWriter().write_no_exception().write_string16(value).data())
