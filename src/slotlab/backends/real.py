"""The real backend: redis-server processes in cluster mode on free loopback ports.

The authoritative backend: every reply and error comes from the server itself. The cluster is
formed by hand (the fastest recipe; ``redis-cli --cluster create`` polls once a second):
each master gets a config epoch and its slot range, every node MEETs every other, and we poll
until all nodes agree. A small reaper process kills the servers if the owner dies, even by
SIGKILL, so no redis-server outlives its lab.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from slotlab.backends._reaper import sweep
from slotlab.backends.base import (
    Backend,
    NodeAddress,
    note_started,
    sigint_deferred,
    split_slots,
)

MIN_VERSION = (7, 0, 0)
STARTUP_TIMEOUT = 10.0
FORM_TIMEOUT = 20.0

_HOW_TO_GET = """\
Get one in any of these ways:
  conda install -c conda-forge "redis-server>=7"    (any OS but Windows)
  sudo apt-get install redis-server                  (Debian 12, Ubuntu 24.04)
  brew install redis                                 (macOS)
or point SLOTLAB_REDIS_SERVER at a redis-server binary.
Without a server, run the course on slotlab's emulated cluster: start_lab(backend="emulated")
or SLOTLAB_BACKEND=emulated."""


class RedisServerNotFound(RuntimeError):
    """No usable redis-server (7.0 or newer) was found for the real backend."""

    def _render_traceback_(self) -> list[str]:
        """What Jupyter shows for this error: the message alone, which names how to get a
        server, instead of a wall of frames from inside slotlab that would bury it."""
        return f"{type(self).__name__}: {self}".splitlines()


class LabStartError(RuntimeError):
    """The cluster could not be started or formed; the message says what the nodes reported."""


@dataclass(frozen=True)
class ServerBinary:
    """A redis-server executable and the version it reports."""

    path: str
    version: tuple[int, int, int]

    @property
    def version_text(self) -> str:
        """The version as Redis prints it, e.g. ``7.0.15``."""
        return ".".join(map(str, self.version))


def _server_version(path: str) -> tuple[int, int, int] | None:
    try:
        out = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"v=(\d+)\.(\d+)\.(\d+)", out)
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


def _candidates() -> list[tuple[str, str]]:
    """Where to look for redis-server, in order, with a name for each place."""
    found: list[tuple[str, str]] = []
    exe = "redis-server.exe" if os.name == "nt" else "redis-server"
    conda = os.environ.get("CONDA_PREFIX")
    if conda:
        found.append((str(Path(conda) / "bin" / exe), "the active conda environment"))
    found.append((str(Path(sys.prefix) / "bin" / exe), "this Python's environment"))
    on_path = shutil.which("redis-server")
    if on_path:
        found.append((on_path, "PATH"))
    return found


def find_redis_server() -> ServerBinary:
    """Find redis-server 7.0+: ``$SLOTLAB_REDIS_SERVER``, the conda environment, then PATH."""
    explicit = os.environ.get("SLOTLAB_REDIS_SERVER")
    if explicit:
        version = _server_version(explicit)
        if version is None:
            raise RedisServerNotFound(
                f"SLOTLAB_REDIS_SERVER={explicit!r} is not a redis-server that runs "
                f"(`{explicit} --version` failed). Fix or unset it.\n{_HOW_TO_GET}"
            )
        if version < MIN_VERSION:
            raise RedisServerNotFound(
                f"SLOTLAB_REDIS_SERVER points at redis-server {'.'.join(map(str, version))}; "
                f"slotlab needs 7.0 or newer.\n{_HOW_TO_GET}"
            )
        return ServerBinary(explicit, version)
    too_old: list[str] = []
    seen: set[str] = set()
    for path, where in _candidates():
        if path in seen or not os.access(path, os.X_OK):
            continue
        seen.add(path)
        version = _server_version(path)
        if version is None:
            continue
        if version >= MIN_VERSION:
            return ServerBinary(path, version)
        too_old.append(f"{'.'.join(map(str, version))} in {where}")
    if too_old:
        raise RedisServerNotFound(
            "slotlab needs redis-server 7.0 or newer, but found only "
            + ", ".join(too_old)
            + ".\n"
            + _HOW_TO_GET
        )
    raise RedisServerNotFound(
        "No redis-server was found (looked at $SLOTLAB_REDIS_SERVER, the conda environment, "
        "and PATH).\n" + _HOW_TO_GET
    )


def free_port(taken: set[int]) -> int:
    """A loopback port that nothing listens on now (the OS picks it) and we have not used."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            # SO_REUSEADDR as the server sets it, so a port in TIME_WAIT counts as free.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in taken and port + 10000 not in taken:
            taken.add(port)
            return port
    raise LabStartError("could not find a free loopback port")


