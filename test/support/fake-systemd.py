#!/usr/bin/env python3
"""What systemd does for qrauth-agent.socket + a Type=notify service, for tests without PID 1 systemd.

  fake-systemd.py --listen /path/agent.sock --notify /path/notify.sock [--watchdog-usec N] -- cmd args...

It binds and listens on the stream socket once and keeps it across restarts of the service, so
connections made while the service is down wait in the backlog, as with systemd. Each start passes
that socket as fd 3 with LISTEN_FDS=1, LISTEN_PID=<the child's pid>, LISTEN_FDNAMES, and sets
NOTIFY_SOCKET (a datagram socket read here) and WATCHDOG_USEC/WATCHDOG_PID.

stdout: one JSON object a line: {"event": "started", "pid"}, {"event": "notify", "pid", "fields"},
{"event": "exited", "pid", "status"}. stdin: "start", "stop" (SIGTERM, wait), "kill" (SIGKILL,
wait), one a line; end of stdin stops the service and exits, so a dying test leaves nothing behind.
"""
import argparse
import array
import json
import os
import select
import signal
import socket
import sys
import time


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--notify", required=True)
    ap.add_argument("--watchdog-usec", type=int, default=0)
    ap.add_argument("--fdname", default="qrauth-agent.socket")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    if not cmd:
        ap.error("no command")

    for p in (a.listen, a.notify):
        if os.path.exists(p):
            os.unlink(p)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    listener.bind(a.listen)
    os.umask(old)
    os.chmod(a.listen, 0o600)  # SocketMode=0600
    listener.listen(128)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(a.notify)
    notify.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)

    child = None

    def start():
        nonlocal child
        pid = os.fork()
        if pid == 0:
            try:
                if listener.fileno() != 3:
                    os.dup2(listener.fileno(), 3)
                os.set_inheritable(3, True)
                env = dict(os.environ)
                me = str(os.getpid())
                env.update(LISTEN_FDS="1", LISTEN_PID=me, LISTEN_FDNAMES=a.fdname, NOTIFY_SOCKET=a.notify)
                if a.watchdog_usec > 0:
                    env.update(WATCHDOG_USEC=str(a.watchdog_usec), WATCHDOG_PID=me)
                os.closerange(4, 1024)
                os.execvpe(cmd[0], cmd, env)
            finally:
                os._exit(127)
        child = pid
        emit({"event": "started", "pid": pid})

    def reap(block):
        nonlocal child
        if child is None:
            return
        pid, status = os.waitpid(child, 0 if block else os.WNOHANG)
        if pid == child:
            emit({"event": "exited", "pid": pid, "status": os.waitstatus_to_exitcode(status)})
            child = None

    def stop(sig):
        if child is None:
            return
        os.kill(child, sig)
        deadline = time.monotonic() + 15
        while child is not None and time.monotonic() < deadline:
            drain_notify(0.05)
            reap(False)
        if child is not None:
            os.kill(child, signal.SIGKILL)
            reap(True)

    def drain_notify(timeout):
        r, _, _ = select.select([notify], [], [], timeout)
        if not r:
            return
        fds = array.array("i")
        msg, anc, _flags, _addr = notify.recvmsg(4096, socket.CMSG_SPACE(64 * fds.itemsize) + socket.CMSG_SPACE(12))
        sender = None
        for level, typ, data in anc:
            if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
            elif level == socket.SOL_SOCKET and typ == socket.SCM_CREDENTIALS:
                sender = int.from_bytes(data[0:4], sys.byteorder)
        # BARRIER=1 comes with a pipe fd: closing it tells systemd-notify the message was processed.
        for fd in fds:
            os.close(fd)
        fields = {}
        for line in msg.decode("utf-8", "replace").split("\n"):
            if "=" in line:
                k, v = line.split("=", 1)
                fields[k] = v
        emit({"event": "notify", "pid": sender, "fields": fields})

    def on_term(_sig, _frame):
        stop(signal.SIGTERM)
        for p in (a.listen, a.notify):
            if os.path.exists(p):
                os.unlink(p)
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_term)
    start()
    stdin_open = True
    buf = b""
    while True:
        watch = [notify] + ([sys.stdin] if stdin_open else [])
        r, _, _ = select.select(watch, [], [], 0.2)
        if notify in r:
            drain_notify(0)
        if stdin_open and sys.stdin in r:
            chunk = os.read(sys.stdin.fileno(), 1024)
            if not chunk:
                stdin_open = False
                stop(signal.SIGTERM)
                break
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                c = line.decode().strip()
                if c == "start" and child is None:
                    start()
                elif c == "stop":
                    stop(signal.SIGTERM)
                elif c == "kill":
                    stop(signal.SIGKILL)
        reap(False)
    listener.close()
    notify.close()
    for p in (a.listen, a.notify):
        if os.path.exists(p):
            os.unlink(p)


if __name__ == "__main__":
    main()
