"""Regenerate ``src/slotlab/command_table.json`` from a real redis-server's ``COMMAND`` reply.

The emulated cluster must know, for every command, its arity, flags and where its keys are, the
way the server itself knows them. Rather than a hand-written list, the table is the server's own
``COMMAND`` reply (read in RESP3, so every reply element keeps its type: simple string, bulk
string, integer, set, map), stored once as JSON and committed.

Run it with a redis-server 7.0 on PATH (or ``$SLOTLAB_REDIS_SERVER``)::

    python tests/regen_command_table.py            # writes src/slotlab/command_table.json
    python tests/regen_command_table.py --check    # exit 1 if the committed file differs

The server is started on a Unix socket in a temporary directory (no TCP port is used).

JSON encoding of a RESP3 value (see ``slotlab.commands.from_json``): integers are numbers,
bulk strings are ``"$text"``, simple strings ``"+text"``, arrays are lists, maps are
``{"%": [k1, v1, k2, v2, ...]}``, sets ``{"~": [...]}``, null is ``null``.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from slotlab.backends.real import find_redis_server  # noqa: E402

TABLE = ROOT / "src" / "slotlab" / "command_table.json"


class _Reader:
    """A minimal, type-preserving RESP3 reader over a socket (enough for COMMAND and INFO)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._more()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n + 2:
            self._more()
        data, self.buf = self.buf[:n], self.buf[n + 2 :]
        return data

    def _more(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buf += chunk

    def read(self) -> Any:
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return "+" + rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind in (b"$", b"="):
            n = int(rest)
            if n < 0:
                return None
            data = self._exact(n).decode()
            return "$" + (data[4:] if kind == b"=" else data)
        if kind == b"_":
            return None
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        if kind == b"~":
            return {"~": [self.read() for _ in range(int(rest))]}
        if kind == b"%":
            return {"%": [self.read() for _ in range(2 * int(rest))]}
        raise RuntimeError(f"unexpected RESP3 type {kind!r}")


def _command(sock: socket.socket, reader: _Reader, *args: str) -> Any:
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        data = a.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    sock.sendall(b"".join(parts))
    return reader.read()


def fetch_table() -> dict[str, Any]:
    """Start a redis-server on a Unix socket, read COMMAND in RESP3, stop the server."""
    server = find_redis_server()
    with tempfile.TemporaryDirectory(prefix="slotlab-cmdtable-") as tmp:
        path = str(Path(tmp) / "redis.sock")
        proc = subprocess.Popen(
            [server.path, "--port", "0", "--unixsocket", path, "--save", "", "--appendonly", "no",
             "--dir", tmp, "--daemonize", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    sock.connect(path)
                    break
                except OSError:
                    sock.close()
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError("redis-server did not start") from None
                    time.sleep(0.02)
            with sock:
                reader = _Reader(sock)
                _command(sock, reader, "HELLO", "3")
                info = _command(sock, reader, "INFO", "server")[1:]
                version = next(
                    line.split(":", 1)[1]
                    for line in info.splitlines()
                    if line.startswith("redis_version:")
                )
                commands = _command(sock, reader, "COMMAND")
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    # The server lists commands in its hash table's order, which changes from run to run.
    commands.sort(key=lambda entry: entry[0])
    for entry in commands:
        if isinstance(entry[9], list):
            entry[9].sort(key=lambda sub: sub[0])
    return {
        "about": "The COMMAND reply of a real redis-server, generated by "
        "tests/regen_command_table.py. Do not edit by hand.",
        "redis_version": version,
        "commands": commands,
    }


def render(table: dict[str, Any]) -> str:
    """One command per line: diffs stay readable, the file stays small."""
    head = {k: v for k, v in table.items() if k != "commands"}
    lines = [json.dumps(c, separators=(",", ":")) for c in table["commands"]]
    body = json.dumps(head, indent=1)[:-2]
    return body + ',\n "commands": [\n' + ",\n".join(lines) + "\n ]\n}\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args()
    text = render(fetch_table())
    if args.check:
        same = TABLE.exists() and TABLE.read_text() == text
        print("command table is up to date" if same else f"{TABLE} differs from the server")
        return 0 if same else 1
    TABLE.write_text(text)
    print(f"wrote {TABLE} ({len(text)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
