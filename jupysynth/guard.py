"""A time budget for Python code written in a cell, run where a block waits for it.

A module's ``process()`` runs inside a block: in the engine's sandbox process
(:mod:`jupysynth.engine.sandbox`, with ``Engine(workers=0)``).  One that
sleeps, loops for ever or calls ``sys.exit`` must not cost more than its
budget: :func:`call` runs it with an interval timer armed
(``setitimer(ITIMER_REAL)``), whose ``SIGALRM`` handler raises
:class:`Overrun` in the block thread once the budget is spent -- out of a
``time.sleep``, a Python loop, or, as soon as it returns, a slow C call.  The
renderer catches it (and ``SystemExit``, ``KeyboardInterrupt``, anything)
and mutes that module alone, naming it.  The timer repeats every millisecond
until disarmed, so code that swallows the first :class:`Overrun` with a bare
``except:`` gets another.  :func:`install` also makes ``os._exit`` called from
such code raise instead of ending the engine.

This needs the main thread (Python runs signal handlers there): the
sandbox runs its groups there.  Elsewhere (an offline ``render()`` in a
notebook thread) :func:`call` just calls.  A patch without Python modules
never comes here: it costs nothing.

What it cannot stop, because no Python runs while it happens -- a ``sample()``
function compiled by numba that never returns, code that crashes the process
-- the sandbox's engine stops instead, by killing the sandbox.

Examples
--------
>>> import time
>>> from jupysynth import guard
>>> guard.install()
True
>>> try:
...     guard.call(time.sleep, {"secs": 5.0}, budget=0.01)
... except guard.Overrun as exc:
...     print(str(exc)[:50])
took longer than 10 ms, its budget per block, and
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["Overrun", "call", "exit_after", "install", "installed"]

#: Once the budget is spent, the timer fires again this often until disarmed.
REPEAT_SECONDS = 0.001

_installed = False
_armed = False  # True while user code runs under the timer
_exiting = False  # exit_after() took the timer over
_budget = 0.0
_real_exit = os._exit


class Overrun(BaseException):
    """Raised in user code that took longer than its budget.

    A ``BaseException``, like ``KeyboardInterrupt``, so ``except Exception``
    in the user's own code does not swallow it.
    """


class UserExit(BaseException):
    """``os._exit`` called from user code: refused, the engine goes on."""


def _on_alarm(signum: int, frame: Any) -> None:
    if _armed:
        raise Overrun(
            f"took longer than {_budget * 1e3:.0f} ms, its budget per block, and was "
            "stopped; make it faster (numpy on the whole block, heavy work in setup())"
        )


def _guarded_exit(code: int) -> None:
    if _armed and threading.current_thread() is threading.main_thread():
        raise UserExit(f"os._exit({code}) was called; a module may not end the engine")
    _real_exit(code)


def install() -> bool:
    """Take ``SIGALRM`` for the budget and guard ``os._exit``; False off the main thread."""
    global _installed
    if threading.current_thread() is not threading.main_thread():
        return False
    signal.signal(signal.SIGALRM, _on_alarm)
    os._exit = _guarded_exit  # type: ignore[assignment]
    _installed = True
    return True


def installed() -> bool:
    """True once :func:`install` ran (in this process, from its main thread)."""
    return _installed


def call(fn: Callable[..., Any], kwargs: dict[str, Any], budget: float) -> Any:
    """``fn(**kwargs)``, raising :class:`Overrun` in it after ``budget`` seconds.

    Unguarded (a plain call) where :func:`install` did not run or off the main thread.
    """
    global _armed, _budget
    if not _installed or _exiting or threading.current_thread() is not threading.main_thread():
        return fn(**kwargs)
    _budget = budget
    signal.setitimer(signal.ITIMER_REAL, budget, REPEAT_SECONDS)
    _armed = True
    try:
        return fn(**kwargs)
    finally:
        _armed = False  # first: an alarm from here on is ignored by the handler
        if not _exiting:
            signal.setitimer(signal.ITIMER_REAL, 0.0)


def exit_after(seconds: int) -> None:
    """End the process (``SIGALRM``'s default action) in ``seconds`` whatever it is doing.

    The engine's last resort when an orderly stop stalls; from then on
    :func:`call` no longer touches the timer.  Call it from the main thread
    (a signal handler runs there).
    """
    global _exiting
    _exiting = True
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.setitimer(signal.ITIMER_REAL, float(seconds))
