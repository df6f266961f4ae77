"""``qpae-erase serve``: the HTTP API in this process and one queue worker as a child process.

The worker is a separate process so that a training run never blocks the API and can be killed
on its own; the server restarts it when it dies (a ``kill -9`` included), and the new worker
re-runs the interrupted request from its parent. On Linux the worker is told to die with the
server (``PR_SET_PDEATHSIG``), so that a killed server leaves no orphan training. One server per
ledger: a second one refuses to start.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

from filelock import FileLock, Timeout

from qpae.service.service import ErasureService, RefusedError

log = logging.getLogger(__name__)


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class WorkerSupervisor:
    """Keeps one worker process running: starts it, restarts it when it exits, stops it."""

    def __init__(self, command: Sequence[str], restart_after_s: float = 1.0) -> None:
        self.command, self.restart_after_s = list(command), restart_after_s
        self.process: subprocess.Popen | None = None
        self.starts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="qpae-worker-supervisor", daemon=True)

    def start(self) -> None:
        self._spawn()
        self._thread.start()

    def _spawn(self) -> None:
        self.starts += 1
        self.process = subprocess.Popen(
            self.command, preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None
        )
        log.info("worker started (pid %d)", self.process.pid)

    def _watch(self) -> None:
        while not self._stop.is_set():
            assert self.process is not None
            code = self.process.poll()
            if code is not None and not self._stop.is_set():
                log.warning("the worker exited with status %s; restarting it", code)
                time.sleep(self.restart_after_s)
                if not self._stop.is_set():
                    self._spawn()
            self._stop.wait(0.2)

    def stop(self) -> None:
        self._stop.set()
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def server_lock(service: ErasureService) -> FileLock:
    return FileLock(str(service.ledger.path) + ".server.lock", timeout=0)


def serve(
    service: ErasureService,
    deployment: str,
    host: str,
    port: int,
    token: str,
    worker_command: Sequence[str],
) -> None:
    """Serve ``deployment``'s API on ``host:port`` with a supervised worker, until stopped."""
    import uvicorn

    from qpae.service.api import create_app

    service.ledger.deployment(deployment)  # an unknown deployment fails before anything starts
    app = create_app(service, deployment, token)
    lock = server_lock(service)
    try:
        lock.acquire()
    except Timeout:
        raise RefusedError(
            f"another qpae-erase server is running on {service.ledger.path} (it holds {lock.lock_file}); "
            "one server per ledger"
        ) from None
    supervisor = WorkerSupervisor(worker_command)
    try:
        supervisor.start()
        print(
            f"qpae-erase: serving deployment {deployment!r} on http://{host}:{port} (worker pid "
            f"{supervisor.process.pid}); ledger {service.ledger.path}",
            flush=True,
        )
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        supervisor.stop()
        lock.release()


def worker_command(overrides: Sequence[str]) -> list[str]:
    """The command line of the server's worker: ``qpae-erase run --follow`` with these settings."""
    return [sys.executable, "-m", "qpae.cli.erase", "run", "--follow", *overrides]
