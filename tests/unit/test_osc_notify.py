"""Engine pushes: which faults are news (diffing) and who hears them (routing)."""

from __future__ import annotations

import pytest

from jupysynth.control.client import Client, Fault
from jupysynth.control.notify import MAX_MESSAGE, Notifier

KERNEL = "/tmp/jupysynth-0/client-100-1.sock"
PHONE = "/tmp/jupysynth-0/client-200-1.sock"
SHELL = "/tmp/jupysynth-0/client-300-1.sock"
TRACE = "Fold#7 Traceback (most recent call last):\n  File 'x', line 3\nValueError: boom"


def faults(*ids: int, text: str = TRACE) -> dict[int, tuple[str, str]]:
    return {i: (f"Fold#{i}", text.replace("Fold#7", f"Fold#{i}")) for i in ids}


def test_a_new_fault_goes_to_its_creator_once_with_the_label_taken_off_the_message():
    n = Notifier()
    n.created(7, KERNEL)
    n.created(8, PHONE)
    assert n.poll({}) == []
    message = "Traceback (most recent call last):\n  File 'x', line 3\nValueError: boom"
    assert n.poll(faults(7)) == [(KERNEL, "/fault", (7, "Fold#7", message), "iss")]
    assert n.poll(faults(7)) == []  # nothing new
    # the same module faulting differently is news again
    assert [p[2][2] for p in n.poll(faults(7, text="Fold#7 produced NaN"))] == ["produced NaN"]


def test_a_cleared_fault_is_pushed_and_a_fault_after_it_again():
    n = Notifier()
    n.created(7, KERNEL)
    n.poll(faults(7))
    assert n.poll({}) == [(KERNEL, "/fault/cleared", (7,), "i")]
    assert n.poll({}) == []
    assert [p[1] for p in n.poll(faults(7))] == ["/fault"]


def test_subscribers_hear_every_fault_and_the_creator_is_not_told_twice():
    n = Notifier()
    n.created(7, KERNEL)
    n.notify(KERNEL, 1)  # the creator subscribed too
    n.notify(SHELL, 1)
    pushes = n.poll(faults(7, 12))  # 12: created by nobody we know (before a restart, say)
    assert [(to, args[0]) for to, _, args, _ in pushes] == [
        (KERNEL, 7),
        (SHELL, 7),
        (KERNEL, 12),
        (SHELL, 12),
    ]
    n.notify(SHELL, 0)
    n.notify(KERNEL, 0)
    assert n.subscribers == []
    assert n.poll({}) == [(KERNEL, "/fault/cleared", (7,), "i")]


def test_a_new_subscriber_first_gets_the_faults_already_there():
    n = Notifier()
    n.created(7, KERNEL)
    n.poll(faults(7))
    n.notify(PHONE, 1)
    pushes = n.poll(faults(7, 8))
    assert [(to, args[0]) for to, _, args, _ in pushes] == [(PHONE, 7), (PHONE, 8)]
    assert n.poll(faults(7, 8)) == []
    n.notify(PHONE, 1)  # subscribing again: the current faults again
    assert [args[0] for _, _, args, _ in n.poll(faults(7, 8))] == [7, 8]


def test_a_freed_module_tells_its_creator_it_cleared_then_forgets_the_creator():
    n = Notifier()
    n.created(7, KERNEL)
    n.created(8, KERNEL)
    n.poll(faults(7))
    n.freed(7)  # faulted: the creator still hears the clear
    n.freed(8)  # not faulted: forgotten at once
    assert n.poll({}) == [(KERNEL, "/fault/cleared", (7,), "i")]
    assert n.poll(faults(7, 8)) == []  # ids reused by another client unknown to us


def test_a_recreated_id_routes_to_its_new_creator():
    n = Notifier()
    n.created(7, KERNEL)
    n.created(7, PHONE)
    assert [p[0] for p in n.poll(faults(7))] == [PHONE]


def test_creators_and_subscribers_are_bounded():
    n = Notifier(max_subscribers=2, max_creators=3)
    for i in range(5):
        n.created(i, f"/tmp/jupysynth-0/client-{1000 + i}-1.sock")
    assert [p[0].split("-")[2] for p in n.poll(faults(0, 1, 2, 3, 4))] == ["1002", "1003", "1004"]
    n.notify(KERNEL, 1)
    n.notify(PHONE, 1)
    with pytest.raises(ValueError, match="2 clients already subscribed; one must send /notify 0"):
        n.notify(SHELL, 1)


def test_a_long_traceback_keeps_its_end():
    n = Notifier()
    n.created(7, KERNEL)
    text = "Fold#7 Traceback:\n" + "".join(f"  frame {k}\n" for k in range(2000)) + "KeyError: 3"
    ((_, _, (_, _, message), _),) = n.poll({7: ("Fold#7", text)})
    assert len(message) <= MAX_MESSAGE + 4
    assert message.startswith("...\n  frame ") and message.endswith("frame 1999\nKeyError: 3")


def test_the_client_follows_the_pushes_and_calls_on_fault():
    with Client(port=9) as client:  # nothing listens there; pushes are fed by hand
        heard = []
        client.on_fault = lambda i, f: heard.append((i, f))
        client._dispatch("/fault", [7, "Fold#7", "Traceback:\n  x\nValueError: boom"])
        fault = client.faults[7]
        assert fault == Fault(7, "Fold#7", "Traceback:\n  x\nValueError: boom")
        assert fault.last_line == "ValueError: boom"
        assert fault.tail(2) == "  x\nValueError: boom"
        client._dispatch("/fault", ["junk"])  # not ours: ignored
        client._dispatch("/fault/cleared", [7])
        assert client.faults == {}
        assert heard == [(7, fault), (7, None)]
        assert client.take_errors() == []


def test_a_fault_tail_shows_the_modules_code_with_source_only_the_kernel_has(monkeypatch):
    import linecache

    import jupysynth.renderer

    cell = ["import numpy as np\n", "def process(self, input):\n", "    return input / nope\n"]
    monkeypatch.setitem(linecache.cache, "<cell-4>", (0, None, cell, "<cell-4>"))
    message = (
        "Traceback (most recent call last):\n"
        f'  File "{jupysynth.renderer.__file__}", line 340, in run\n'
        "    y = obj.process(**kwargs)\n"
        "        ^^^^^^^^^^^^^^^^^^^^^\n"
        '  File "<cell-4>", line 3, in process\n'
        "NameError: name 'nope' is not defined"
    )
    # the engine's own frame is left out; the cell's line comes from the kernel's linecache
    assert Fault(4, "Fold#4", message).tail(4) == (
        '  File "<cell-4>", line 3, in process\n'
        "    return input / nope\n"
        "NameError: name 'nope' is not defined"
    )
    shown = '  File "/x.py", line 9, in f\n    a = 1 / 0\n    ~~^~~\nZeroDivisionError: boom'
    assert Fault(4, "f", shown).tail(2) == "    a = 1 / 0\nZeroDivisionError: boom"
