"""The OSC address space of the jupysynth engine: every address, its arguments, its replies.

This file is the single source of truth: the engine's server checks incoming
messages against :data:`ADDRESSES`, the kernel-side client encodes its
messages from it, and ``docs/osc.md`` mirrors the table below.  The kernel
sends them over the owner's channel (a Unix socket only the engine's user can
reach, see :mod:`.local`); other programs (``oscsend``, a phone app) may use
the opt-in public UDP port, which accepts only :data:`PUBLIC`:
``/param/set``, ``/out/add``, ``/out/remove``, ``/sync``, ``/status``, ``/ping``.

Messages to the engine
----------------------

======================================================  =================================
message                                                 effect
======================================================  =================================
``/module/new <id:i> <type:s> [<spec_json:s>]``         create a module
``/module/free <id:i>``                                 delete a module nothing reads
``/type/define <name:s> <class:b>``                     define or redefine a module type
``/param/set <id:i> <name:s> <value:f>``                set a parameter to a number
``/param/connect <id:i> <name:s> <src_id:i> <port:i>``  drive a parameter by a signal
``/mix/inputs <id:i> [<src_id:i> <port:i>]...``         replace a Mix's inputs
``/mix/add <id:i> [<src_id:i> <port:i>]...``            append to a Mix's inputs
``/out/add <id:i> [<port:i>]``                          send a module to the output
``/out/remove <id:i>``                                  take it off the output
``/fade <seconds:f>``                                   crossfade the changes at its frame
``/panic``                                              silence: remove everything
``/sync <token:i>``                                     reply once all before it applied
``/status``                                             reply with the engine's state
``/ping [any...]``                                      reply ``/pong`` with the same
``/tap/open <id:i> <module:i> <port:i> <frames:i>``     copy a module output to a ring
``/tap/close <id:i>``                                   stop copying, remove the ring
``/out/heard <frame:i> <target:i>``                     browser output: the page hears `frame`
``/notify <on:i>``                                      hear the engine's pushes, or stop
======================================================  =================================

Replies (sent to the address and port the message came from)
------------------------------------------------------------

======================================================  =================================
reply                                                   sent after
======================================================  =================================
``/error <address:s> <message:s>``                      any rejected message
``/pong [any...]``                                      ``/ping``, with its arguments
``/synced <token:i>``                                   ``/sync``
``/status/reply``                                       ``/status``: :data:`STATUS_FIELDS`
``/tap/opened <id:i> <shm_name:s>``                     ``/tap/open``: the ring's name
======================================================  =================================

Pushes (sent when something happens, see :data:`PUSHES`)
--------------------------------------------------------

======================================================  =================================
push                                                    sent when
======================================================  =================================
``/fault <id:i> <label:s> <message:s>``                 a module faults and is muted
``/fault/cleared <id:i>``                               it plays again, or is gone
======================================================  =================================

A push goes to the client that created the module (the socket its
``/module/new`` came from) and to every subscriber: ``/notify 1`` subscribes
the sender, ``/notify 0`` unsubscribes it; pushes never go to an address a
message names.  A message arriving at a reply's or a push's address is
dropped unanswered.  A new subscriber first gets a ``/fault`` for every module
muted already.  ``message`` is the reason without the label: the
traceback's last lines for a kernel or ``process`` that raised.  The engine
notices a fault within :data:`~jupysynth.control.notify.POLL_SECONDS` of the
block that raised, from a thread of its own, never from the block loop.

Timing
------
A message in a bundle whose time tag is in the future applies at the exact
sample that time maps to on the engine's clock (frame ``F`` plays at
``t0 + F / samplerate``, ``t0`` from ``/status``).  A message sent alone, or
in a bundle tagged "immediately", applies at the start of the next block;
``/param/set`` then glides to the new value across that block, so a knob
turned by hand makes no zipper noise.  A tag already in the past applies at
the next block, without a glide, and counts as ``late`` in ``/status``.

Module types written in Python
------------------------------
``/type/define`` carries ``cloudpickle.dumps(cls)`` of a :class:`~jupysynth.Module`
subclass written in a notebook cell, registered under ``name``
(``"__main__.Fold"``, see :func:`jupysynth.graph.type_name`).  It applies at its
place on the clock like ``/module/new``, so a bundle may define a type and create
modules of it; redefining a type that plays swaps its running instances to the
new code at that block, keeping their state.  The blob must fit one datagram
(about 64 KB): the kernel's :class:`~jupysynth.player.play.Player` refuses a
larger class with an error saying so.

.. warning::
   Unpickling runs code: whoever can send ``/type/define`` runs any Python in
   the engine process.  This is why it is accepted only on the owner's channel,
   whose sender is known (by the kernel's credentials) before a byte is read.

Scope taps
----------
``/tap/open`` asks the engine to create a POSIX shared-memory segment of
``frames`` frames (an int64 frame counter, padding to 64 bytes, then a float32
ring), mode 0600 under a fresh random name, to reply ``/tap/opened <id>
<shm_name>``, and to copy output ``port`` of module ``module`` into it after
every block it renders, until ``/tap/close`` with the same ``id``, which
removes the segment.  It costs the engine nothing while no tap is open.  The
engine never writes a segment it did not create, and unlinks those still open
when it stops.  See :mod:`jupysynth.control.tap`.

Module specs
------------
``spec_json`` of ``/module/new`` is a JSON object with optional keys
``values`` (parameter name to a number, or to ``[src_id, port]`` for a
signal), ``options`` (construction options, e.g. ``{"shape": "square"}``),
``inputs`` (a Mix's ``[[src_id, port], ...]``) and ``name``.  Omitted
parameters take their defaults.  ``type`` is a module class name (``Sine``,
``LowPass``, ``Mix``...) or a type defined with ``/type/define``; ids are
chosen by the client.

Examples
--------
>>> from jupysynth.control.address import ADDRESSES, check_args
>>> ADDRESSES["/param/set"].signature()
'/param/set <id:i> <name:s> <value:f>'
>>> check_args("/param/set", [3, "freq", 440])
(3, 'freq', 440.0)
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ADDRESSES",
    "PUBLIC",
    "PUSHES",
    "REPLIES",
    "STATUS_FIELDS",
    "Address",
    "Arg",
    "MAX_AHEAD_SECONDS",
    "MAX_FADE_SECONDS",
    "MAX_MODULES",
    "OscArgError",
    "check_args",
    "type_of",
]


#: How far from now a time tag may be (the engine's clock refuses tags further ahead).
MAX_AHEAD_SECONDS = 3600.0
#: The longest fade the engine takes (``/fade``).
MAX_FADE_SECONDS = 10.0
#: The most modules one engine holds (and inputs one module has): far above any
#: patch, low enough that a flood of ``/module/new`` cannot eat the machine's memory.
MAX_MODULES = 65536


class OscArgError(ValueError):
    """A message's address or arguments do not match :data:`ADDRESSES`."""


