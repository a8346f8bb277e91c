"""Which workers named in leases are known dead: a process of this machine that has ended."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from chat.streaming.liveness import known_dead, new_worker_id

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def worker_of(pid: int) -> str:
    host, _, random, machine = new_worker_id().split(":")
    return f"{host}:{pid}:{random}:{machine}"


def test_a_worker_id_names_the_host_and_the_process():
    host, pid, random, machine = new_worker_id().split(":")
    assert (host, int(pid)) == (socket.gethostname(), os.getpid())
    assert len(random) == 8 and len(machine) == 10
    assert new_worker_id() != new_worker_id()


def test_a_process_that_ended_is_dead_and_one_that_runs_is_not():
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert not known_dead(worker_of(running.pid))
    finally:
        running.kill()
        running.wait()
    assert known_dead(worker_of(running.pid))  # ended and reaped: no such process


def test_a_process_ended_and_not_yet_reaped_is_dead():
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        os.waitid(os.P_PID, zombie.pid, os.WEXITED | os.WNOWAIT)  # ended, left unreaped
        assert known_dead(worker_of(zombie.pid))
    finally:
        zombie.wait()


def test_only_this_machines_processes_can_be_known_dead():
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    this_machine = worker_of(ended.pid)
    assert known_dead(this_machine)
    host, pid, random, machine = this_machine.split(":")
    another_boot_or_namespace = f"{host}:{pid}:{random}:0123456789"
    for worker in (
        another_boot_or_namespace,
        f"not-{host}:{pid}:{random}:{machine}",  # another host, cloned from this one's memory
        f"{host}:{pid}:{random}:",  # a system that does not say
        f"{host}:{pid}:{random}",  # an id from before (no machine)
        worker_of(os.getpid()),  # this very process
        "another-worker",
        f"{host}:nan:{random}:{this_machine.rsplit(':', 1)[1]}",
    ):
        assert not known_dead(worker), worker
