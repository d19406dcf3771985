"""The OSC address space and packet layer: typing, encoding, decoding, time tags."""

from __future__ import annotations

import random
import re
import struct
from pathlib import Path

import pytest

from jupysynth.control import address
from jupysynth.control.address import ADDRESSES, STATUS_FIELDS, OscArgError, check_args
from jupysynth.control.packets import (
    IMMEDIATELY,
    PacketError,
    decode_packet,
    encode_bundle,
    encode_message,
    ntp_from_unix,
    unix_from_ntp,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "osc.md"


def test_check_args_types_and_converts_int_to_float():
    assert check_args("/param/set", [3, "freq", 440]) == (3, "freq", 440.0)
    assert isinstance(check_args("/param/set", [3, "freq", 440])[2], float)
    assert check_args("/out/add", [3]) == (3,)
    assert check_args("/out/add", [3, 1]) == (3, 1)
    assert check_args("/mix/inputs", [9]) == (9,)
    assert check_args("/mix/inputs", [9, 1, 0, 2, 1]) == (9, 1, 0, 2, 1)
    assert check_args("/ping", ["anything", 1.5, None]) == ("anything", 1.5, None)
    assert check_args("/notify", [1]) == (1,)
    assert check_args("/notify", [0]) == (0,)


@pytest.mark.parametrize(
    "path, params, fragment",
    [
        ("/nope", [], "unknown address '/nope'"),
        ("/param/set", [3, "freq"], "takes /param/set <id:i> <name:s> <value:f>"),
        ("/param/set", [3, "freq", "loud"], "argument value must be of type 'f'"),
        ("/param/set", [3.5, "freq", 1.0], "argument id must be of type 'i'"),
        ("/param/set", [True, "freq", 1.0], "argument id must be of type 'i'"),
        ("/mix/inputs", [9, 1], "got 2 argument(s)"),
        ("/out/add", [1, 0, 0], "got 3 argument(s)"),
        ("/module/new", [1, 2], "argument type must be of type 's'"),
        ("/notify", [1, 9000], "takes /notify <on:i>; got 2"),
    ],
)
def test_check_args_rejects_with_a_message_naming_the_signature(path, params, fragment):
    with pytest.raises(OscArgError) as err:
        check_args(path, params)
    assert fragment in str(err.value)


def test_every_address_is_documented_alike_in_the_docstring_and_docs_osc_md():
    text = DOCS.read_text()
    specs = [*ADDRESSES.values(), *address.REPLIES.values(), *address.PUSHES.values()]
    for spec in specs:
        assert f"`{spec.signature()}`" in text, f"{spec.signature()} differs in docs/osc.md"
        assert f"``{spec.signature()}``" in address.__doc__, f"{spec.path} not in the docstring"
    for name, _, _ in STATUS_FIELDS:
        assert re.search(rf"\| `{name}` \|", text), f"status field {name} missing from docs"


def test_message_round_trip_keeps_types():
    data = encode_message("/module/new", (7, "Sine", '{"values": {"freq": 440}}'), "iss")
    assert decode_packet(data) == [(None, "/module/new", [7, "Sine", '{"values": {"freq": 440}}'])]
    data = encode_message("/x", (1, 2**40, 0.5, 0.25, "s", True, False, None), "ihfdsTFN")
    assert decode_packet(data) == [(None, "/x", [1, 2**40, 0.5, 0.25, "s", True, False, None])]
    for blob in (b"", b"\x00\x01\x02", bytes(range(256)) * 3):
        data = encode_message("/type/define", ("__main__.Fold", blob))  # "sb", guessed
        assert decode_packet(data) == [(None, "/type/define", ["__main__.Fold", blob])]
        assert check_args("/type/define", ["__main__.Fold", blob]) == ("__main__.Fold", blob)


def test_bundle_time_tags_are_exact_integers_and_immediately_is_none():
    inner = encode_message("/ping", (1,), "i")
    tag = ntp_from_unix(1_800_000_000.123456)
    nested = encode_bundle([inner, encode_bundle([inner], tag + 5)], tag)
    assert decode_packet(nested) == [(tag, "/ping", [1]), (tag + 5, "/ping", [1])]
    assert decode_packet(encode_bundle([inner], IMMEDIATELY)) == [(None, "/ping", [1])]


def test_ntp_conversion_is_accurate_to_a_microsecond_fraction():
    for t in (0.0, 1.5, 1_800_000_000.0, 1_800_000_000.999999, 1_795_580_000.1234567):
        tag = ntp_from_unix(t)
        assert abs(unix_from_ntp(tag) - t) < 1e-6
    # whole seconds land exactly on the tick
    assert ntp_from_unix(1_800_000_000.0) & 0xFFFFFFFF == 0


@pytest.mark.parametrize(
    "data, fragment",
    [
        (b"", "not an OSC packet"),
        (b"hello", "not an OSC packet"),
        (b"#bundle\x00\x00", "shorter than its header"),
        (b"#bundle\x00" + b"\x00" * 8 + struct.pack(">i", 1000), "does not fit"),
        (b"#bundle\x00" + b"\x00" * 8 + struct.pack(">i", -4), "does not fit"),
        (b"/a\x00\x00,c\x00\x00", "argument type 'c' is not used"),
        (b"/a\x00\x00,b\x00\x00", "blob size cut short"),
        (b"/a\x00\x00,b\x00\x00\x00\x00\x00\x10ab\x00\x00", "does not fit"),
        (b"/a\x00\x00,b\x00\x00\xff\xff\xff\xf0ab\x00\x00", "does not fit"),
        (b"/a\x00\x00xyz\x00", "does not start with ','"),
        (b"/a\x00\x00,i\x00\x00\x01", "malformed OSC packet"),
        (b"/\xff\xfe\x00,\x00\x00\x00", "malformed OSC packet"),
    ],
)
def test_malformed_packets_raise_packet_error_only(data, fragment):
    with pytest.raises(PacketError) as err:
        decode_packet(data)
    assert fragment in str(err.value)


def test_deeply_nested_bundles_are_refused():
    data = encode_message("/ping")
    for _ in range(20):
        data = encode_bundle([data], IMMEDIATELY)
    with pytest.raises(PacketError, match="nested deeper"):
        decode_packet(data)


def test_decoder_never_raises_anything_but_packet_error_on_random_bytes():
    rng = random.Random(1234)
    seeds = [
        encode_message("/param/set", (3, "freq", 440.0), "isf"),
        encode_bundle([encode_message("/out/add", (3,), "i")], ntp_from_unix(1e9)),
    ]
    for _ in range(20000):
        base = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            k = rng.randrange(len(base))
            base[k] = rng.randrange(256)
        if rng.random() < 0.3:
            base = base[: rng.randrange(len(base) + 1)]
        try:
            decode_packet(bytes(base))
        except PacketError:
            pass