@dataclass(frozen=True)
class Arg:
    """One argument: its name and OSC type tag (``i`` int32, ``f`` float32, ``s`` string,
    ``b`` blob)."""

    name: str
    type: str

    def __str__(self) -> str:
        return f"<{self.name}:{self.type}>"


@dataclass(frozen=True)
class Address:
    """An OSC address and the arguments it takes.

    ``args`` are required, ``optional`` may follow (in order), ``repeat`` is a
    group that may follow any number of times (``/mix/inputs``);
    ``any_args`` accepts anything (``/ping``).  ``timed`` says whether the
    message goes through the engine's clock (applied at a block or a tagged
    sample) or is answered as soon as it arrives.  ``public`` says whether the
    opt-in public UDP port accepts it (see :data:`PUBLIC`); every address is
    open on the owner's channel.
    """

    path: str
    doc: str
    args: tuple[Arg, ...] = ()
    optional: tuple[Arg, ...] = ()
    repeat: tuple[Arg, ...] = ()
    any_args: bool = False
    timed: bool = True
    public: bool = False

    def signature(self) -> str:
        """The address with its arguments, as in the docs: ``/out/add <id:i> [<port:i>]``."""
        parts = [self.path, *map(str, self.args)]
        parts += [f"[{a}]" for a in self.optional]
        if self.repeat:
            parts.append("[" + " ".join(map(str, self.repeat)) + "]...")
        if self.any_args:
            parts.append("[any...]")
        return " ".join(parts)


def _a(*spec: str) -> tuple[Arg, ...]:
    return tuple(Arg(*s.split(":")) for s in spec)


