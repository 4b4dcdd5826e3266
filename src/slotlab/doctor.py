"""``slotlab doctor``: everything a room needs to run the course, each line ok or what to do.

Each check returns :class:`Finding` lines. ``ok`` means ready; ``FIX`` names exactly what to do
and means the course cannot run until it is done; ``note`` is something missing that the course
can do without (no redis-server: the lessons run on the emulated cluster). ``slotlab doctor``
exits 0 when nothing needs a FIX, 1 otherwise.

The same advice replaces a traceback in a notebook: when ``start_lab()`` cannot start a lab,
:func:`attach_advice` gives its error an IPython ``_render_traceback_`` that shows the error's
first line and the doctor's FIX lines for the lab's part of the machine.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

OK, FIX, NOTE = "ok", "FIX", "note"

#: How many loopback ports the check binds at once: a 3-master lab with 1 replica per master
#: and its proxy listen on about this many (the cluster bus ports come on top, port + 10000).
PORTS_NEEDED = 8


@dataclass(frozen=True)
class Finding:
    """One line of the doctor's report: ``status`` is ok, FIX (the course cannot run) or note."""

    status: str
    what: str
    text: str

    def __str__(self) -> str:
        first, *rest = self.text.splitlines() or [""]
        lines = [f"{self.status:<5} {self.what}: {first}"] + [f"      {line}" for line in rest]
        return "\n".join(lines)


# ---- the tested ranges, read from slotlab's installed metadata ----------------------------


@dataclass(frozen=True)
class Requirement:
    """A dependency as pyproject.toml declares it: ``name``, its range, and who needs it."""

    name: str
    specifier: str
    extra: str | None
    applies: bool

    def contains(self, version: str) -> bool:
        """Whether ``version`` is inside the declared range."""
        try:
            from packaging.specifiers import SpecifierSet
            from packaging.version import InvalidVersion, Version
        except ImportError:
            return _in_range(version, self.specifier)
        try:
            return Version(version) in SpecifierSet(self.specifier)
        except InvalidVersion:
            return False

    @property
    def pip(self) -> str:
        """The argument to give pip for this requirement."""
        return f"'{self.name}{self.specifier}'"


_REQUIREMENT = re.compile(
    r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*([^;]*?)\s*(?:;(.*))?$"
)


def _release(version: str) -> tuple[int, ...]:
    """The leading numbers of a version (``2.41.0rc1`` -> ``(2, 41, 0)``)."""
    m = re.match(r"\d+(?:\.\d+)*", version.strip())
    return tuple(int(p) for p in m[0].split(".")) if m else ()


def _in_range(version: str, specifier: str) -> bool:
    """A small stand-in for ``packaging`` where it is not installed: ``>=``, ``<`` and the
    like, compared on the release numbers."""
    have = _release(version)
    compare: dict[str, Callable[[tuple[int, ...], tuple[int, ...]], bool]] = {
        ">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b, "==": lambda a, b: a == b,
        "!=": lambda a, b: a != b, ">": lambda a, b: a > b, "<": lambda a, b: a < b,
    }
    for part in filter(None, (p.strip() for p in specifier.split(","))):
        m = re.match(r"(>=|<=|==|!=|>|<|~=)\s*(.+)", part)
        if not m:
            continue
        op, want = m[1], _release(m[2])
        width = max(len(have), len(want))
        a, b = have + (0,) * (width - len(have)), want + (0,) * (width - len(want))
        if op == "~=":
            if not (a >= b and have[: len(want) - 1] == want[: len(want) - 1]):
                return False
        elif not compare[op](a, b):
            return False
    return True


def _marker(marker: str) -> tuple[str | None, bool]:
    """(the extra a marker names, whether its platform part holds here)."""
    extra = re.search(r"""extra\s*==\s*["']([^"']+)["']""", marker)
    applies = True
    for op, value in re.findall(r"""sys_platform\s*(==|!=)\s*["']([^"']+)["']""", marker):
        applies = applies and ((sys.platform == value) == (op == "=="))
    return (extra[1] if extra else None), applies


def parse_requirement(text: str) -> Requirement:
    """One line of ``importlib.metadata.requires('slotlab')``."""
    m = _REQUIREMENT.match(text)
    if not m:
        raise ValueError(f"cannot read the requirement {text!r}")
    parts = [p.strip() for p in m[3].split(",") if p.strip()]
    specifier = ",".join(sorted(parts, key=lambda p: (not p.startswith(">"), p)))  # low first
    extra, applies = _marker(m[4] or "")
    return Requirement(m[1], specifier, extra, applies)


def requirements(extras: tuple[str, ...] = ("lab",)) -> list[Requirement]:
    """slotlab's dependencies and those of ``extras``, with their tested ranges."""
    found = [parse_requirement(r) for r in importlib.metadata.requires("slotlab") or []]
    return [r for r in found if r.applies and (r.extra is None or r.extra in extras)]


# ---- the checks -----------------------------------------------------------------------------


