"""Module classes written in Python, shipped to the engine as ``/type/define`` blobs.

A class written in a notebook cell exists only in the kernel.  To play it
live, the kernel sends ``cloudpickle.dumps(cls)`` (:func:`dump_type`) and the
engine, and each of its workers, rebuilds the class from it
(:func:`load_type`).  Loading runs the pickled code: this is why the engine's
OSC port stays on ``127.0.0.1`` unless the user trusts the network.

Examples
--------
In a notebook cell (``__main__``):

>>> class Clip(js.Module):                            # doctest: +SKIP
...     params = (js.Param("input", 0.0, -1e30, 1e30),)
...     def process(self, input):
...         return np.clip(input, -0.5, 0.5)
>>> blob = dump_type(Clip)                            # doctest: +SKIP
>>> load_type("__main__.Clip", blob).__qualname__     # doctest: +SKIP
'Clip'
"""

from __future__ import annotations

import sys

from ..errors import EngineError, PatchError
from ..graph import Module, type_name

__all__ = ["MAX_DEFINITION", "dump_type", "is_builtin", "load_type"]

#: Largest pickled class sent: the message (address, name, blob) must fit one UDP
#: datagram (65507 bytes) in the player's bundles (60000 bytes), with room for the name.
MAX_DEFINITION = 59000


def is_builtin(cls: type[Module]) -> bool:
    """True for the classes of the jupysynth package, which every engine has."""
    return cls.__module__.split(".")[0] == "jupysynth"


def dump_type(cls: type[Module]) -> bytes:
    """``cls`` pickled by value, for ``/type/define``.

    A class from an importable module (a test file, a ``.py`` next to the
    notebook) is pickled by value too, with that module's functions, since
    the engine's Python may not import it; other modules it uses (numpy,
    math) travel by name and must be importable in the engine.

    Raises
    ------
    EngineError
        If cloudpickle is missing, the class cannot be pickled, or its pickle
        is larger than :data:`MAX_DEFINITION` (one OSC datagram); the message
        says what to do.
    """
    name = type_name(cls)
    try:
        import cloudpickle
    except ImportError:
        raise EngineError(
            f"{name} is written in Python: playing it live needs cloudpickle "
            "(pip install 'jupysynth[live]')"
        ) from None
    module = sys.modules.get(cls.__module__)
    by_value = (
        module is not None
        and cls.__module__ != "__main__"  # cloudpickle pickles __main__ by value anyway
        and cls.__module__ not in cloudpickle.list_registry_pickle_by_value()
    )
    if by_value:
        cloudpickle.register_pickle_by_value(module)
    try:
        blob = cloudpickle.dumps(cls)
    except Exception as exc:  # noqa: BLE001 - any object in the class may refuse
        raise EngineError(
            f"{name} cannot be sent to the engine: pickling it failed "
            f"({type(exc).__name__}: {exc}); keep objects such as open files, locks "
            "or widgets out of the class and create them in setup()"
        ) from None
    finally:
        if by_value:
            cloudpickle.unregister_pickle_by_value(module)
    if len(blob) > MAX_DEFINITION:
        raise EngineError(
            f"{name} pickles to {len(blob)} bytes, more than the {MAX_DEFINITION} that one "
            "OSC datagram carries to the engine; keep large data (tables, arrays, samples) "
            "out of the class body and the functions it uses: compute or load it in setup()"
        )
    return blob


def load_type(name: str, blob: bytes) -> type[Module]:
    """The module class in ``blob``, checked, *not yet* registered.

    Unpickling builds the class without running its class statement, so it
    does not register itself; the caller registers it
    (:func:`jupysynth.graph.register_type`) once it fits the patch.  Should
    unpickling register a half-built class anyway (a subclass of a registered
    class), the previous entry is put back.

    Raises
    ------
    PatchError
        Whatever went wrong (a corrupted blob, a module the engine cannot
        import, not a module class, another name than ``name``), naming the
        class and what to do.
    """
    registry = Module._registry
    before = registry.get(name)
    try:
        import cloudpickle

        obj = cloudpickle.loads(blob)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - the engine must outlive any blob
        raise PatchError(
            f"the engine cannot load module type {name!r} ({type(exc).__name__}: "
            f"{str(exc)[:300]}); send cloudpickle.dumps(cls) of a Module subclass, and make "
            "the packages it imports importable in the engine's Python"
        ) from None
    finally:
        if before is None:
            registry.pop(name, None)
        else:
            registry[name] = before
    if not isinstance(obj, type) or not issubclass(obj, Module):
        raise PatchError(
            f"/type/define {name!r} carries a {type(obj).__name__}, not a Module subclass; "
            "send cloudpickle.dumps(cls) of the class itself"
        )
    if not obj.kernel:
        raise PatchError(
            f"{name} has no kernel: give it a process(self, ...) method or a sample(...) "
            "staticmethod"
        )
    if is_builtin(obj):
        raise PatchError(f"{name} is built into jupysynth and cannot be redefined live")
    if type_name(obj) != name:
        raise PatchError(
            f"/type/define names {name!r} but the class is {type_name(obj)!r}; "
            "send the name jupysynth.graph.type_name(cls) gives"
        )
    return obj
