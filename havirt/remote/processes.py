"""Many local processes at once, one loop: what the openssh transport runs
its ssh commands with (threads only start them, see spawn_all).

Each process gets its stdin (bytes, or nothing), has its stdout and stderr
read as they come (and streamed to `on_output`), and a deadline after which
it is killed. A process has ended when it exited and both its streams
reached their end, or DRAIN seconds after it exited (a helper it started
may hold a stream open: ssh's ProxyJump helper lives as long as the shared
connection). The loop waits in epoll (no limit of 1024 descriptors) and
learns of each exit from a pidfd (Linux), so nothing polls.
"""

from __future__ import annotations

import errno
import os
import selectors
import subprocess
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

DRAIN = 0.5                      # seconds to wait for the last bytes once a process exited
FILES_PER_PROCESS = 4            # stdin, stdout, stderr pipes, the pidfd
SPAWNERS = 16                    # threads that start processes (only that: one loop reads them)


class Process:
    """One process: its pipes, what it said, how it ended."""

    def __init__(self, argv: list[str], stdin: bytes | None, timeout: float, on_output=None):
        self.argv, self.timeout = argv, timeout
        self.stdin = memoryview(stdin) if stdin is not None else None
        self.on_output = on_output
        self.out, self.err = bytearray(), bytearray()
        self.proc = None
        self.open: set = set()          # the pipes and the pidfd still registered
        self.pidfd = None               # readable when the process exits (Linux)
        self.start_error: str | None = None    # it could not be started (fork failed)
        self.timed_out = False
        self.returncode: int | None = None
        self.started = self.deadline = self.exited = None
        self.duration = 0.0

    def spawn(self) -> None:
        """Start it (FileNotFoundError: no such program, for the caller to say).
        Safe in several threads at once (see spawn_all)."""
        self.started = time.monotonic()
        self.deadline = self.started + self.timeout
        try:
            self.proc = subprocess.Popen(   # from /: what it leaves running holds no folder
                self.argv, stdin=subprocess.PIPE if self.stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, close_fds=True, cwd="/")
        except FileNotFoundError:
            raise
        except OSError as e:
            self.start_error = e.strerror or str(e)

    def attach(self, sel) -> None:
        """Register its pipes and its pidfd with the loop's selector."""
        if self.proc is None:
            return
        for pipe, events in ((self.proc.stdout, selectors.EVENT_READ),
                             (self.proc.stderr, selectors.EVENT_READ),
                             (self.proc.stdin, selectors.EVENT_WRITE)):
            if pipe is not None:
                os.set_blocking(pipe.fileno(), False)
                sel.register(pipe, events, self)
                self.open.add(pipe)
        if hasattr(os, "pidfd_open"):
            try:
                self.pidfd = os.pidfd_open(self.proc.pid)
                sel.register(self.pidfd, selectors.EVENT_READ, self)
                self.open.add(self.pidfd)
            except OSError:             # an old kernel: the loop looks every 20 ms instead
                self.pidfd = None

    def ready(self, obj, sel) -> None:
        if obj == self.pidfd:
            self.close(obj, sel)        # it exited: done() reaps it
        elif obj is self.proc.stdin:
            self._write(obj, sel)
        else:
            self._read(obj, sel, obj is self.proc.stdout)

    def _read(self, pipe, sel, out: bool) -> None:
        """What `pipe` (a pipe, or its descriptor) has, to out or err."""
        try:
            data = os.read(_fd(pipe), 65536)
        except BlockingIOError:
            return
        if not data:
            self.close(pipe, sel)
            return
        (self.out if out else self.err).extend(data)
        if self.on_output:      # virsh prints migration progress on stderr
            self.on_output(data.decode(errors="replace"))

    def _write(self, pipe, sel) -> None:
        """The next part of stdin into `pipe` (a pipe, or its descriptor)."""
        try:
            sent = os.write(_fd(pipe), self.stdin[:65536])
            self.stdin = self.stdin[sent:]
        except BlockingIOError:
            return
        except OSError as e:            # it went away: what it said tells why
            if e.errno not in (errno.EPIPE, errno.ECONNRESET):
                raise
            self.stdin = self.stdin[:0]
        if not self.stdin:
            self.close(pipe, sel)

    def close(self, obj, sel) -> None:
        sel.unregister(obj)
        if isinstance(obj, int):
            os.close(obj)
        else:
            obj.close()
        self.open.discard(obj)

    def _streams_open(self) -> bool:
        return bool(self.open - {self.proc.stdin, self.pidfd})

    def done(self, now: float, sel) -> bool:
        """Ended, or given up at its deadline (killed)."""
        if self.proc is None:
            return True
        if self.exited is None and self.proc.poll() is not None:
            self.exited = now
        if self.exited is None and now >= self.deadline:
            self.timed_out = True
        elif self.exited is None or (self._streams_open() and now - self.exited < DRAIN):
            return False
        self.end(sel)
        self.returncode = self.proc.returncode
        self.duration = now - self.started
        return True

    def end(self, sel) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()                  # our own child, by its pid
            self.proc.wait()
        for obj in list(self.open):
            self.close(obj, sel)
        if self.proc is not None:       # started, never attached (the batch was interrupted)
            for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                if pipe is not None and not pipe.closed:
                    pipe.close()

    def wake_at(self, now: float) -> float:
        at = self.deadline if self.exited is None else min(self.deadline, self.exited + DRAIN)
        return at if self.pidfd is not None or self.exited is not None else min(at, now + 0.02)


def _fd(pipe) -> int:
    return pipe if isinstance(pipe, int) else pipe.fileno()


def spawn_all(batch: list[Process]) -> None:
    """Start every process of `batch`, SPAWNERS at a time. Starting one waits
    until its child has called exec; on a busy host (the nodes of a scan
    already at work) that wait grows with the number of processes ready to
    run (measured: 64 starts one after the other took 2.9 s beside 64 busy
    processes, 0.67 s from 16 threads), so a scan's last node would start
    long after its first."""
    if len(batch) == 1:
        batch[0].spawn()
        return
    pool = ThreadPoolExecutor(min(SPAWNERS, len(batch)))
    try:
        for _ in pool.map(lambda p: p.spawn(), batch):
            pass
    finally:        # interrupted: start no more, and wait for those being started (drive ends them)
        pool.shutdown(wait=True, cancel_futures=True)


def drive(processes: list[Process], limit: int) -> None:
    """Run every process, `limit` at once, until each has ended."""
    waiting, live = deque(processes), []
    with selectors.DefaultSelector() as sel:
        try:
            while waiting or live:
                batch = [waiting.popleft() for _ in range(min(len(waiting), limit - len(live)))]
                if batch:
                    live.extend(batch)
                    spawn_all(batch)
                    for p in batch:
                        p.attach(sel)
                now = time.monotonic()
                live = [p for p in live if not p.done(now, sel)]
                if live:
                    wait = max(0.0, min(p.wake_at(now) for p in live) - now)
                    for key, _ in sel.select(wait):
                        if _registered(sel, key):
                            key.data.ready(key.fileobj, sel)
        finally:                        # interrupted: nothing left running
            for p in live:
                p.end(sel)


def _registered(sel, key) -> bool:
    """The event's key is still the one registered: what an earlier event of
    the same round closed (a session that fell back to ssh) is not read, nor
    a descriptor number opened again since."""
    try:
        return sel.get_key(key.fileobj) is key
    except (KeyError, ValueError):
        return False
