"""A lab that outlives a kernel: ``slotlab lab up`` starts one, notebooks attach to it.

``slotlab lab up`` starts a small detached process, the lab's *daemon*, which starts a lab the
usual way (``start_lab``) and keeps it until ``slotlab lab down``. The daemon owns the nodes: on
the real backend its redis-servers are watched by the usual reaper, so they go when the daemon
goes, even by SIGKILL; on the emulated backend the daemon's own threads serve the nodes. The
command that started it can exit: the lab stays.

Everything about a lab lives in a per-user runtime directory (mode 0700:
``$SLOTLAB_RUNTIME_DIR``, else ``$XDG_RUNTIME_DIR/slotlab``, else ``~/.cache/slotlab``):

- ``NAME.json``: the record (mode 0600): shape, nodes, password, the daemon's PID and run ID;
- ``NAME.sock``: the daemon's control socket; only this user can reach it (the directory is
  0700), so whoever connects is the owner. One JSON request, one JSON reply per connection;
- ``NAME.lease``: the kernel attached now holds an exclusive ``flock`` on it, and has written
  its PID in it;
- ``NAME.log``: what the daemon printed.

**The rule for two kernels: a lab serves one kernel at a time.** ``start_lab()`` attaches when
the lab is free, and starts a private lab when another live kernel holds it, saying so in its
one line. One kernel at a time because every lesson starts from an empty cluster in the
original slot layout and may flush, migrate, fail over or kill nodes: two kernels on one
cluster would silently empty or move each other's keys. The lease is an ``flock``, so the
operating system releases it when the kernel exits or dies (even by SIGKILL), with no PID that
could be reused by another program.

On attach the daemon hands the kernel a clean, lesson-ready lab: every key and script flushed,
and the original slot layout. If a kernel before changed the layout (moved slots, failed over,
killed or added nodes), the daemon starts the cluster afresh before it answers, and the one
line says so.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import redis

from slotlab.backends.base import Backend, NodeAddress, NotModelled

if TYPE_CHECKING:
    from slotlab.lab import Lab

try:  # not on Windows: there a notebook always starts a private lab
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

#: The name a lab gets when none is given (``slotlab lab up``, ``start_lab()``).
DEFAULT_NAME = "default"
#: Seconds ``slotlab lab up`` waits for the daemon's lab to be ready.
UP_TIMEOUT = 60.0
#: Seconds ``slotlab lab down`` waits for the daemon to stop its lab before it kills it.
DOWN_TIMEOUT = 15.0
RPC_TIMEOUT = 60.0  # a restore starts a new cluster: about 2 s, far more on a busy machine

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")


class LabNotFound(LookupError):
    """No lab of that name is running (for the command line: exit code 1)."""


# ---- names, files -----------------------------------------------------------------------------


def check_name(name: object) -> str:
    """``name`` as a lab name, or a clear error: letters, digits, ``-`` and ``_``, 1 to 32."""
    if not isinstance(name, str):
        raise TypeError(f"a lab name must be a string, not {type(name).__name__} {name!r}")
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"bad lab name {name!r}: use 1 to 32 letters, digits, '-' or '_', starting with a "
            "letter or digit (e.g. 'default', 'team-3')"
        )
    return name


def runtime_dir(create: bool = False) -> Path:
    """The per-user directory of lab records (see the module's docstring), mode 0700."""
    override = os.environ.get("SLOTLAB_RUNTIME_DIR")
    if override:
        path = Path(override)
    elif os.environ.get("XDG_RUNTIME_DIR"):
        path = Path(os.environ["XDG_RUNTIME_DIR"]) / "slotlab"
    else:
        path = Path.home() / ".cache" / "slotlab"
    if create:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.is_dir() and hasattr(os, "getuid"):
        st = path.stat()
        if st.st_uid != os.getuid() or st.st_mode & 0o077:
            raise PermissionError(
                f"the lab directory {path} must belong to you and be private (mode 0700): it "
                f"holds lab passwords. Fix it with: chmod 700 {path}"
            )
    return path


def _file(name: str, kind: str) -> Path:
    return runtime_dir() / f"{name}.{kind}"


def read_record(name: str) -> dict[str, Any] | None:
    """The record of lab ``name``, or None when there is none."""
    try:
        data: dict[str, Any] = json.loads(_file(name, "json").read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None  # half-written by a daemon that died while writing: treated as absent
    return data


def _write_record(name: str, record: dict[str, Any]) -> None:
    """Write the record whole or not at all (a reader never sees half of it), mode 0600."""
    path = _file(name, "json")
    tmp = path.with_suffix(f".json.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(record, f, indent=1)
    os.replace(tmp, path)


def _remove_files(name: str, keep_log: bool = False) -> None:
    for kind in ("json", "sock", "lease") + (() if keep_log else ("log",)):
        with contextlib.suppress(FileNotFoundError):
            _file(name, kind).unlink()


def pid_alive(pid: int) -> bool:
    """True while process ``pid`` runs (a zombie has exited; someone else's counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive, and not ours
    with contextlib.suppress(OSError, IndexError), open(f"/proc/{pid}/stat") as f:
        if f.read().rsplit(")", 1)[1].split()[0] == "Z":  # a zombie has exited
            return False
    return True


def _is_our_daemon(pid: int, run_id: str) -> bool:
    """True when ``pid`` is this user's daemon of the run ``run_id`` (its command line says so),
    not a program that got the PID after the daemon died."""
    if not pid_alive(pid):
        return False
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        owner = os.stat(f"/proc/{pid}").st_uid
    except OSError:
        if Path("/proc/self").exists():
            return False  # gone meanwhile
        return _answers_as(pid, run_id)  # no /proc (macOS): ask the daemon itself
    return owner == os.getuid() and run_id.encode() in args


def _answers_as(pid: int, run_id: str) -> bool:
    """True when a lab's daemon answers on its socket as ``pid`` of run ``run_id``."""
    for sock in runtime_dir().glob("*.sock"):
        with contextlib.suppress(OSError, ValueError):
            hello = _call(sock.stem, {"op": "hello"}, timeout=5)
            if hello == {"run_id": run_id, "pid": pid}:
                return True
    return False


# ---- the control socket ------------------------------------------------------------------------


def rpc(name: str, request: dict[str, Any], timeout: float = RPC_TIMEOUT) -> dict[str, Any]:
    """Send one request to lab ``name``'s daemon; its reply. OSError when it does not answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(_file(name, "sock")))
        s.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError(f"lab {name}'s daemon closed the connection")
            data += chunk
    reply: dict[str, Any] = json.loads(data)
    return reply


_ERRORS: dict[str, type[Exception]] = {
    "NotModelled": NotModelled,
    "ValueError": ValueError,
    "IndexError": IndexError,
    "TypeError": TypeError,
    "TimeoutError": TimeoutError,
}


def _call(name: str, request: dict[str, Any], timeout: float = RPC_TIMEOUT) -> Any:
    """``rpc`` whose error replies are raised as the daemon raised them."""
    reply = rpc(name, request, timeout)
    if "error" in reply:
        kind = _ERRORS.get(reply["error"], RuntimeError)
        raise kind(reply["message"])
    return reply.get("result")


def _nodes(raw: list[list[Any]]) -> list[NodeAddress]:
    return [NodeAddress(str(h), int(p), str(i), pid) for h, p, i, pid in raw]


def _raw_nodes(nodes: list[NodeAddress]) -> list[list[Any]]:
    return [[n.host, n.port, n.node_id, n.pid] for n in nodes]


# ---- the daemon --------------------------------------------------------------------------------


def _layout(lab: Any, clients: list[redis.Redis]) -> tuple[str, list[str]]:
    """The slot layout of ``lab`` as every node's ID, role, master and slots, in one string
    (or what a lesson left behind that no layout may have: a node down, a half-moved slot);
    and the roles, node by node."""
    from slotlab.lab import parse_cluster_nodes

    texts = []
    for i, client in enumerate(clients):
        if lab.backend.is_down(i):
            return f"node {i} is down", []
        text = str(client.execute_command("CLUSTER", "NODES"))
        if "[" in text:
            return f"node {i} has a slot half-moved (MIGRATING/IMPORTING)", []
        texts.append(text)
    topo = parse_cluster_nodes(texts[0], [n.node_id for n in lab.nodes])
    layout = "\n".join(
        f"{n.node_id} {n.role} {n.master_id} {n.slots} {'failed' if n.failed else ''}"
        for n in topo.nodes
    )
    return layout, [n.role for n in topo.nodes]


class _Daemon:
    """The process behind ``slotlab lab up``: one lab, a control socket, a record."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.name: str = args.name
        self.run_id: str = args.run_id
        self.masters: int = args.masters
        self.replicas: int = args.replicas
        self.backend: str | None = args.backend or None
        self.password = secrets.token_urlsafe(16)
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.lab: Any = None
        self.layout = ""
        self._clients: list[redis.Redis] = []  # one per node, kept: an attach pays no connect
        self.started = time.time()

    def start(self) -> None:
        """Start (or start again) the lab, and record its original layout."""
        from slotlab.lab import start_lab

        os.environ["SLOTLAB_ATTACH"] = "0"  # the daemon's own lab is never an attached one
        self.lab = start_lab(self.masters, self.replicas, self.backend, password=self.password)
        self.layout = _layout(self.lab, self.clients())[0]

    def clients(self) -> list[redis.Redis]:
        """A client per node of the lab, made again when the nodes changed."""
        nodes = self.lab.nodes
        if [c.connection_pool.connection_kwargs["port"] for c in self._clients] != [
            n.port for n in nodes
        ]:
            for c in self._clients:
                c.close()
            self._clients = [
                redis.Redis(host=n.host, port=n.port, password=self.password,
                            decode_responses=True, socket_timeout=5)  # fmt: skip
                for n in nodes
            ]
        return self._clients

    def record(self) -> dict[str, Any]:
        lab = self.lab
        return {
            "name": self.name,
            "run_id": self.run_id,
            "daemon_pid": os.getpid(),
            "backend": lab.backend_name,
            "describe": lab.backend.describe(),
            "masters": self.masters,
            "replicas": self.replicas,
            "password": self.password,
            "nodes": _raw_nodes(lab.nodes),
            "started": self.started,
        }

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        with self.lock:
            lab = self.lab
            if op == "hello":
                return {"result": {"run_id": self.run_id, "pid": os.getpid()}}
            if op == "state":
                down = [i for i in range(len(lab.nodes)) if lab.backend.is_down(i)]
                return {"result": {"nodes": _raw_nodes(lab.nodes), "down": down,
                                   "describe": lab.backend.describe()}}  # fmt: skip
            if op == "prepare":
                return {"result": self.prepare()}
            if op == "call":
                return self.call(str(request.get("method")), list(request.get("args", [])))
            if op == "stop":
                self.done.set()
                return {"result": "stopping"}
        return {"error": "ValueError", "message": f"unknown request {op!r}"}

    def prepare(self) -> dict[str, Any]:
        """Make the lab lesson-ready for a kernel: the original layout, no keys, no scripts."""
        restored = ""
        clients = self.clients()
        try:
            now, roles = _layout(self.lab, clients)
        except redis.RedisError as exc:
            now, roles = f"a node did not answer ({exc})", []
        if now != self.layout:
            first = now if "\n" not in now else "the slot layout changed"
            restored = f"a kernel before changed it ({first}); started afresh"
            for c in clients:
                c.close()
            self._clients = []
            self.lab.stop()
            self.start()
            _write_record(self.name, self.record())
        else:  # what lab.reset() does, on connections already open
            for client, role in zip(clients, roles, strict=True):
                if role == "master":
                    client.flushall()
                client.script_flush()
        return {"restored": restored, "nodes": _raw_nodes(self.lab.nodes),
                "describe": self.lab.backend.describe()}  # fmt: skip

    def tidy(self) -> None:
        """Once a kernel lets go, make the lab lesson-ready at once, so that the next kernel
        attaches fast even after a lesson moved slots (``prepare`` checks again anyway)."""
        kernel_seen = False
        while not self.done.wait(1.0):
            with self.lock:
                if _holder(self.name) is not None:
                    kernel_seen = True
                elif kernel_seen:
                    kernel_seen = False
                    with contextlib.suppress(Exception):  # prepare() will say what fails
                        self.prepare()

    def call(self, method: str, args: list[Any]) -> dict[str, Any]:
        """Run a backend method that needs the processes' owner (add, kill, restart a node)."""
        if method not in ("add_node", "kill_node", "restart_node", "failover"):
            return {"error": "ValueError", "message": f"{method} cannot be called remotely"}
        try:
            result = getattr(self.lab.backend, method)(*args)
        except Exception as exc:  # noqa: BLE001 - sent to the kernel, raised there
            return {"error": type(exc).__name__, "message": str(exc)}
        _write_record(self.name, self.record())  # the nodes may have changed
        if isinstance(result, NodeAddress):
            return {"result": _raw_nodes([result])[0]}
        return {"result": None}

    def serve(self) -> None:
        daemon = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                try:
                    reply = daemon.handle(json.loads(self.rfile.readline()))
                except Exception as exc:  # noqa: BLE001 - the client hears of it
                    reply = {"error": type(exc).__name__, "message": str(exc)}
                self.wfile.write(json.dumps(reply).encode() + b"\n")

        sock = _file(self.name, "sock")
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()
        server = socketserver.ThreadingUnixStreamServer(str(sock), Handler)
        server.daemon_threads = True
        os.chmod(sock, 0o600)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        threading.Thread(target=self.tidy, daemon=True).start()
        _write_record(self.name, self.record())  # last: `lab up` waits for it
        print(f"slotlab lab {self.name}: ready (run {self.run_id})", flush=True)
        try:
            while not self.done.wait(0.5):
                pass
        finally:
            server.shutdown()
            server.server_close()
            with self.lock:
                self.lab.stop()
            if (read_record(self.name) or {}).get("run_id") == self.run_id:
                _remove_files(self.name)


def _daemon_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="slotlab-lab-daemon")
    parser.add_argument("--name", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--masters", type=int, required=True)
    parser.add_argument("--replicas", type=int, required=True)
    parser.add_argument("--backend", required=True)
    args = parser.parse_args(argv)
    daemon = _Daemon(args)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda signum, frame: daemon.done.set())
    daemon.start()
    daemon.serve()
    return 0


# ---- up, status, down --------------------------------------------------------------------------


def _stale(name: str, record: dict[str, Any]) -> bool:
    """True (and the record removed) when lab ``name``'s daemon is gone."""
    if _is_our_daemon(int(record.get("daemon_pid", 0)), str(record.get("run_id", ""))):
        return False
    _remove_files(name, keep_log=True)
    return True


def _stale_text(name: str, record: dict[str, Any]) -> str:
    return (
        f"lab {name}'s record was stale: its process (pid {record.get('daemon_pid')}) is gone "
        "(killed, or the machine restarted); the record is removed"
    )


def up(name: str = DEFAULT_NAME, masters: int = 3, replicas: int = 0,
       backend: str | None = None, out: IO[str] | None = None) -> dict[str, Any]:  # fmt: skip
    """Start lab ``name`` in a detached daemon and wait until it is ready; its record.
    ``backend`` None: ``$SLOTLAB_BACKEND``, else ``auto``, as ``start_lab`` reads it."""
    from slotlab.lab import check_start_args

    out = out or sys.stdout
    check_name(name)
    check_start_args(masters, replicas, backend)
    if fcntl is None or not hasattr(socket, "AF_UNIX"):  # pragma: no cover - Windows
        raise RuntimeError(
            "slotlab lab up needs Linux or macOS (file locks and Unix sockets); on this system "
            "each notebook starts its own lab"
        )
    runtime_dir(create=True)
    record = read_record(name)
    if record is not None:
        if not _stale(name, record):
            raise FileExistsError(
                f"lab {name} is already running ({record['describe']}); see it with "
                f"`slotlab lab status --name {name}`, stop it with `slotlab lab down --name {name}`"
            )
        print(f"slotlab: {_stale_text(name, record)}", file=out)
    run_id = secrets.token_hex(8)
    package_root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([package_root, env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    log = _file(name, "log")
    with os.fdopen(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "slotlab.lab_daemon", "--name", name, "--run-id", run_id,
             "--masters", str(masters), "--replicas", str(replicas), "--backend", backend or ""],
            stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True, cwd="/", env=env,
        )  # fmt: skip
    deadline = time.monotonic() + UP_TIMEOUT
    while True:
        record = read_record(name)
        if record is not None and record.get("run_id") == run_id:
            return record
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            tail = "\n".join(log.read_text(errors="replace").strip().splitlines()[-8:])
            _remove_files(name, keep_log=True)
            raise RuntimeError(f"lab {name} did not start. Its log ({log}) ends:\n{tail}")
        time.sleep(0.05)


def _holder(name: str) -> int | None:
    """The PID of the kernel attached to lab ``name`` now, or None when it is free."""
    if fcntl is None:
        return None
    try:
        fd = os.open(_file(name, "lease"), os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _node_lines(record: dict[str, Any], state: dict[str, Any]) -> list[str]:
    """One line per node: address, role, slots, keys, memory, as each node reports them."""
    from slotlab.lab import parse_cluster_nodes

    nodes = _nodes(state["nodes"])
    down = set(state["down"])
    password = record["password"]
    topo = None
    rows = []
    for i, node in enumerate(nodes):
        if i in down:
            rows.append(f"  {i}  {node.address}  down")
            continue
        try:
            with redis.Redis(host=node.host, port=node.port, password=password,
                             decode_responses=True, socket_timeout=5) as r:  # fmt: skip
                if topo is None:
                    order = [n.node_id for n in nodes]
                    topo = parse_cluster_nodes(str(r.execute_command("CLUSTER", "NODES")), order)
                keys = r.dbsize()
                memory = str(r.info("memory").get("used_memory_human", "?"))
        except redis.RedisError as exc:
            rows.append(f"  {i}  {node.address}  does not answer ({exc})")
            continue
        info = topo.nodes[i]
        what = (f"slots {', '.join(f'{lo}-{hi}' for lo, hi in info.slots) or '(none)'}"
                if info.role == "master" else "replica")  # fmt: skip
        if record["backend"] == "emulated":
            memory = "not measured (emulated)"
        rows.append(f"  {i}  {node.address}  {info.role:7}  {what:24}  {keys} keys  "
                    f"memory {memory}")  # fmt: skip
    return rows


def status(name: str | None = None, out: IO[str] | None = None) -> int:
    """Print lab ``name`` (every lab when None): nodes, slots, keys, memory, who is attached,
    and how to connect. Returns the exit code: 1 when there is no such lab."""
    out = out or sys.stdout
    names = [check_name(name)] if name is not None else sorted(
        p.stem for p in runtime_dir().glob("*.json")
    )
    shown = 0
    for n in names:
        record = read_record(n)
        if record is None:
            continue
        if _stale(n, record):
            print(f"slotlab: {_stale_text(n, record)}", file=out)
            continue
        try:
            state = _call(n, {"op": "state"}, timeout=10)
        except OSError as exc:
            print(f"lab {n}: its daemon (pid {record['daemon_pid']}) does not answer ({exc}); "
                  f"stop it with `slotlab lab down --name {n}`", file=out)  # fmt: skip
            shown += 1
            continue
        record = read_record(n) or record  # a restore may have renewed it
        holder = _holder(n)
        first = _nodes(state["nodes"])[0]
        print(f"lab {n}: {state['describe']}", file=out)
        print(f"  daemon pid {record['daemon_pid']}, up {time.time() - record['started']:.0f} s",
              file=out)  # fmt: skip
        for row in _node_lines(record, state):
            print(row, file=out)
        print("  attached: " + (f"kernel pid {holder}" if holder else "none (free)"), file=out)
        print(f"  attach:   slotlab.start_lab(masters={record['masters']}, "
              f"replicas={record['replicas']}"
              + (f", name={n!r})" if n != DEFAULT_NAME else ")"), file=out)  # fmt: skip
        # The record is readable by its owner only, so whoever reads it here is the owner.
        print(f"  connect:  REDISCLI_AUTH='{record['password']}' redis-cli -c -h {first.host} "
              f"-p {first.port}", file=out)  # fmt: skip
        shown += 1
    if not shown:
        which = f"no lab named {name} is running" if name else "no lab is running"
        print(f"slotlab: {which}; start one with `slotlab lab up"
              + (f" --name {name}`" if name else "`"), file=out)  # fmt: skip
        return 1
    return 0


def down(name: str = DEFAULT_NAME, out: IO[str] | None = None) -> int:
    """Stop lab ``name``: its daemon stops its own nodes. Exit code 1 when there is none."""
    out = out or sys.stdout
    check_name(name)
    record = read_record(name)
    if record is None:
        raise LabNotFound(
            f"no lab named {name} is running (`slotlab lab status` lists the running ones)"
        )
    if _stale(name, record):
        print(f"slotlab: {_stale_text(name, record)}", file=out)
        return 0
    pid, run_id = int(record["daemon_pid"]), str(record["run_id"])
    holder = _holder(name)
    if holder:
        print(f"slotlab: lab {name} was attached by kernel pid {holder}; its clients stop "
              "working now", file=out)  # fmt: skip
    try:
        hello = _call(name, {"op": "hello"}, timeout=10)
        if hello.get("run_id") != run_id:  # never stop what is not this record's lab
            raise ConnectionError("it answers with another run id")
        _call(name, {"op": "stop"})
    except (OSError, ValueError) as exc:
        print(f"slotlab: lab {name}'s daemon did not answer ({exc}); stopping pid {pid}",
              file=out)  # fmt: skip
        if _is_our_daemon(pid, run_id):  # checked again: the PID could have been reused
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + DOWN_TIMEOUT
    while _is_our_daemon(pid, run_id):
        if time.monotonic() > deadline:
            # Its redis-servers go with it: the reaper watches the daemon, not us.
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    _remove_files(name)
    print(f"slotlab: lab {name} stopped", file=out)
    return 0


# ---- attaching from a kernel -------------------------------------------------------------------


class AttachedBackend(Backend):
    """The nodes of a lab that ``slotlab lab up`` started, as seen from the kernel attached to
    it. The daemon owns the processes: adding, killing and restarting nodes are asked of it.
    ``stop()`` detaches (releases the lease); the lab stays."""

    def __init__(self, name: str, record: dict[str, Any], prepared: dict[str, Any],
                 lease_fd: int) -> None:  # fmt: skip
        self.lab_name = name
        self.name = str(record["backend"])
        self.password: str | None = record["password"]
        self.masters = int(record["masters"])
        self.replicas = int(record["replicas"])
        self._nodes = _nodes(prepared["nodes"])
        self._describe = str(prepared["describe"])
        self._lease_fd: int | None = lease_fd
        self._standalone: Backend | None = None

    @property
    def nodes(self) -> list[NodeAddress]:
        return list(self._nodes)

    def describe(self) -> str:
        return self._describe

    def _refresh(self) -> list[int]:
        state = _call(self.lab_name, {"op": "state"})
        self._nodes = _nodes(state["nodes"])
        return list(state["down"])

    def is_down(self, index: int) -> bool:
        try:
            return index in self._refresh()
        except OSError:
            return True  # the daemon is gone, and its nodes with it

    def alive(self) -> bool:
        try:
            return not self._refresh()
        except OSError:
            return False

    def add_node(self) -> NodeAddress:
        node = _nodes([_call(self.lab_name, {"op": "call", "method": "add_node"})])[0]
        self._refresh()
        return node

    def kill_node(self, index: int) -> None:
        _call(self.lab_name, {"op": "call", "method": "kill_node", "args": [index]})

    def restart_node(self, index: int) -> NodeAddress:
        node = _nodes([_call(self.lab_name, {"op": "call", "method": "restart_node",
                                              "args": [index]})])[0]  # fmt: skip
        self._refresh()
        return node

    def failover(self, replica: int) -> None:
        _call(self.lab_name, {"op": "call", "method": "failover", "args": [replica]})

    def start_standalone(self) -> tuple[str, int]:
        """A plain server of this kernel's own, of the lab's kind; it stops when we detach."""
        if self._standalone is None:
            if self.name == "real":
                self._standalone = _StandaloneOnly(password=self.password)
            else:
                from slotlab.backends.emulated import EmulatedBackend

                self._standalone = EmulatedBackend(masters=1, password=self.password)
        return self._standalone.start_standalone()

    def stop(self) -> None:
        """Detach: release the lease and stop this kernel's standalone servers."""
        if self._standalone is not None:
            self._standalone.stop()
            self._standalone = None
        if self._lease_fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._lease_fd, 0)  # no PID of a kernel that let go
            os.close(self._lease_fd)  # closing releases the flock
            self._lease_fd = None


def _standalone_only() -> type[Backend]:
    from slotlab.backends.real import RealBackend

    class StandaloneOnly(RealBackend):
        """A real backend with no cluster: only ``start_standalone`` servers."""

        def _start_all(self) -> None:
            pass

        def _form(self) -> None:
            pass

    return StandaloneOnly


def _StandaloneOnly(password: str | None) -> Backend:  # noqa: N802 - a class, made lazily
    return _standalone_only()(masters=1, password=password)  # type: ignore[call-arg]


#: The lab attached in this process, so that a start cell run again attaches anew.
_attached: weakref.ref[Lab] | None = None


def _lease(name: str) -> tuple[int | None, int | None]:
    """Take lab ``name``'s lease: (its fd, None), or (None, the PID of the kernel holding it)."""
    assert fcntl is not None
    fd = os.open(_file(name, "lease"), os.O_RDWR | os.O_CREAT, 0o600)
    for _ in range(5):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            holder = int(text) if text.isdigit() else 0
            if holder and pid_alive(holder):
                os.close(fd)
                return None, holder
            time.sleep(0.01)  # `slotlab lab status` looks, or a kernel is writing its PID
            continue
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        return fd, None
    os.close(fd)
    return None, 0


def attach(name: str | None, masters: int, replicas: int, choice: str,
           password: object) -> tuple[Lab | None, str]:  # fmt: skip
    """For ``start_lab``: (an attached Lab, "") when lab ``name`` runs in this shape and is
    free; else (None, a note for start_lab's line, "" when there is no lab to speak of)."""
    global _attached
    from slotlab.lab import RANDOM_PASSWORD, Lab  # noqa: F811 - at run time, not only typing

    explicit = name is not None or bool(os.environ.get("SLOTLAB_LAB"))
    name = check_name(name if name is not None else os.environ.get("SLOTLAB_LAB", DEFAULT_NAME))
    if os.environ.get("SLOTLAB_ATTACH", "") == "0" or fcntl is None:
        return None, ""
    try:
        record = read_record(name)
    except PermissionError as exc:  # never trust a record others could have written
        return None, f" (no lab attached: {exc})"
    if record is None or _stale(name, record):
        return None, f" (no lab {name} is running: this lab is private)" if explicit else ""
    if password is not RANDOM_PASSWORD:
        return None, f" (lab {name} runs, but a password was asked for: this lab is private)"
    if (record["masters"], record["replicas"]) != (masters, replicas) or choice not in (
        "auto", record["backend"]
    ):
        return None, (
            f" (lab {name} runs {record['backend']}, {record['masters']} masters, "
            f"{record['replicas']} replica(s); this start asks for {choice}, {masters} masters, "
            f"{replicas} replica(s): this lab is private)"
        )
    previous = _attached() if _attached is not None else None
    let_go = ""
    if (previous is not None and not previous._stopped
            and getattr(previous.backend, "lab_name", None) == name):  # fmt: skip
        # A start cell run again: its earlier lab lets go, as a private one would stop.
        previous._stopped_by.setdefault("by", "start_lab() attaching again")
        previous.stop()
        let_go = f"; this kernel's lab {previous.number} let go of it"
    fd, holder = _lease(name)
    if fd is None:
        who = f" (pid {holder})" if holder else ""
        return None, f" (lab {name} is in use by another kernel{who}; starting a private one)"
    try:
        started = time.perf_counter()
        prepared = _call(name, {"op": "prepare"})
        record = read_record(name) or record
        lab = Lab(AttachedBackend(name, record, prepared, fd))
    except (OSError, RuntimeError) as exc:  # a daemon that died or failed: a lesson goes on
        os.close(fd)
        return None, (
            f" (lab {name} did not answer ({exc}): this lab is private; "
            f"`slotlab lab status --name {name}` says more)"
        )
    except BaseException:
        os.close(fd)
        raise
    restored = f"; {prepared['restored']} in {time.perf_counter() - started:.1f} s" if (
        prepared["restored"]) else ""  # fmt: skip
    _attached = weakref.ref(lab)
    print(f"slotlab: {lab.backend.describe()} (attached to lab {name}, started by `slotlab lab "
          f"up`{restored}{let_go}; lab.stop() detaches)")  # fmt: skip
    return lab, ""


if __name__ == "__main__":
    sys.exit(_daemon_main(sys.argv[1:]))
