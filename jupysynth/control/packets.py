"""OSC packets: encoding messages and bundles, decoding datagrams, NTP time tags.

The primitives (strings, ints, floats, padding) are python-osc's
(:mod:`pythonosc.parsing.osc_types`); this layer adds what the engine needs on
top: time tags kept as exact 64-bit NTP integers (python-osc turns them into
floats, which lose a fraction of a sample and cannot tell "immediately" from
"late"), a decoder that accepts only the argument types the address space
uses and never logs, and nesting and size limits for hostile input.

Examples
--------
>>> from jupysynth.control.packets import encode_message, decode_packet
>>> data = encode_message("/param/set", (3, "freq", 440.0), "isf")
>>> decode_packet(data)
[(None, '/param/set', [3, 'freq', 440.0])]
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

from pythonosc.parsing import osc_types

__all__ = [
    "IMMEDIATELY",
    "NTP_DELTA",
    "PacketError",
    "decode_packet",
    "encode_bundle",
    "encode_message",
    "ntp_from_unix",
    "unix_from_ntp",
]

#: The time tag meaning "now" (63 zero bits then a one).
IMMEDIATELY = 1
#: Seconds from the NTP epoch (1900) to the Unix epoch (1970).
NTP_DELTA = 2208988800

_BUNDLE = b"#bundle\x00"
_MAX_DEPTH = 8  # nested bundles: enough for any sane client, bounded for a hostile one
_ARG_TYPES = frozenset("ifdshbTFN")


class PacketError(ValueError):
    """A datagram is not an OSC packet the engine can read."""


def ntp_from_unix(seconds: float) -> int:
    """The 64-bit NTP time tag for a Unix time in seconds (rounded to the nearest tick)."""
    whole = int(seconds // 1)
    frac = seconds - whole
    return ((whole + NTP_DELTA) << 32) + int(round(frac * 4294967296.0))


def unix_from_ntp(tag: int) -> float:
    """The Unix time in seconds of a 64-bit NTP time tag."""
    return (tag >> 32) - NTP_DELTA + (tag & 0xFFFFFFFF) / 4294967296.0


# -- encoding ---------------------------------------------------------------------------


def encode_message(address: str, args: Sequence[object] = (), types: str | None = None) -> bytes:
    """One OSC message as bytes.

    Parameters
    ----------
    address : str
        The OSC address, starting with ``/``.
    args : sequence
        The arguments.
    types : str, optional
        One type tag per argument (``i``, ``h``, ``f``, ``d``, ``s``, ``b``,
        ``T``, ``F``, ``N``); guessed from the Python types when omitted
        (int ``i``, float ``f``, str ``s``, bytes ``b``).
    """
    if types is None:
        types = "".join(_guess(a) for a in args)
    if len(types) != len(args):
        raise PacketError(f"{address}: {len(args)} arguments but type tags {types!r}")
    parts = [osc_types.write_string(address), osc_types.write_string("," + types)]
    for t, value in zip(types, args):
        if t == "i":
            parts.append(osc_types.write_int(int(value)))  # type: ignore[call-overload]
        elif t == "h":
            parts.append(osc_types.write_int64(int(value)))  # type: ignore[call-overload]
        elif t == "f":
            parts.append(osc_types.write_float(float(value)))  # type: ignore[arg-type]
        elif t == "d":
            parts.append(osc_types.write_double(float(value)))  # type: ignore[arg-type]
        elif t == "s":
            parts.append(osc_types.write_string(str(value)))
        elif t == "b":
            # by hand: python-osc refuses an empty blob, which OSC allows
            blob = bytes(value)  # type: ignore[call-overload]
            parts.append(struct.pack(">i", len(blob)) + blob + b"\x00" * (-len(blob) % 4))
        elif t not in "TFN":
            raise PacketError(f"{address}: cannot encode type tag {t!r}")
    return b"".join(parts)


def _guess(value: object) -> str:
    if value is True:
        return "T"
    if value is False:
        return "F"
    if value is None:
        return "N"
    if isinstance(value, int):
        return "i" if -(2**31) <= value < 2**31 else "h"
    if isinstance(value, float):
        return "f"
    if isinstance(value, str):
        return "s"
    if isinstance(value, (bytes, bytearray)):
        return "b"
    raise PacketError(f"cannot send {type(value).__name__} {value!r} over OSC")


def encode_bundle(elements: Iterable[bytes], timetag: int = IMMEDIATELY) -> bytes:
    """A bundle of already encoded messages (or bundles) with a 64-bit NTP time tag."""
    parts = [_BUNDLE, struct.pack(">Q", timetag)]
    for element in elements:
        parts.append(struct.pack(">i", len(element)))
        parts.append(element)
    return b"".join(parts)


# -- decoding ---------------------------------------------------------------------------


def decode_packet(data: bytes) -> list[tuple[int | None, str, list[object]]]:
    """Every message in a datagram, with its bundle's time tag.

    Returns
    -------
    list of (timetag, address, args)
        ``timetag`` is the 64-bit NTP tag of the innermost enclosing bundle,
        or None for a bare message or a bundle tagged "immediately".

    Raises
    ------
    PacketError
        Saying what is malformed.  Nothing else escapes, whatever the bytes.
    """
    out: list[tuple[int | None, str, list[object]]] = []
    try:
        _decode(bytes(data), None, 0, out)
    except PacketError:
        raise
    except Exception as exc:  # noqa: BLE001 - hostile bytes may break any primitive
        raise PacketError(f"malformed OSC packet ({type(exc).__name__}: {exc})") from None
    return out


def _decode(data: bytes, tag: int | None, depth: int, out: list) -> None:
    if data.startswith(b"/"):
        out.append((tag, *_decode_message(data)))
        return
    if not data.startswith(_BUNDLE):
        head = data[:8]
        raise PacketError(
            f"not an OSC packet: starts with {head!r}, not '/' (a message) or '#bundle'"
        )
    if depth >= _MAX_DEPTH:
        raise PacketError(f"bundles nested deeper than {_MAX_DEPTH}")
    if len(data) < 16:
        raise PacketError("bundle shorter than its header (16 bytes)")
    (timetag,) = struct.unpack_from(">Q", data, 8)
    inner = None if timetag == IMMEDIATELY else timetag
    pos = 16
    while pos < len(data):
        if pos + 4 > len(data):
            raise PacketError("bundle element size cut short")
        (size,) = struct.unpack_from(">i", data, pos)
        pos += 4
        if size <= 0 or size % 4 or pos + size > len(data):
            raise PacketError(
                f"bundle element of size {size} at byte {pos - 4} does not fit the "
                f"{len(data)}-byte packet (sizes are positive multiples of 4)"
            )
        _decode(data[pos : pos + size], inner, depth + 1, out)
        pos += size


def _decode_message(data: bytes) -> tuple[str, list[object]]:
    address, index = osc_types.get_string(data, 0)
    if index >= len(data):
        return address, []  # no type tag string: an old-style message without arguments
    tags, index = osc_types.get_string(data, index)
    if not tags.startswith(","):
        raise PacketError(f"{address}: type tag string {tags!r} does not start with ','")
    args: list[object] = []
    for t in tags[1:]:
        if t not in _ARG_TYPES:
            raise PacketError(
                f"{address}: argument type {t!r} is not used by jupysynth "
                "(use i, h, f, d, s, b, T, F or N)"
            )
        if t == "i":
            value, index = osc_types.get_int(data, index)
        elif t == "h":
            value, index = osc_types.get_int64(data, index)
        elif t == "f":
            if index + 4 > len(data):
                raise PacketError(f"{address}: float argument cut short")
            value, index = osc_types.get_float(data, index)
        elif t == "d":
            value, index = osc_types.get_double(data, index)
        elif t == "s":
            value, index = osc_types.get_string(data, index)
        elif t == "b":
            value, index = _get_blob(address, data, index)
        else:
            value = {"T": True, "F": False, "N": None}[t]
        args.append(value)
    return address, args


def _get_blob(address: str, data: bytes, index: int) -> tuple[bytes, int]:
    # python-osc reads the size as signed and returns b"" for a negative one: check it here
    if index + 4 > len(data):
        raise PacketError(f"{address}: blob size cut short")
    (size,) = struct.unpack_from(">i", data, index)
    index += 4
    if size < 0 or index + size > len(data):
        raise PacketError(
            f"{address}: blob of {size} bytes does not fit the {len(data)}-byte message"
        )
    return data[index : index + size], index + size + (-size % 4)
