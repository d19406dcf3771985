"""Control over OSC: the address space, the engine-side server, the kernel-side client.

Layers that never mix, as in python-osc: :mod:`.address` (what each address
means and takes), :mod:`.packets` (bytes on the wire), :mod:`.server` (a UDP
socket in the engine process), :mod:`.notify` (who hears the engine's pushes)
and :mod:`.client` (a UDP socket in the kernel).
"""

from .address import ADDRESSES, PUSHES, REPLIES, STATUS_FIELDS, OscArgError, check_args
from .client import Client, Fault
from .notify import Notifier
from .packets import PacketError, decode_packet, encode_bundle, encode_message
from .server import OscServer

__all__ = [
    "ADDRESSES",
    "PUSHES",
    "REPLIES",
    "STATUS_FIELDS",
    "Client",
    "Fault",
    "Notifier",
    "OscArgError",
    "OscServer",
    "PacketError",
    "check_args",
    "decode_packet",
    "encode_bundle",
    "encode_message",
]