def check_python() -> Iterator[Finding]:
    """Python itself, against slotlab's Requires-Python."""
    have = ".".join(map(str, sys.version_info[:3]))
    try:
        need = importlib.metadata.metadata("slotlab")["Requires-Python"] or ""
    except importlib.metadata.PackageNotFoundError:
        need = ""
    if _in_range(have, need):
        yield Finding(OK, "python", f"{have} at {sys.executable} (slotlab needs {need or 'any'})")
    else:
        yield Finding(FIX, "python", f"{have} is too old: slotlab needs Python {need}. Make a "
                      "new environment with a newer Python (python3 -m venv .venv) and "
                      "install slotlab there.")


def check_packages() -> Iterator[Finding]:
    """Each dependency, installed and inside the range slotlab is tested with."""
    try:
        wanted = requirements()
    except importlib.metadata.PackageNotFoundError:
        yield Finding(FIX, "slotlab", "is importable but not installed, so its dependencies "
                      "cannot be checked: from the repository's top, `pip install -e '.[lab]'`.")
        return
    for req in wanted:
        try:
            version = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            yield Finding(FIX, req.name, f"is not installed: pip install {req.pip}")
            continue
        if req.contains(version):
            yield Finding(OK, req.name, f"{version} (tested: {req.specifier or 'any'})")
        else:
            yield Finding(FIX, req.name, f"{version} is outside the tested range "
                          f"{req.specifier}: pip install {req.pip}")


def check_redis_server() -> Iterator[Finding]:
    """A redis-server 7.0+ for the real backend; without one the course runs emulated."""
    from slotlab.backends.real import RedisServerNotFound, find_redis_server

    try:
        server = find_redis_server()
    except RedisServerNotFound as exc:
        if os.environ.get("SLOTLAB_REDIS_SERVER"):
            yield Finding(FIX, "redis-server", str(exc))
        else:
            yield Finding(NOTE, "redis-server", f"{exc}\nWithout one, every lesson runs on "
                          "the emulated cluster, and lesson 6's failover cells need a server.")
        return
    yield Finding(OK, "redis-server", f"{server.version_text} at {server.path}")


def check_backend() -> Iterator[Finding]:
    """The backend ``start_lab()`` picks here: ``$SLOTLAB_BACKEND``, else ``auto``."""
    from slotlab.backends.real import RedisServerNotFound, find_redis_server
    from slotlab.lab import check_start_args

    try:
        choice = check_start_args(3, 0, None)
    except ValueError as exc:
        yield Finding(FIX, "backend", f"{exc}; or unset SLOTLAB_BACKEND.")
        return
    source = "$SLOTLAB_BACKEND" if os.environ.get("SLOTLAB_BACKEND") else "auto"
    if choice in ("auto", "real"):
        try:
            find_redis_server()
            choice = "real"
        except RedisServerNotFound as exc:
            if choice == "real" or os.environ.get("SLOTLAB_REDIS_SERVER"):
                asked = "SLOTLAB_BACKEND=real" if choice == "real" else "SLOTLAB_REDIS_SERVER"
                yield Finding(FIX, "backend", f"{asked} asks for a real cluster, which cannot "
                              f"start (redis-server, above: {type(exc).__name__}): fix that, "
                              f"or unset {asked.split('=')[0]} to run on the emulated cluster.")
                return
            choice = "emulated"
    if choice == "emulated":
        try:
            import slotlab.backends.emulated  # noqa: F401  (fakeredis and lupa behind it)
        except ImportError as exc:
            yield Finding(FIX, "backend", f"the emulated backend cannot load ({exc}): "
                          "pip install -e '.[lab]' from the repository's top.")
            return
    yield Finding(OK, "backend", f"start_lab() starts {'an' if choice == 'emulated' else 'a'} "
                  f"{choice} cluster here ({source})")