ADDRESSES: dict[str, Address] = {
    a.path: a
    for a in (
        Address(
            "/module/new",
            "create module `id` of `type` from an optional JSON spec",
            _a("id:i", "type:s"),
            optional=_a("spec_json:s"),
        ),
        Address(
            "/module/free",
            "delete a module no other module reads (leaves the output too)",
            _a("id:i"),
        ),
        Address(
            "/type/define",
            "define or redefine module type `name` from a cloudpickled class (runs its "
            "code: keep the engine on 127.0.0.1); modules of it that play swap to the "
            "new code, keeping their state",
            _a("name:s", "class:b"),
        ),
        Address(
            "/param/set",
            "set a parameter to a number (disconnects a signal)",
            _a("id:i", "name:s", "value:f"),
            public=True,
        ),
        Address(
            "/param/connect",
            "drive a parameter by output `port` of module `src_id`",
            _a("id:i", "name:s", "src_id:i", "port:i"),
        ),
        Address(
            "/mix/inputs",
            "replace the inputs of Mix `id` by (src_id, port) pairs",
            _a("id:i"),
            repeat=_a("src_id:i", "port:i"),
        ),
        Address(
            "/mix/add",
            "append (src_id, port) pairs to the inputs of Mix `id` (a large Mix arrives in parts)",
            _a("id:i"),
            repeat=_a("src_id:i", "port:i"),
        ),
        Address(
            "/out/add",
            "add a module (every channel, or one port) to the stereo output",
            _a("id:i"),
            optional=_a("port:i"),
            public=True,
        ),
        Address(
            "/out/remove", "take every channel of a module off the output", _a("id:i"), public=True
        ),
        Address(
            "/fade",
            "crossfade the graph changes at this frame: outputs removed fade out (their "
            "modules live until then), outputs added fade in",
            _a("seconds:f"),
        ),
        Address(
            "/panic",
            "fade out over the rest of the block, then remove every module, "
            "output and scheduled message",
        ),
        Address(
            "/sync",
            "reply /synced once every message received before it is applied",
            _a("token:i"),
            public=True,
        ),
        Address("/status", "reply /status/reply with the engine's state", timed=False, public=True),
        Address(
            "/tap/open",
            "create a shared-memory ring of `frames` frames, reply /tap/opened with its name, "
            "and after each block copy output `port` of module `module` into it (see Scope "
            "taps), as tap `id`",
            _a("id:i", "module:i", "port:i", "frames:i"),
        ),
        Address("/tap/close", "stop writing tap `id` and remove its ring", _a("id:i")),
        Address(
            "/ping", "reply /pong with the same arguments", any_args=True, timed=False, public=True
        ),
        Address(
            "/out/heard",
            "browser output: a page hears engine frame `frame` now and keeps `target` "
            "frames buffered; the engine's clock follows the page's (the kernel relays it)",
            _a("frame:i", "target:i"),
            timed=False,
        ),
        Address(
            "/notify",
            "1: send the pushes (/fault, /fault/cleared) to the sender; 0: stop",
            _a("on:i"),
            timed=False,
        ),
    )
}

REPLIES: dict[str, Address] = {
    a.path: a
    for a in (
        Address(
            "/error",
            "a message was rejected: the address it came to and why",
            _a("address:s", "message:s"),
        ),
        Address("/pong", "the arguments of the /ping", any_args=True),
        Address("/synced", "every message received before /sync has been applied", _a("token:i")),
        Address("/status/reply", "the engine's state, one argument per STATUS_FIELDS entry"),
        Address(
            "/tap/opened",
            "tap `id` is open: its ring is the shared-memory segment `shm_name`",
            _a("id:i", "shm_name:s"),
        ),
    )
}

PUSHES: dict[str, Address] = {
    a.path: a
    for a in (
        Address(
            "/fault",
            "module `id` (`label`, as in messages) faulted and is muted; `message` says why",
            _a("id:i", "label:s", "message:s"),
        ),
        Address(
            "/fault/cleared",
            "module `id` is no longer muted: its class was redefined, or it was freed",
            _a("id:i"),
        ),
    )
}

#: The addresses the opt-in public UDP port accepts: playing and stopping what the
#: owner built, knobs, the engine's state.  Nothing here runs code, reads audio,
#: creates modules or touches a file.
PUBLIC: frozenset[str] = frozenset(p for p, a in ADDRESSES.items() if a.public)

