#!/usr/bin/env python3
"""An OpenSSH sftp-server that offers no extension: a strict SFTP v3 server.

Used by the tests (tests/common/servers.rs) as sshd's SFTP command:

    sftp-no-extensions.py [--delay-ms N] SFTP_SERVER [ARGS...]

It runs SFTP_SERVER with pipes and copies bytes both ways, except that the
server's SSH_FXP_VERSION reply (the first packet it sends) is cut down to its
version number: the extension-data pairs after it are dropped
(draft-ietf-secsh-filexfer-02 section 4), so the client sees no posix-rename,
statvfs, fsync or hardlink. With --delay-ms, every metadata request (anything
but OPEN, CLOSE, READ and WRITE) is held that long before the server gets it,
as a slow server would answer it.
"""

import os
import struct
import sys
import threading
import time

SSH_FXP_VERSION = 2
# Requests that are not metadata: OPEN, CLOSE, READ, WRITE.
DATA_REQUESTS = {3, 4, 5, 6}


def read_exact(fd, n):
    """n bytes from fd, or None at end of stream."""
    buf = b""
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def write_all(fd, data):
    while data:
        n = os.write(fd, data)
        data = data[n:]


def read_packet(fd):
    """One SFTP packet (length prefix included), or None at end of stream."""
    head = read_exact(fd, 4)
    if head is None:
        return None
    (length,) = struct.unpack(">I", head)
    body = read_exact(fd, length)
    if body is None:
        return None
    return head + body


def client_to_server(src, dst, delay):
    """Copies requests to the server, holding metadata ones for `delay` s."""
    try:
        while True:
            packet = read_packet(src)
            if packet is None:
                break
            if delay > 0 and len(packet) > 4 and packet[4] not in DATA_REQUESTS:
                time.sleep(delay)
            write_all(dst, packet)
    except OSError:
        pass
    finally:
        os.close(dst)


def main():
    args = sys.argv[1:]
    delay = 0.0
    if len(args) >= 2 and args[0] == "--delay-ms":
        delay = int(args[1]) / 1000.0
        args = args[2:]
    if not args:
        sys.stderr.write("usage: sftp-no-extensions.py [--delay-ms N] SFTP_SERVER [ARGS...]\n")
        return 2

    to_server_r, to_server_w = os.pipe()
    from_server_r, from_server_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.dup2(to_server_r, 0)
        os.dup2(from_server_w, 1)
        for fd in (to_server_r, to_server_w, from_server_r, from_server_w):
            os.close(fd)
        try:
            os.execv(args[0], args)
        finally:
            os._exit(127)
    os.close(to_server_r)
    os.close(from_server_w)

    pump = threading.Thread(
        target=client_to_server, args=(0, to_server_w, delay), daemon=True
    )
    pump.start()

    first = True
    try:
        while True:
            packet = read_packet(from_server_r)
            if packet is None:
                break
            if first and len(packet) >= 9 and packet[4] == SSH_FXP_VERSION:
                # Keep type and version; drop every extension pair.
                packet = struct.pack(">I", 5) + packet[4:9]
            first = False
            write_all(1, packet)
    except OSError:
        pass
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) if status else 0


if __name__ == "__main__":
    sys.exit(main())