def check_ports(count: int = PORTS_NEEDED) -> Iterator[Finding]:
    """Free loopback ports: the lab listens on 127.0.0.1 only, one port per node and more."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(s)
            s.bind(("127.0.0.1", 0))
            s.listen()
    except OSError as exc:
        yield Finding(FIX, "loopback ports", f"could bind only {len(sockets) - 1} of {count} "
                      f"ports on 127.0.0.1 ({exc}): the lab listens on loopback only. Check "
                      "that the loopback interface is up (`ip addr show lo`) and that no "
                      "sandbox or firewall forbids listening on it.")
        return
    finally:
        for s in sockets:
            s.close()
    yield Finding(OK, "loopback ports", f"{count} free ports on 127.0.0.1 bound and released")


def check_kernel() -> Iterator[Finding]:
    """The notebooks' kernel (``python3``): present, and able to import slotlab."""
    if importlib.util.find_spec("ipykernel") is None:
        yield Finding(FIX, "jupyter kernel", "ipykernel is not installed, so no notebook can "
                      "run here: pip install -e '.[lab]' from the repository's top.")
        return
    try:
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    except ImportError:
        yield Finding(FIX, "jupyter kernel", "jupyter_client is missing: pip install -e "
                      "'.[lab]' from the repository's top.")
        return
    try:
        spec = KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        yield Finding(FIX, "jupyter kernel", "no kernel named python3 (the notebooks ask for "
                      f"it): {sys.executable} -m ipykernel install --sys-prefix")
        return
    exe = spec.argv[0] if spec.argv else ""
    if exe in ("python", "python3", "{python}", ""):
        exe = sys.executable  # ipykernel's built-in spec runs the Jupyter server's own Python
    try:
        done = subprocess.run([exe, "-c", "import slotlab"], capture_output=True, text=True,
                              timeout=60, check=False)
        fails = done.returncode != 0
        why = (done.stderr.strip().splitlines() or ["no output"])[-1]
    except (OSError, subprocess.SubprocessError) as exc:
        fails, why = True, str(exc)
    if fails:
        yield Finding(FIX, "jupyter kernel", f"the python3 kernel runs {exe}, which cannot "
                      f"import slotlab ({why}): install slotlab there (`{exe} -m pip install "
                      f"-e '.[lab]'`), or register this environment's kernel "
                      f"(`{sys.executable} -m ipykernel install --sys-prefix`).")
        return
    yield Finding(OK, "jupyter kernel", f"python3 runs {exe}, which imports slotlab")


def check_running_lab() -> Iterator[Finding]:
    """Labs started with ``slotlab lab up`` and still running. Read-only: it reads the per-user
    records (``slotlab.lab_daemon``) and checks each daemon's PID."""
    from slotlab import lab_daemon

    try:
        names = sorted(p.stem for p in lab_daemon.runtime_dir().glob("*.json"))
        records = [(n, lab_daemon.read_record(n)) for n in names]
    except Exception as exc:  # e.g. a runtime directory that is not private
        yield Finding(FIX, "running lab", f"the labs' directory cannot be read: {exc}")
        return
    shown = 0
    for name, record in records:
        if not isinstance(record, dict):
            continue
        pid = int(record.get("daemon_pid", 0) or 0)
        if pid <= 0 or not lab_daemon.pid_alive(pid):
            yield Finding(NOTE, "running lab", f"lab {name}'s record is stale (its process, pid "
                          f"{pid}, is gone): `slotlab lab down --name {name}` removes it")
            continue
        shown += 1
        yield Finding(OK, "running lab", f"lab {name}: {record.get('masters')} masters, "
                      f"{record.get('replicas')} replica(s) per master, daemon pid {pid} "
                      f"(`slotlab lab status --name {name}` says more)")
    if not shown:
        yield Finding(OK, "running lab", "no running lab: each notebook starts its own "
                      "(`slotlab lab up` starts one that stays)")


CHECKS: tuple[Callable[[], Iterator[Finding]], ...] = (
    check_python, check_packages, check_redis_server, check_backend, check_ports,
    check_kernel, check_running_lab,
)
#: What a failed ``start_lab()`` asks about: the quick checks of the lab's own part.
LAB_CHECKS: tuple[Callable[[], Iterator[Finding]], ...] = (
    check_redis_server, check_backend, check_ports,
)


def diagnose(checks: tuple[Callable[[], Iterator[Finding]], ...] = CHECKS) -> list[Finding]:
    """Every finding of ``checks``, in order."""
    return [finding for check in checks for finding in check()]


def run() -> int:
    """Print every finding; 0 when the course can run here, 1 when something needs a FIX."""
    findings = diagnose()
    for finding in findings:
        print(finding)
    fixes = sum(f.status == FIX for f in findings)
    print(f"slotlab doctor: {'the course can run here' if not fixes else f'{fixes} to fix'}")
    return 1 if fixes else 0


# ---- a failed start_lab() in a notebook -------------------------------------------------------


def advice(error: BaseException) -> list[str]:
    """A few lines for a notebook: the error's first line, then what the doctor says to do."""
    first = (str(error).splitlines() or [""])[0]
    lines = [f"{type(error).__name__}: {first}", "",
             "slotlab could not start a lab. The doctor says:"]
    try:
        findings = [f for f in diagnose(LAB_CHECKS) if f.status != OK]
    except Exception as exc:  # the advice must never hide the error it explains
        findings = [Finding(FIX, "doctor", f"could not check ({type(exc).__name__}: {exc})")]
    lines += [str(f) for f in findings] or [f"{FIX:<5} {first}"]
    lines += ["", "Run `slotlab doctor` in a terminal for every check; then run this cell again."]
    return lines


def attach_advice(error: BaseException) -> BaseException:
    """Make Jupyter show ``advice(error)`` instead of a traceback for ``error`` (IPython looks
    for ``_render_traceback_`` on the exception); its type, and what catches it, stay."""
    lines = advice(error)
    setattr(error, "_render_traceback_", lambda: lines)  # noqa: B010  (an instance attribute)
    return error
