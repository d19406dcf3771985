"""Control over OSC: the address space, the engine-side server, the kernel-side client.

Layers that never mix, as in python-osc: :mod:`.address` (what each address
means and takes), :mod:`.packets` (bytes on the wire), :mod:`.server` (a UDP
socket in the engine process) and :mod:`.client` (a UDP socket in the kernel).
"""

from .address import ADDRESSES, REPLIES, STATUS_FIELDS, OscArgError, check_args
from .client import Client
from .packets import PacketError, decode_packet, encode_bundle, encode_message
from .server import OscServer

__all__ = [
    "ADDRESSES",
    "REPLIES",
    "STATUS_FIELDS",
    "Client",
    "OscArgError",
    "OscServer",
    "PacketError",
    "check_args",
    "decode_packet",
    "encode_bundle",
    "encode_message",
]
