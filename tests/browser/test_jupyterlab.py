"""Lesson 00 as a learner runs it: JupyterLab in headless Chromium, "Run All Cells" from the menu.

JupyterLab starts on a free loopback port with a token, in a temporary HOME (its config,
data, runtime and settings directories too: nothing of the user's is read or written), on a
copy of notebooks/00_the_lab.ipynb (the run's outputs never touch the repository). Every cell
must finish without an error and the topology must show. Then JupyterLab is shut down, and
every process it started while the notebook ran (the kernel, the lab's redis-servers and
their watchdog) must be gone: they are found by PID, watched from JupyterLab's process down.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from browsing import ROOT, new_page, unavailable

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

NOTEBOOK = "00_the_lab.ipynb"
STARTUP_TIMEOUT = 90.0
RUN_TIMEOUT = 120.0
# The topology cell prints its node table; three masters split 16384 slots as redis-cli does.
TOPOLOGY_LINES = ("node  role    address", "0-5460 (5461 slots)", "10923-16383 (5461 slots)")


# Loopback, never through a proxy that the environment may name.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --- processes, by PID, from /proc ---------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    """A process as /proc shows it; (pid, start) tells it apart from a later one with its PID."""

    pid: int
    ppid: int
    start: int
    state: str
    command: str


def _read_proc(pid: int) -> Proc | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    # "pid (comm) state ppid ... starttime(22nd)": comm may hold spaces and parentheses.
    fields = stat[stat.rfind(")") + 2 :].split()
    if len(fields) < 20:  # it ended while we read
        return None
    command = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
    return Proc(pid, int(fields[1]), int(fields[19]), fields[0], command)


def _all_procs() -> list[Proc]:
    procs = (_read_proc(int(p.name)) for p in Path("/proc").iterdir() if p.name.isdigit())
    return [p for p in procs if p is not None]


def descendants(root: int) -> list[Proc]:
    """Every running process below ``root`` (children, their children, ...)."""
    procs = _all_procs()
    below: list[Proc] = []
    parents = {root}
    while True:
        new = [p for p in procs if p.ppid in parents and p not in below]
        if not new:
            return below
        below += new
        parents = {p.pid for p in new}


def still_running(proc: Proc) -> bool:
    """True while that very process (not a later one with its PID) runs; a zombie has ended."""
    now = _read_proc(proc.pid)
    return now is not None and now.start == proc.start and now.state != "Z"


@dataclass
class Watcher:
    """Records every process below ``root`` until stopped: the lab's servers live only while
    the notebook runs (its last cell stops them), so a look afterwards would see nothing."""

    root: int
    seen: dict[tuple[int, int], Proc] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _error: BaseException | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                for proc in descendants(self.root):
                    self.seen.setdefault((proc.pid, proc.start), proc)
                self._stop.wait(0.05)
        except BaseException as exc:  # noqa: BLE001  (raised again by stop())
            self._error = exc

    def stop(self) -> list[Proc]:
        """Stop watching; every process seen. A watcher that broke says so here."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise AssertionError("the process watcher failed") from self._error
        return list(self.seen.values())


# --- JupyterLab ----------------------------------------------------------------------------


@dataclass
class Lab:
    """A JupyterLab server of this test's own."""

    proc: subprocess.Popen[bytes]
    url: str
    token: str
    workdir: Path
    log: Path

    def api(self, method: str, path: str) -> tuple[int, Any]:
        """The HTTP status and JSON body of a REST call to the server; 0 while nothing answers."""
        request = urllib.request.Request(
            f"{self.url}{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        try:
            with _DIRECT.open(request, timeout=5) as response:
                body = response.read()
                return response.status, json.loads(body) if body else None
        except urllib.error.HTTPError as exc:
            return exc.code, None
        except OSError:
            return 0, None

    def kernel_states(self) -> list[str]:
        """The execution state of each kernel the server runs ('starting', 'busy', 'idle')."""
        _, kernels = self.api("GET", "/api/kernels")
        return [k["execution_state"] for k in kernels or []]

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])


