"""The owner's channel: Unix datagram sockets in a directory only the user can enter.

The kernel talks to its engine over this channel, which carries the whole
address space (``/type/define`` runs code, ``/tap/open`` writes shared
memory).  Two locks stand in a stranger's way, and either alone holds:

1. **The directory.**  Every socket lives in :func:`runtime_dir`, a directory
   owned by the user with mode ``0700`` (``$XDG_RUNTIME_DIR/jupysynth``, else
   ``/tmp/jupysynth-<uid>``), checked on every use: not a symbolic link, owned
   by this uid, closed to group and others.  Sending to a Unix socket needs
   search permission on its directory, so another user's ``sendto`` fails
   with ``EACCES`` before the engine sees a byte.
2. **The sender's credentials.**  Each socket sets ``SO_PASSCRED``, so the
   kernel attaches the sending process's real uid to every datagram
   (``SCM_CREDENTIALS``; an unprivileged process cannot claim another uid).
   :func:`receive` drops a datagram whose uid is not this process's before
   decoding it: nothing from another user is parsed, let alone unpickled.

This is the model of ``ssh-agent`` and of ``tmux`` (``/tmp/tmux-<uid>``),
and what Jupyter's own kernel connection files rely on: the user's file
permissions are the boundary.  Loopback UDP is not one: every user of a
machine shares ``127.0.0.1``.  Root can pass both locks, as it can read any
file of any user; nothing here is meant to stop root.

Examples
--------
>>> import os
>>> from jupysynth.control.local import runtime_dir
>>> d = runtime_dir()
>>> os.stat(d).st_mode & 0o077
0
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
import stat
import struct

from ..errors import EngineError

__all__ = [
    "MAX_DATAGRAM",
    "bind",
    "client_path",
    "engine_path",
    "receive",
    "runtime_dir",
    "sweep",
]

#: Largest datagram read from the owner's channel (bundles are split well below this).
MAX_DATAGRAM = 1 << 18
#: Send and receive buffers asked for: a burst of edits waits here while a block renders.
BUFFER_BYTES = 4 << 20

_UCRED = struct.Struct("3i")  # pid, uid, gid
_ANC = socket.CMSG_SPACE(_UCRED.size)
_clients = itertools.count(1)


def runtime_dir() -> str:
    """The user's private directory for jupysynth's sockets, created and checked.

    ``$JUPYSYNTH_RUNTIME_DIR`` if set, else ``$XDG_RUNTIME_DIR/jupysynth`` when
    that runtime directory is this user's, else ``/tmp/jupysynth-<uid>``.

    Raises
    ------
    jupysynth.errors.EngineError
        If the path is a symbolic link, is not a directory, or belongs to
        another user (someone may be waiting for the engine's messages there),
        saying what to remove or which variable to set.
    """
    uid = os.getuid()
    path = os.environ.get("JUPYSYNTH_RUNTIME_DIR")
    if not path:
        xdg = os.environ.get("XDG_RUNTIME_DIR")
        if xdg and _owned_dir(xdg, uid):
            path = os.path.join(xdg, "jupysynth")
        else:
            path = os.path.join("/tmp", f"jupysynth-{uid}")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise EngineError(
            f"cannot create jupysynth's private directory {path}: {exc.strerror}; "
            "set JUPYSYNTH_RUNTIME_DIR to a directory of yours"
        ) from None
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise EngineError(
            f"{path} should be jupysynth's private directory but is not a directory "
            "(a symbolic link or a file); remove it, or set JUPYSYNTH_RUNTIME_DIR"
        )
    if st.st_uid != uid:
        raise EngineError(
            f"{path} belongs to uid {st.st_uid}, not to you (uid {uid}): another user "
            "may be trying to receive your engine's messages; remove it (as its owner or "
            "root), or set JUPYSYNTH_RUNTIME_DIR to a directory of yours"
        )
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)  # ours, but opened up: close it before use
    return path


def _owned_dir(path: str, uid: int) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == uid and not st.st_mode & 0o077


def engine_path(pid: int | None = None) -> str:
    """Where the engine process ``pid`` (default: this one) listens."""
    return os.path.join(runtime_dir(), f"engine-{os.getpid() if pid is None else pid}.sock")


def client_path() -> str:
    """A fresh path for one client socket of this process."""
    return os.path.join(runtime_dir(), f"client-{os.getpid()}-{next(_clients)}.sock")


def bind(path: str) -> socket.socket:
    """A Unix datagram socket bound to ``path`` (mode 0600), with the senders' uids attached.

    A socket left at ``path`` by a process that died is replaced.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, BUFFER_BYTES)
            except OSError:
                pass
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        old = os.umask(0o177)
        try:
            sock.bind(path)
        finally:
            os.umask(old)
    except OSError as exc:
        sock.close()
        raise EngineError(f"cannot listen on {path}: {exc.strerror or exc}") from None
    return sock


def receive(sock: socket.socket, buf: bytearray) -> tuple[bytes | None, str | None] | None:
    """One datagram from a process of this user: ``(data, sender path)``, else None.

    None for a datagram from another uid (dropped unread); ``(None, sender)``
    for one of this user's larger than ``buf`` (cut short by the kernel, so
    not read: half a message would be worse).

    Raises
    ------
    TimeoutError, OSError
        As ``socket.recvmsg_into`` does.
    """
    n, anc, flags, sender = sock.recvmsg_into([buf], _ANC)
    uid = None
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            uid = _UCRED.unpack_from(data)[1]
    if uid != os.getuid():
        return None
    if flags & socket.MSG_TRUNC:
        return None, (sender or None)
    return bytes(buf[:n]), (sender or None)


def sweep() -> int:
    """Remove what processes of this user that are gone left behind; how many.

    Their sockets in :func:`runtime_dir` (``engine-<pid>.sock``,
    ``client-<pid>-<n>.sock``) and the engines' tap and browser-output rings in
    ``/dev/shm`` (``jupysynth-<uid>-tap-<pid>-<random>``, ``...-out-...``): a
    kernel or engine killed with SIGKILL cannot remove them, so the next engine
    started does.
    """
    removed = 0
    found: list[tuple[str, str]] = []  # (path, pid)
    for entry in os.scandir(runtime_dir()):
        parts = entry.name.split("-")
        if entry.name.endswith(".sock") and len(parts) >= 2:
            found.append((entry.path, parts[1].split(".")[0]))
    rings = tuple(f"jupysynth-{os.getuid()}-{kind}-" for kind in ("tap", "out"))
    if os.path.isdir("/dev/shm"):
        for entry in os.scandir("/dev/shm"):
            for prefix in rings:
                if entry.name.startswith(prefix):
                    found.append((entry.path, entry.name[len(prefix) :].split("-")[0]))
    for path, pid_text in found:
        try:
            pid = int(pid_text)
        except ValueError:
            continue
        try:
            os.kill(pid, 0)
            continue  # alive (or another user's pid: not ours to judge)
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        try:
            if os.lstat(path).st_uid != os.getuid():
                continue
            os.unlink(path)
            removed += 1
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise
    return removed
