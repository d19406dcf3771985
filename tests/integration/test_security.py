"""Only its owner can play the engine: every attack of a stranger on the machine, refused.

A stranger here is a process of another user: the test forks, the child drops
to uid ``nobody`` (``os.setuid``; the test runs as root in CI, and skips these
where it cannot switch users) and attacks the engine with nothing but the
standard library, reporting what happened through a pipe.  Each test then
checks, in the owner's process, that nothing was executed, recorded, changed
or written.
"""

from __future__ import annotations

import json
import os
import pickle
import socket
import stat
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import jupysynth as js
from jupysynth.control import local
from jupysynth.control.client import Client
from jupysynth.control.packets import decode_packet, encode_bundle, encode_message
from jupysynth.control.tap import Tap, map_segment
from jupysynth.errors import EngineError, ParamError
from jupysynth.player import Engine, play

NOBODY = 65534
can_switch_users = pytest.mark.skipif(
    os.geteuid() != 0, reason="switching to another uid needs root (CI runs as root)"
)


class Exploit:
    """A pickle that runs code when loaded: it writes ``path``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (exec, (f"open({self.path!r}, 'w').write('pwned')",))


def as_stranger(attack: Callable[[], dict]) -> dict:
    """Run ``attack`` in a forked child that became uid ``nobody``; its result."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no pytest, no jupysynth calls, only sockets and files
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            out = attack()
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            out = {"crashed": f"{type(exc).__name__}: {exc}"}
        os.write(w, json.dumps(out).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    result = json.loads(data)
    assert "crashed" not in result, result
    return result


def try_call(fn: Callable[[], object]) -> str:
    """'ok', or the name of the error ``fn`` raised."""
    try:
        fn()
        return "ok"
    except OSError as exc:
        return type(exc).__name__


def udp_exchange(port: int, packets: list[bytes], wait: float = 0.5) -> list:
    """Send ``packets`` to the public port from a fresh socket; every reply (decoded)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(wait)
    replies = []
    try:
        for data in packets:
            sock.sendto(data, ("127.0.0.1", port))
        while True:
            try:
                got, _ = sock.recvfrom(65536)
            except TimeoutError:
                break
            replies += [(a, args) for _, a, args in decode_packet(got)]
    finally:
        sock.close()
    return replies


@pytest.fixture(scope="module")
def engine():
    with Engine(headless=True, port=0) as e:
        yield e
    assert not e.running


@pytest.fixture
def victim(engine):
    osc = js.Sine(freq=440, amp=0.25, name="victim")
    play(osc, engine)
    engine.sync()
    yield osc
    engine.send("/panic")
    engine.sync()


def udp_ports_of(pid: int) -> list[int]:
    """The UDP ports process ``pid`` has open (``ss -lunp``, read from /proc)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    ports = []
    for table in ("udp", "udp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.append(int(fields[1].split(":")[1], 16))
    return ports


def test_an_engine_opens_no_network_port_unless_asked():
    with Engine(headless=True) as e:
        assert e.port is None
        assert udp_ports_of(e.pid) == []
        path = Path(e.socket_path)
        assert stat.S_ISSOCK(path.stat().st_mode)
        d = path.parent.stat()
        assert d.st_uid == os.getuid() and d.st_mode & 0o077 == 0
    assert not path.exists()  # the engine removed its socket


@can_switch_users
def test_a_stranger_cannot_reach_the_owners_socket_nor_run_code_through_it(
    engine, victim, tmp_path
):
    marker = f"/tmp/jupysynth-pwned-{os.getpid()}"
    before = engine.status()
    define = encode_message("/type/define", ("__main__.X", pickle.dumps(Exploit(marker))), "sb")
    knob = encode_message("/param/set", (victim.id, "freq", 1000.0), "isf")
    status = encode_message("/status")
    path = engine.socket_path

    def attack() -> dict:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        return {
            "list": try_call(lambda: os.listdir(os.path.dirname(path))),
            "define": try_call(lambda: sock.sendto(define, path)),
            "knob": try_call(lambda: sock.sendto(knob, path)),
            "status": try_call(lambda: sock.sendto(status, path)),
        }

    got = as_stranger(attack)
    assert got == {
        "list": "PermissionError",
        "define": "PermissionError",
        "knob": "PermissionError",
        "status": "PermissionError",
    }
    time.sleep(0.2)
    assert not os.path.exists(marker)
    after = engine.status()
    assert after["messages"] - before["messages"] == 1  # the owner's own /status
    assert victim.freq == 440
    x = engine.record(0.2)[:, 0]
    k = np.argmax(np.abs(np.fft.rfft(x * np.hanning(len(x)))))
    assert k * 48000 / len(x) == pytest.approx(440, abs=10)  # still 440 Hz


@can_switch_users
def test_with_the_directory_opened_by_mistake_the_strangers_datagrams_are_dropped_unread(
    engine, victim
):
    """The second lock: the uid the kernel attaches to each datagram."""
    marker = f"/tmp/jupysynth-pwned2-{os.getpid()}"
    define = encode_message("/type/define", ("__main__.X", pickle.dumps(Exploit(marker))), "sb")
    knob = encode_message("/param/set", (victim.id, "amp", 1.0), "isf")
    ping = encode_message("/ping", (1,), "i")
    path = engine.socket_path
    d = os.path.dirname(path)
    before = engine.status()
    os.chmod(d, 0o755)
    os.chmod(path, 0o777)
    try:

        def attack() -> dict:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind("")  # autobind: an address to answer to, had the engine answered
            sock.settimeout(0.5)
            sent = [try_call(lambda m=m: sock.sendto(m, path)) for m in (define, knob, ping)]
            try:
                reply = sock.recv(65536).decode("latin-1")
            except TimeoutError:
                reply = None
            return {"sent": sent, "reply": reply}

        got = as_stranger(attack)
    finally:
        os.chmod(path, 0o600)
        local.runtime_dir()  # closes the directory again, as every use checks it
    assert os.stat(d).st_mode & 0o777 == 0o700
    assert got == {"sent": ["ok", "ok", "ok"], "reply": None}  # delivered, never answered
    time.sleep(0.2)
    assert not os.path.exists(marker)
    after = engine.status()
    assert after["messages"] - before["messages"] == 1  # only the owner's /status was read
    assert after["errors"] == before["errors"]
    assert np.abs(engine.record(0.2)).max() == pytest.approx(0.25, rel=1e-3)


def test_the_public_port_refuses_code_modules_taps_and_subscriptions(engine, victim):
    marker = f"/tmp/jupysynth-pwned3-{os.getpid()}"
    before = engine.status()
    hostile = [
        encode_message("/type/define", ("__main__.X", pickle.dumps(Exploit(marker))), "sb"),
        encode_message("/module/new", (999, "Sine", "{}"), "iss"),
        encode_message("/tap/open", (1, victim.id, 0, 16384), "iiii"),
        encode_message("/notify", (1,), "i"),
        encode_message("/panic"),
        encode_message("/module/free", (victim.id,), "i"),
        encode_bundle([encode_message("/fade", (0.5,), "f")]),
    ]
    replies = udp_exchange(engine.port, hostile)
    refused = [args[0] for a, args in replies if a == "/error"]
    assert refused == [
        "/type/define",
        "/module/new",
        "/tap/open",
        "/notify",
        "/panic",
        "/module/free",
        "/fade",
    ]
    assert all("the public OSC port accepts only" in args[1] for _, args in replies)
    time.sleep(0.2)
    assert not os.path.exists(marker)
    after = engine.status()
    assert after["modules"] == before["modules"] == 1
    assert after["faults"] == {}
    assert np.abs(engine.record(0.2)).max() == pytest.approx(0.25, rel=1e-3)


def test_the_public_port_turns_knobs_plays_stops_and_answers_status(engine, victim):
    """What the owner opened it for, from a plain UDP socket."""
    token = 4242
    replies = udp_exchange(
        engine.port,
        [
            encode_message("/param/set", (victim.id, "amp", 0.5), "isf"),
            encode_message("/sync", (token,), "i"),
            encode_message("/status"),
        ],
    )
    assert ("/synced", [token]) in replies
    assert any(a == "/status/reply" for a, _ in replies)
    assert np.abs(engine.record(0.2)[4800:]).max() == pytest.approx(0.5, rel=1e-3)
    udp_exchange(engine.port, [encode_message("/out/remove", (victim.id,), "i")], wait=0.1)
    engine.sync()
    assert np.abs(engine.record(0.1)).max() == 0.0


def test_replies_and_pushes_sent_to_an_engine_are_never_answered(engine):
    """No /error ping-pong between two engines, or an engine and itself."""
    before = engine.status()
    echoes = [
        encode_message("/error", ("/x", "boom"), "ss"),
        encode_message("/fault", (1, "Sine#1", "boom"), "iss"),
        encode_message("/fault/cleared", (1,), "i"),
        encode_message("/pong", (1,), "i"),
        encode_message("/synced", (1,), "i"),
        encode_message("/status/reply"),
        encode_message("/tap/opened", (1, "x"), "is"),
    ]
    assert udp_exchange(engine.port, echoes) == []
    with Client(path=engine.socket_path) as owner:
        for data in echoes:
            owner.send_raw(data)
        owner.sync()
        assert owner.take_errors() == []
    after = engine.status()
    assert after["errors"] == before["errors"]
    assert after["messages"] - before["messages"] == 2 * len(echoes) + 2  # + /sync, /status


@can_switch_users
def test_a_tap_ring_is_created_by_the_engine_and_unreadable_to_a_stranger(engine, victim):
    with Tap(engine, victim.id) as tap:
        seg = Path("/dev/shm") / tap.name
        st = seg.lstat()
        assert stat.S_ISREG(st.st_mode) and st.st_mode & 0o777 == 0o600
        assert st.st_uid == os.getuid()
        time.sleep(0.1)
        assert np.abs(tap()).max() == pytest.approx(0.25, rel=1e-3)
        seg_path = str(seg)

        def attack() -> dict:
            return {
                "read": try_call(lambda: open(seg_path, "rb").read(64)),
                "write": try_call(lambda: open(seg_path, "r+b").write(b"x")),
                "unlink": try_call(lambda: os.unlink(seg_path)),
            }

        assert as_stranger(attack) == {
            "read": "PermissionError",
            "write": "PermissionError",
            "unlink": "PermissionError",  # /dev/shm is sticky: only the owner removes
        }
    assert not seg.exists()  # /tap/close removed what the engine created


def test_the_browser_output_ring_is_the_owners_alone_and_heard_reports_are_the_owners():
    with Engine(output="browser", port=0) as engine:
        seg = Path("/dev/shm") / engine.info["out_ring"]
        st = seg.lstat()
        assert stat.S_ISREG(st.st_mode) and st.st_mode & 0o777 == 0o600
        assert st.st_uid == os.getuid()
        seg_path = str(seg)

        def attack() -> dict:
            return {
                "read": try_call(lambda: open(seg_path, "rb").read(64)),
                "unlink": try_call(lambda: os.unlink(seg_path)),
            }

        assert as_stranger(attack) == {"read": "PermissionError", "unlink": "PermissionError"}
        # a stranger on the public port cannot steer the clock a page leads
        replies = udp_exchange(engine.port, [encode_message("/out/heard", (10**9, 48000), "ii")])
        assert [a for a, _ in replies] == ["/error"]
        assert "the public OSC port accepts only" in replies[0][1][1]
        assert not engine.status()["listening"]
    assert not seg.exists()  # the engine removed its ring as it stopped


def test_the_kernel_never_maps_a_planted_link_or_anothers_file_as_a_ring(tmp_path):
    target = tmp_path / "precious"
    target.write_bytes(b"\0" * 200000)
    link = Path("/dev/shm") / f"jupysynth-{os.getuid()}-tap-planted{os.getpid()}"
    link.symlink_to(target)
    try:
        with pytest.raises(OSError):  # ELOOP: O_NOFOLLOW
            map_segment(link.name, 1024)
    finally:
        link.unlink()
    with pytest.raises(EngineError, match="not a segment of its own"):
        map_segment("../../etc/passwd", 1024)


def test_a_stale_runtime_directory_of_another_user_is_refused(tmp_path, monkeypatch):
    d = tmp_path / "rt"
    d.mkdir(mode=0o700)
    if os.geteuid() == 0:
        os.chown(d, NOBODY, NOBODY)
        monkeypatch.setenv("JUPYSYNTH_RUNTIME_DIR", str(d))
        with pytest.raises(EngineError, match="belongs to uid 65534, not to you"):
            local.runtime_dir()
    link = tmp_path / "link"
    link.symlink_to(tmp_path)
    monkeypatch.setenv("JUPYSYNTH_RUNTIME_DIR", str(link))
    with pytest.raises(EngineError, match="not a directory"):
        local.runtime_dir()


def test_what_a_sigkilled_process_left_is_swept_by_the_next_engine():
    pid = os.fork()
    if pid == 0:
        Client(path="/nonexistent")  # binds its socket, then dies without closing it
        os.kill(os.getpid(), 9)
    os.waitpid(pid, 0)
    left = [p for p in os.listdir(local.runtime_dir()) if p.startswith(f"client-{pid}-")]
    assert left
    ring = Path(f"/dev/shm/jupysynth-{os.getuid()}-tap-{pid}-0123456789abcdef")  # its engine's
    ring.write_bytes(b"\0" * 128)
    out = Path(f"/dev/shm/jupysynth-{os.getuid()}-out-{pid}-0123456789abcdef")
    out.write_bytes(b"\0" * 128)
    with Engine(headless=True):
        assert not [p for p in os.listdir(local.runtime_dir()) if p.startswith(f"client-{pid}-")]
        assert not ring.exists() and not out.exists()


def test_the_public_port_plays_and_stops_modules_by_name(engine, victim):
    replies = udp_exchange(
        engine.port,
        [
            encode_message("/param/set", ("victim", "amp", 0.125), "ssf"),
            encode_message("/param/set", ("nobody here", "amp", 0.5), "ssf"),
            encode_message("/sync", (7,), "i"),
        ],
    )
    assert ("/synced", [7]) in replies
    errors = [args for a, args in replies if a == "/error"]
    assert errors == [["/param/set", "no module is named 'nobody here'"]]
    assert np.abs(engine.record(0.2)[4800:]).max() == pytest.approx(0.125, rel=1e-3)
    udp_exchange(engine.port, [encode_message("/out/remove", ("victim",), "s")], wait=0.1)
    engine.sync()
    assert np.abs(engine.record(0.1)).max() == 0.0


def test_a_public_port_with_a_token_refuses_messages_without_it():
    with Engine(headless=True, port=0, token="Zm9vYmFyYmF6") as e:
        osc = js.Sine(freq=440, amp=0.25, name="lead")
        play(osc, e)
        e.sync()
        replies = udp_exchange(
            e.port,
            [
                encode_message("/param/set", ("lead", "amp", 0.5), "ssf"),
                encode_message("/wrongtoken12/param/set", ("lead", "amp", 0.5), "ssf"),
                encode_message("/status"),
            ],
        )
        assert [a for a, _ in replies] == ["/error"] * 3
        assert all("this port wants its token" in args[1] for _, args in replies)
        assert np.abs(e.record(0.1)).max() == pytest.approx(0.25, rel=1e-3)
        replies = udp_exchange(
            e.port,
            [
                encode_message("/Zm9vYmFyYmF6/param/set", ("lead", "amp", 0.5), "ssf"),
                encode_message("/Zm9vYmFyYmF6/sync", (3,), "i"),
            ],
        )
        assert replies == [("/synced", [3])]
        assert np.abs(e.record(0.2)[4800:]).max() == pytest.approx(0.5, rel=1e-3)
    with pytest.raises(ParamError, match="token must be 8 to 128"):
        Engine(port=0, token="short")