def _isolated_env(tmp: Path) -> dict[str, str]:
    """The environment with every Jupyter, IPython and matplotlib directory in ``tmp``."""
    env = dict(os.environ)
    dirs = {
        "HOME": "home",
        "JUPYTER_CONFIG_DIR": "config",
        "JUPYTER_DATA_DIR": "data",
        "JUPYTER_RUNTIME_DIR": "runtime",
        "JUPYTERLAB_SETTINGS_DIR": "settings",
        "JUPYTERLAB_WORKSPACES_DIR": "workspaces",
        "IPYTHONDIR": "ipython",
        "MPLCONFIGDIR": "matplotlib",
        "XDG_CONFIG_HOME": "home/.config",
        "XDG_CACHE_HOME": "home/.cache",
        "XDG_DATA_HOME": "home/.local/share",
    }
    for name, sub in dirs.items():
        (tmp / sub).mkdir(parents=True, exist_ok=True)
        env[name] = str(tmp / sub)
    # No "get notified about Jupyter news?" toast over the notebook, and no fetch of it.
    notification = tmp / "settings" / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True, exist_ok=True)
    (notification / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    env.pop("JUPYTER_PATH", None)
    env.pop("JUPYTER_CONFIG_PATH", None)
    # The kernel imports this checkout's slotlab, installed or not.
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    return env


@pytest.fixture
def jupyterlab(tmp_path: Path) -> Iterator[Lab]:
    if importlib.util.find_spec("jupyterlab") is None:
        unavailable("no JupyterLab (pip install -e '.[lab]')")
    workdir = tmp_path / "notebooks"
    workdir.mkdir()
    shutil.copy(ROOT / "notebooks" / NOTEBOOK, workdir / NOTEBOOK)
    port, token = _free_port(), secrets.token_hex(16)
    command = [
        sys.executable, "-m", "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={workdir}",
        # Nothing from the internet: no news feed, no update check.
        "--LabApp.news_url=",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
    ]  # fmt: skip
    if os.geteuid() == 0:
        command.append("--allow-root")  # CI runs as root
    log = tmp_path / "jupyterlab.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, cwd=workdir, env=_isolated_env(tmp_path), stdout=out, stderr=out,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    lab = Lab(proc, f"http://127.0.0.1:{port}", token, workdir, log)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while lab.api("GET", "/api/status")[0] != 200:
            if proc.poll() is not None:
                pytest.fail(f"JupyterLab exited with {proc.returncode}:\n{lab.log_tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not answer within {STARTUP_TIMEOUT} s")
            time.sleep(0.2)
        yield lab
    finally:
        if proc.poll() is None:  # the test did not shut it down: stop it, by its PID
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _texts(page: Page, selector: str) -> list[str]:
    """The text of every match, rendered or not (JupyterLab skips rendering cells off screen,
    and innerText is empty there)."""
    return [t or "" for t in page.locator(selector).all_text_contents()]


def _has_redis_server() -> bool:
    from slotlab.backends.real import RedisServerNotFound, find_redis_server

    try:
        find_redis_server()
    except RedisServerNotFound:
        return False
    return True


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:.0f} s for {what}")
        time.sleep(0.2)


def menu(page: Page, name: str, item: str) -> None:
    """Choose ``item`` from the menu bar's ``name`` menu, as a person clicks it."""
    page.get_by_role("menuitem", name=name, exact=True).click()
    page.get_by_role("menuitem", name=item, exact=True).click()


def test_run_all_cells_of_lesson_00_in_jupyterlab(
    browser: Browser, jupyterlab: Lab, artifacts: Path
) -> None:
    lab = jupyterlab
    page, log = new_page(browser, local=(lab.url,))
    watcher = Watcher(lab.proc.pid)
    watcher.start()
    try:
        page.goto(f"{lab.url}/lab/tree/{NOTEBOOK}?token={lab.token}")
        page.locator(".jp-NotebookPanel").wait_for(timeout=STARTUP_TIMEOUT * 1000)
        wait_until(lambda: lab.kernel_states() == ["idle"], STARTUP_TIMEOUT, "a kernel")
        prompts = ".jp-Notebook .jp-CodeCell .jp-InputPrompt"
        outputs = ".jp-Notebook .jp-OutputArea-output"
        # The stored outputs (and their numbers) go first: only this run's can then show.
        menu(page, "Edit", "Clear Outputs of All Cells")
        wait_until(lambda: not _texts(page, outputs), 30, "the outputs cleared")
        cleared = _texts(page, prompts)
        assert cleared and all(p.strip("[]: ") == "" for p in cleared), cleared
        menu(page, "Run", "Run All Cells")

        stderr = f"{outputs}[data-mime-type='application/vnd.jupyter.stderr']"

        def finished() -> bool:
            # Every cell numbered, or stopped by an error (Run All runs nothing after one).
            numbered = all(p.strip("[]: ").isdigit() for p in _texts(page, prompts))
            return (numbered or bool(_texts(page, stderr))) and lab.kernel_states() == ["idle"]

        wait_until(finished, RUN_TIMEOUT, "every cell to finish")
        errors = _texts(page, stderr)
        assert not errors, f"cells wrote errors: {errors}"
        numbers = [p.strip("[]: ") for p in _texts(page, prompts)]
        expected = [str(n) for n in range(1, len(cleared) + 1)]
        assert numbers == expected, f"not every cell ran, in order: {numbers}"
        shown = "\n".join(_texts(page, outputs))
        for line in TOPOLOGY_LINES:
            assert line in shown, f"the topology is not shown ({line!r} missing):\n{shown}"
        page.locator(outputs).filter(has_text=TOPOLOGY_LINES[0]).scroll_into_view_if_needed()
        page.screenshot(path=artifacts / "jupyterlab_00.png")
        assert not log.take()
    finally:
        page.context.close()
        started = watcher.stop()
    kernels = [p for p in started if "ipykernel" in p.command]
    assert len(kernels) == 1, f"expected one kernel, saw {started}"
    if _has_redis_server():
        assert "slotlab: real:" in shown, "a redis-server is here, yet the lab was not real"
    if "slotlab: real:" in shown:
        servers = [p for p in started if "redis-server" in p.command]
        assert len(servers) >= 3, f"the real lab's servers were not seen: {started}"
    # Shut JupyterLab down as its File menu does (POST /api/shutdown), then wait for it.
    assert lab.api("POST", "/api/shutdown")[0] in (200, 202, 204)
    lab.proc.wait(timeout=60)
    deadline = time.monotonic() + 30
    while (left := [p for p in started if still_running(p)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    for proc in left:  # ours, through the kernel: stop them before failing
        os.kill(proc.pid, signal.SIGKILL)
    assert not left, f"still running after JupyterLab shut down: {left}"
