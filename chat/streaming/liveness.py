"""Who a worker is, and whether one named in a lease is known to have died.

A worker's id names its host, its process and this machine's boot and process namespace. A
lease whose worker was a process of this machine (same boot, same namespace, so its process id
means the same process here) that no longer runs is given up at once: after a hard kill or a
development server's reload, the next process ends the reply interrupted as it starts, where
the tab otherwise showed it frozen until the lease lapsed. Any other lease, one of another
machine or of a process id still in use (even by a process that took the id over), waits for
its lease to lapse, as before. No Django here."""

from __future__ import annotations

import functools
import hashlib
import os
import socket
import uuid


@functools.cache
def _this_machine() -> str:
    """This boot of this machine and this process namespace, in 10 hex digits; "" where the
    system does not say (not Linux): no worker is then known dead before its lease lapses."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as boot:
            boot_id = boot.read().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""
    return hashlib.sha256(f"{boot_id} {namespace}".encode()).hexdigest()[:10]


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}:{_this_machine()}"


def known_dead(worker_id: str) -> bool:
    """Whether the worker named is a process of this machine that has ended (or is a zombie,
    ended and not yet reaped). False when that cannot be known.

    A machine is its host name, its boot and its process namespace. Machines restored from one
    memory snapshot share all three: there, turn this off (CHAT_DETECT_DEAD_WORKERS)."""
    parts = worker_id.split(":")
    if len(parts) != 4 or not parts[3] or parts[3] != _this_machine():
        return False
    if parts[0] != socket.gethostname():
        return False
    try:
        pid = int(parts[1])
    except ValueError:
        return False
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)  # signal 0: only whether the process exists
    except ProcessLookupError:
        return True
    except OSError:  # another user's process (PermissionError): it runs
        return False
    try:
        # A zombie still answers signal 0; /proc says it has ended, if /proc is of this
        # process namespace (one mounted for another would describe another process).
        with open("/proc/self/stat", "rb") as own:
            if int(own.read().split()[0]) != os.getpid():
                return False
        with open(f"/proc/{pid}/stat", "rb") as stat:
            state = stat.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError, ValueError):
        return False
    return state in (b"Z", b"X")  # ended, not yet reaped by its parent
