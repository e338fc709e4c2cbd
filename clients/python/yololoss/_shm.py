"""System shared memory (Triton's extension, docs/protocol.md): a POSIX shared-memory
object the client writes its inputs into and the daemon writes the gradients into, so that
neither travels through the socket.

The object is created in /dev/shm with mode 0600 (the daemon must run as the same user,
or registration fails and the client falls back to the wire), registered with the daemon,
and unlinked at once: its name goes, both mappings stay, and nothing is left in /dev/shm
when either side dies. Each thread of a client has its own region (requests in flight at
once must not share one); it grows, by a new region, when a request needs more.
"""

from __future__ import annotations

import ipaddress
import itertools
import mmap
import os
import secrets
from typing import Optional

__all__ = ["Region", "is_loopback", "SHM_MODES"]

SHM_MODES = ("auto", "shm", "wire")
_counter = itertools.count()


def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1 (the only hosts whose /dev/shm is ours)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Region:
    """One shared-memory object of `size` bytes mapped here; .name is the region name to
    register, .key the object's name for the daemon, .buf a writable memoryview."""

    def __init__(self, size: int) -> None:
        self.size = max(int(size), mmap.PAGESIZE)
        token = secrets.token_hex(6)
        self.key = "/yololoss-%d-%s" % (os.getpid(), token)
        self.name = "yololoss-%d-%d-%s" % (os.getpid(), next(_counter), token)
        self._path = path = "/dev/shm" + self.key   # unlink by it: tests change .key
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        self._linked = True
        try:
            os.ftruncate(fd, self.size)
            self._map: Optional[mmap.mmap] = mmap.mmap(fd, self.size)
        except BaseException:
            os.close(fd)
            self.unlink()
            raise
        os.close(fd)
        self.buf = memoryview(self._map)

    def unlink(self) -> None:
        """Remove the object's name (the mappings stay valid)."""
        if self._linked:
            self._linked = False
            try:
                os.unlink(self._path)
            except OSError:
                pass

    def close(self) -> None:
        self.unlink()
        if self._map is not None:
            try:
                self.buf.release()
                self._map.close()
            except BufferError:        # an array still views it: the GC unmaps it later
                return
            self._map = None