_REAPER = Path(__file__).with_name("_reaper.py")


class _Reaper:
    """A tiny watchdog process: if our pipe to it closes without 'done', it kills the servers."""

    def __init__(self, workdir: str) -> None:
        # The directory is in its argv and is its working directory, so that a sweep of the
        # directory's processes finds the reaper too if an interrupt lost its Popen object.
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", str(_REAPER), workdir],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
            cwd=workdir,
        )

    def _send(self, line: str) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write((line + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass

    def watch(self, pid: int) -> None:
        self._send(f"pid {pid}")

    def release(self) -> None:
        """The owner stopped the servers itself: tell the reaper to leave quietly."""
        self._send("done")
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@dataclass
class _Server:
    port: int
    cluster_port: int
    proc: subprocess.Popen[bytes]
    log: Path
    cluster: bool = True
    node_id: str = ""

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])


class RealBackend(Backend):
    """A cluster of redis-server processes that this object starts, owns and stops."""

    name = "real"

    def __init__(
        self,
        masters: int = 3,
        replicas: int = 0,
        server: ServerBinary | None = None,
        password: str | None = None,
    ) -> None:
        if masters < 1:
            raise ValueError(f"masters must be at least 1, not {masters}")
        if replicas < 0:
            raise ValueError(f"replicas (per master) must be 0 or more, not {replicas}")
        # Every attribute stop() reads exists before anything starts, so that stop() cleans up
        # after an interrupt landing anywhere below.
        self._servers: list[_Server] = []  # ready nodes, masters first
        self._spawned: list[_Server] = []  # every process started, for stop()
        self._killed: set[int] = set()  # indices into _servers of nodes kill_node() killed
        self._stopped = False
        self._reaper: _Reaper | None = None
        self.workdir = ""
        self.masters = masters
        self.replicas = replicas
        #: ``requirepass`` and ``masterauth`` of every node (None: no password).
        self.password = password
        self._conf = ""
        note_started(self)
        try:
            self.server = server or find_redis_server()
            with sigint_deferred():
                self.workdir = tempfile.mkdtemp(prefix="slotlab-")  # mode 0700: ours alone
            self._conf = self._write_conf()
            with sigint_deferred():
                self._reaper = _Reaper(self.workdir)
            self._start_all()
            self._form()
        except BaseException:
            self.stop()
            raise

    # ---- starting -------------------------------------------------------------------------

    def _write_conf(self) -> str:
        """The password goes in a config file only we can read, never on the command line
        (which every user of the machine can read in ``ps``)."""
        path = Path(self.workdir) / "auth.conf"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            if self.password is not None:
                # A config file value in double quotes takes backslash escapes (sdssplitargs).
                quoted = self.password.replace("\\", "\\\\").replace('"', '\\"')
                f.write(f'requirepass "{quoted}"\nmasterauth "{quoted}"\n')
        return str(path)

    def _spawn(
        self, taken: set[int], cluster: bool = True, ports: tuple[int, int] | None = None
    ) -> _Server:
        if ports is None:
            port = free_port(taken)
            cport = free_port(taken) if cluster else 0
        else:
            port, cport = ports  # a node restarted on its own ports, with its nodes file
        log = Path(self.workdir) / f"redis-{port}.log"
        cluster_args = [
            "--cluster-enabled", "yes",
            "--cluster-port", str(cport),
            "--cluster-config-file", f"nodes-{port}.conf",
            "--cluster-node-timeout", "2000",
        ] if cluster else []  # fmt: skip
        args = [
            self.server.path,
            self._conf,
            "--port", str(port),
            "--bind", "127.0.0.1",
            *cluster_args,
            "--save", "",
            "--appendonly", "no",
            # A new replica syncs at once instead of waiting 5 s for more replicas to batch.
            "--repl-diskless-sync-delay", "0",
            # A replica is listed in CLUSTER SLOTS only once its offset moves: ping every 1 s.
            "--repl-ping-replica-period", "1",
            "--dir", self.workdir,
            "--logfile", str(log),
            "--daemonize", "no",
            "--loglevel", "notice",
        ]  # fmt: skip
        # Started and recorded in one piece: a Ctrl-C landing inside Popen would otherwise leave
        # a server nobody knows the PID of. Its cwd is the lab's directory: sweep() finds it.
        with sigint_deferred():
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                close_fds=True,
                cwd=self.workdir,
            )
            srv = _Server(port, cport, proc, log, cluster)
            self._spawned.append(srv)
            if self._reaper is not None:
                self._reaper.watch(proc.pid)
        return srv

    def _wait_ready(self, srv: _Server, deadline: float) -> str:
        """Wait until srv answers as OUR process: 'ready', 'port-taken' or 'failed'."""
        while time.monotonic() < deadline:
            if srv.proc.poll() is not None:
                break
            try:
                # No retries, short timeouts: a port held by a silent program must not stall us.
                with redis.Redis(
                    host="127.0.0.1",
                    port=srv.port,
                    password=self.password,
                    socket_timeout=0.5,
                    socket_connect_timeout=0.5,
                    retry=Retry(NoBackoff(), 0),
                ) as r:
                    info = r.info("server")
                    if int(info["process_id"]) != srv.proc.pid:
                        # Another program answers on this port, so our server cannot bind it.
                        return "port-taken"
                    if not srv.cluster:
                        return "ready"
                    myid = r.execute_command("CLUSTER", "MYID")
                    srv.node_id = myid.decode() if isinstance(myid, bytes) else str(myid)
                    if srv.node_id != self._node_id_from_conf(srv):
                        return "failed"
                    return "ready"
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                time.sleep(0.005)
        if srv.proc.poll() is not None and "Address already in use" in srv.log_tail(20):
            return "port-taken"
        return "failed"

    def _node_id_from_conf(self, srv: _Server) -> str:
        conf = Path(self.workdir) / f"nodes-{srv.port}.conf"
        try:
            for line in conf.read_text().splitlines():
                parts = line.split()
                if len(parts) > 2 and "myself" in parts[2].split(","):
                    return parts[0]
        except OSError:
            pass
        return ""

    def _start_all(self) -> None:
        total = self.masters * (1 + self.replicas)
        taken: set[int] = set()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        pending = [self._spawn(taken) for _ in range(total)]
        for _attempt in range(20):
            lost = 0
            for srv in pending:
                state = self._wait_ready(srv, deadline)
                if state == "ready":
                    self._servers.append(srv)
                    continue
                self._kill(srv)
                if state == "port-taken":
                    lost += 1  # another program took the port first: pick new ones
                    continue
                raise LabStartError(
                    f"redis-server on port {srv.port} did not start within "
                    f"{STARTUP_TIMEOUT:.0f} s. Its log ends:\n{srv.log_tail()}"
                )
            if not lost:
                return  # masters are the first `masters` servers that came up
            pending = [self._spawn(taken) for _ in range(lost)]
        raise LabStartError("other programs kept taking the free ports; tried 20 times")

    # ---- forming the cluster --------------------------------------------------------------

    def _client(self, srv: _Server) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1", port=srv.port, password=self.password, decode_responses=True,
            socket_timeout=5,
        )  # fmt: skip

    def _form(self) -> None:
        masters = self._servers[: self.masters]
        replicas = self._servers[self.masters :]
        clients = [self._client(s) for s in self._servers]
        try:
            for i, (lo, hi) in enumerate(split_slots(self.masters)):
                c = clients[i]
                c.execute_command("CLUSTER", "SET-CONFIG-EPOCH", i + 1)
                c.execute_command("CLUSTER", "ADDSLOTSRANGE", lo, hi)
            for i, c in enumerate(clients):
                for j, other in enumerate(self._servers):
                    if i != j:
                        c.execute_command(
                            "CLUSTER", "MEET", "127.0.0.1", other.port, other.cluster_port
                        )
            deadline = time.monotonic() + FORM_TIMEOUT
            for k, rep in enumerate(replicas):
                master = masters[k % self.masters]
                c = clients[self.masters + k]
                while True:
                    nodes = c.execute_command("CLUSTER", "NODES")
                    if master.node_id in str(nodes):
                        try:
                            c.execute_command("CLUSTER", "REPLICATE", master.node_id)
                            break
                        except redis.ResponseError:
                            pass
                    if time.monotonic() > deadline:
                        raise LabStartError(
                            f"replica on port {rep.port} never learned of its master"
                        )
                    time.sleep(0.01)
            self._wait_agreement(clients, deadline)
        finally:
            for c in clients:
                c.close()

    def _wait_agreement(self, clients: list[redis.Redis], deadline: float) -> None:
        total = len(self._servers)
        last_problem = ""
        while True:
            problem = ""
            views: set[str] = set()
            for srv, c in zip(self._servers, clients, strict=True):
                info = c.execute_command("CLUSTER", "INFO")
                text = info if isinstance(info, str) else str(info)
                if "cluster_state:ok" not in text:
                    problem = f"node {srv.port} reports cluster_state other than ok"
                    break
                nodes = str(c.execute_command("CLUSTER", "NODES")).strip().splitlines()
                if len(nodes) != total or any(
                    "handshake" in n or "noaddr" in n or "fail" in n.split()[2] for n in nodes
                ):
                    problem = f"node {srv.port} does not yet know all {total} nodes"
                    break
                if self.replicas and sum(
                    "slave" in n.split()[2].split(",") for n in nodes
                ) != total - self.masters:
                    problem = f"node {srv.port} does not yet see every replica"
                    break
                slots = c.execute_command("CLUSTER", "SLOTS")
                # Each entry is [lo, hi, master, replica...]; a replica shows once it syncs.
                if any(len(entry) != 3 + self.replicas for entry in slots):
                    problem = f"node {srv.port} does not yet list every replica in CLUSTER SLOTS"
                    break
                views.add(repr(sorted(repr(s) for s in slots)))
            if not problem and len(views) != 1:
                problem = "nodes disagree on CLUSTER SLOTS"
            if not problem:
                return
            last_problem = problem
            if time.monotonic() > deadline:
                raise LabStartError(
                    f"the cluster did not converge within {FORM_TIMEOUT:.0f} s: {last_problem}"
                )
            time.sleep(0.01)

    # ---- the Backend interface ------------------------------------------------------------

    @property
    def nodes(self) -> list[NodeAddress]:
        return [
            NodeAddress("127.0.0.1", s.port, s.node_id, s.proc.pid) for s in self._servers
        ]

    def start_standalone(self) -> tuple[str, int]:
        """Start a plain (non-cluster) redis-server beside the cluster; it stops with the lab."""
        if self._stopped:
            raise RuntimeError("this backend was stopped")
        taken = {s.port for s in self._spawned} | {s.cluster_port for s in self._spawned}
        for _attempt in range(20):
            srv = self._spawn(taken, cluster=False)
            state = self._wait_ready(srv, time.monotonic() + STARTUP_TIMEOUT)
            if state == "ready":
                return "127.0.0.1", srv.port
            self._kill(srv)
            if state != "port-taken":
                raise LabStartError(
                    f"a standalone redis-server on port {srv.port} did not start. "
                    f"Its log ends:\n{srv.log_tail()}"
                )
        raise LabStartError("other programs kept taking the free ports; tried 20 times")

    def alive(self) -> bool:
        return not self._stopped and all(
            s.proc.poll() is None for i, s in enumerate(self._servers) if i not in self._killed
        )

    # ---- changing the cluster while it runs -----------------------------------------------

    def add_node(self) -> NodeAddress:
        """Start an empty master, MEET it to every live node, and wait until all know it."""
        if self._stopped:
            raise RuntimeError("this backend was stopped")
        taken = {s.port for s in self._spawned} | {s.cluster_port for s in self._spawned}
        for _attempt in range(20):
            srv = self._spawn(taken)
            state = self._wait_ready(srv, time.monotonic() + STARTUP_TIMEOUT)
            if state == "ready":
                break
            self._kill(srv)
            if state != "port-taken":
                raise LabStartError(
                    f"a new redis-server on port {srv.port} did not start. "
                    f"Its log ends:\n{srv.log_tail()}"
                )
        else:
            raise LabStartError("other programs kept taking the free ports; tried 20 times")
        live = [s for i, s in enumerate(self._servers) if not self.is_down(i)]
        with self._client(srv) as c:
            for other in live:
                c.execute_command("CLUSTER", "MEET", "127.0.0.1", other.port, other.cluster_port)
        self._servers.append(srv)
        self.masters += 1
        self._wait_known(srv, live + [srv])
        return NodeAddress("127.0.0.1", srv.port, srv.node_id, srv.proc.pid)

    def _wait_known(self, new: _Server, live: list[_Server]) -> None:
        """Wait until every live node lists every live node, ``new`` included, as connected,
        and all report ``cluster_state:ok`` with the same slot map (the new node learns it by
        gossip, and answers CLUSTERDOWN until it has)."""
        deadline = time.monotonic() + FORM_TIMEOUT
        ids = {s.node_id for s in live}
        while True:
            pending = ""
            views: set[str] = set()
            for srv in live:
                with self._client(srv) as c:
                    lines = str(c.execute_command("CLUSTER", "NODES")).strip().splitlines()
                    info = str(c.execute_command("CLUSTER", "INFO"))
                    views.add(repr(sorted(repr(s[:3]) for s in c.execute_command(
                        "CLUSTER", "SLOTS"))))
                if "cluster_state:ok" not in info:
                    pending = f"node {srv.port} does not yet report cluster_state:ok"
                    break
                ok = {
                    p[0]
                    for p in (line.split() for line in lines)
                    if "handshake" not in p[2] and "noaddr" not in p[2] and p[7] == "connected"
                }
                if not ids <= ok:
                    pending = f"node {srv.port} does not yet know node {new.port}"
                    break
            if not pending and len(views) != 1:
                pending = "the nodes do not yet agree on CLUSTER SLOTS"
            if not pending:
                return
            if time.monotonic() > deadline:
                raise LabStartError(f"the new node did not join within {FORM_TIMEOUT:.0f} s: "
                                    f"{pending}")
            time.sleep(0.01)

    def failover(self, replica: int) -> None:
        """``CLUSTER FAILOVER`` on node ``replica``: it takes over from its master, no data lost."""
        with self._client(self._servers[replica]) as c:
            c.execute_command("CLUSTER", "FAILOVER")

    def kill_node(self, index: int) -> None:
        """SIGKILL node ``index``: it stops at once, as in a crash; the others must notice."""
        srv = self._servers[index]
        self._killed.add(index)
        if srv.proc.poll() is None:
            srv.proc.kill()
            srv.proc.wait(timeout=5)

    def is_down(self, index: int) -> bool:
        """True for a node kill_node() killed, or whose process died (``kill -9`` from a shell)."""
        return index in self._killed or self._servers[index].proc.poll() is not None

    def restart_node(self, index: int) -> NodeAddress:
        """Start node ``index`` again on its own ports with its own nodes file: it comes back
        with its node ID and, unless a replica took them over meanwhile, its slots (empty of
        keys: this lab keeps no data on disk). Waits until every live node knows it again."""
        if self._stopped:
            raise RuntimeError("this backend was stopped")
        old = self._servers[index]
        if old.proc.poll() is None:
            raise ValueError(f"node {index} is running; only a node that is down can restart")
        srv = self._spawn(set(), ports=(old.port, old.cluster_port))
        state = self._wait_ready(srv, time.monotonic() + STARTUP_TIMEOUT)
        if state != "ready":
            self._kill(srv)
            why = "another program took its port" if state == "port-taken" else "it failed"
            raise LabStartError(
                f"node {index} on port {old.port} did not come back: {why}. "
                f"Its log ends:\n{srv.log_tail()}"
            )
        self._servers[index] = srv
        self._killed.discard(index)
        live = [s for i, s in enumerate(self._servers) if not self.is_down(i)]
        self._wait_known(srv, live)
        return NodeAddress("127.0.0.1", srv.port, srv.node_id, srv.proc.pid)

    def pids(self) -> list[int]:
        """The process IDs of the servers this backend started."""
        return [s.proc.pid for s in self._servers]

    def describe(self) -> str:
        return (
            f"real: redis-server {self.server.version_text}, {self.masters} masters, "
            f"{self.replicas} replica(s) per master, on loopback"
        )

    @staticmethod
    def _kill(srv: _Server) -> None:
        if srv.proc.poll() is None:
            srv.proc.terminate()
            try:
                srv.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                srv.proc.kill()
                srv.proc.wait(timeout=3)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for srv in self._spawned:
            if srv.proc.poll() is None:
                srv.proc.terminate()
        for srv in self._spawned:
            try:
                srv.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                srv.proc.kill()
                srv.proc.wait(timeout=3)
        if self._reaper is not None:
            self._reaper.release()
        if self.workdir:
            # Any process of this lab that an interrupt hid from us (its Popen never returned).
            sweep(self.workdir, spare=os.getpid())
            shutil.rmtree(self.workdir, ignore_errors=True)