#: ``/status/reply`` arguments, in order: (name, OSC type, meaning).
STATUS_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("running", "i", "1 while the block loop runs"),
    ("headless", "i", "1 when there is no audio device: clocked by time, no sound"),
    ("samplerate", "i", "frames per second"),
    ("blocksize", "i", "frames per rendered block"),
    ("frame", "h", "frames rendered so far (the next block starts here)"),
    ("t0", "d", "Unix time at which frame 0 plays: frame F plays at t0 + F / samplerate"),
    ("latency", "f", "seconds from rendering a frame to the device output"),
    ("dsp_load", "f", "render time / block duration, smoothed over about a second"),
    ("dsp_peak", "f", "largest render time / block duration since the last /status"),
    (
        "xruns",
        "i",
        (
            "times the engine was late for the device (its ring ran dry; "
            "headless: a block rendered after its time)"
        ),
    ),
    ("device_underflows", "i", "output underflows PortAudio reported"),
    ("late", "i", "time-tagged messages that arrived after their time"),
    ("drift_ppm", "f", "the device clock against the system clock, ppm (+: fast)"),
    ("clock_offset_ms", "f", "how far t0 has moved since the start (drift, time lost), ms"),
    ("workers", "i", "worker processes rendering (0: the engine renders itself)"),
    ("worker_restarts", "i", "workers replaced after dying or missing their deadline"),
    ("modules", "i", "modules in the engine"),
    ("outputs", "i", "output channels summed to the device"),
    ("messages", "h", "OSC messages received"),
    ("errors", "h", "messages rejected with /error"),
    (
        "device",
        "s",
        (
            "the output device's name ('' when headless; "
            "ending 'lost at HH:MM:SS' once a device stopped playing)"
        ),
    ),
    ("faults", "s", "JSON {id: message} of muted modules"),
    ("limited", "i", "blocks the safety limiter turned down (the output went over full scale)"),
    ("output", "s", "where the sound goes: device, browser (a web page) or none (headless)"),
    ("listening", "i", "browser output: 1 while a page reports what it hears"),
    ("target", "i", "browser output: the page's jitter buffer, in frames"),
    (
        "worker_late",
        "i",
        "blocks a worker was late for the device: its part played silence, the rest on time",
    ),
)


def type_of(value: object) -> str:
    """The OSC type tag python-osc's parser produced ``value`` from."""
    if value is None:
        return "N"
    if value is True:
        return "T"
    if value is False:
        return "F"
    if isinstance(value, int):
        return "i"
    if isinstance(value, float):
        return "f"
    if isinstance(value, str):
        return "s"
    if isinstance(value, (bytes, bytearray)):
        return "b"
    return "?"


def _coerce(path: str, arg: Arg, value: object) -> object:
    t = type_of(value)
    if arg.type == "i" and t == "i":
        if not -(2**63) <= value < 2**63:  # type: ignore[operator]
            raise OscArgError(f"{path}: {arg.name}={value} does not fit an integer")
        return value
    if arg.type == "f" and t in "if":
        return float(value)  # type: ignore[arg-type]
    if arg.type == "s" and t == "s":
        return value
    if arg.type == "b" and t == "b":
        return bytes(value)  # type: ignore[arg-type]
    raise OscArgError(
        f"{path}: argument {arg.name} must be of type {arg.type!r} "
        f"({_TYPE_NAMES[arg.type]}), got {t!r} {value!r}"
    )


_TYPE_NAMES = {"i": "an integer", "f": "a number", "s": "a string", "b": "a blob"}


def check_args(path: str, params: list[object]) -> tuple[object, ...]:
    """Check a message's arguments against its address; return them typed.

    Integers are accepted where a float is expected (``oscsend ... i 440``);
    nothing else is converted.

    Raises
    ------
    OscArgError
        With a message naming the address, its signature and what was wrong.
    """
    spec = ADDRESSES.get(path)
    if spec is None:
        raise OscArgError(
            f"unknown address {path!r}; the engine answers " + ", ".join(sorted(ADDRESSES))
        )
    if spec.any_args:
        return tuple(params)
    n_req, n_opt = len(spec.args), len(spec.optional)
    extra = len(params) - n_req
    ok = extra >= 0 and (extra <= n_opt if not spec.repeat else extra % len(spec.repeat) == 0)
    if not ok:
        got = " ".join(type_of(p) for p in params) or "none"
        raise OscArgError(f"{path} takes {spec.signature()}; got {len(params)} argument(s) ({got})")
    out = []
    for k, value in enumerate(params):
        if k < n_req:
            arg = spec.args[k]
        elif spec.repeat:
            arg = spec.repeat[(k - n_req) % len(spec.repeat)]
        else:
            arg = spec.optional[k - n_req]
        out.append(_coerce(path, arg, value))
    return tuple(out)
