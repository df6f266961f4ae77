"""The erasure service's latencies and a bounded load test of its API, on loopback.

Each part starts a fresh service folder from the same pretrained model (the small CNN on a
synthetic corpus with enough voices for every request to name a different speaker), runs
``qpae-erase serve`` in its own process (the API plus its worker, as an operator runs it) and
talks to it over HTTP:

* ``one``: ``POST /requests`` → the masked version is current (the POST returns after it is), and
  → the erased version is current (polled every 0.1 s);
* ``queue``: ``queue`` requests posted at once, then the time until the worker has erased them
  all (its throughput, one request after another on the current model);
* ``load``: ``clients`` concurrent clients make ``status_calls`` status calls and
  ``submissions`` submissions, mixed; p50/p99 latency of each, and every accepted request must be
  in the ledger afterwards. The worker erases meanwhile, as it would in service.

Run: ``make service-bench`` (``python -m qpae.cli.service_bench``; conf/service_bench.yaml).
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from qpae.service.service import ErasureService

log = logging.getLogger(__name__)
logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per call would drown the log


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    """``qpae-erase serve`` on a free loopback port, its output in ``log_file``."""

    def __init__(self, root: Path, token: str, log_file: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.headers = {"Authorization": f"Bearer {token}"}
        self._log = open(log_file, "w", encoding="utf-8")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "qpae.cli.erase",
                "serve",
                f"service.root={root}",
                f"service.port={self.port}",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "QPAE_API_TOKEN": token},
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited; see {log_file}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError(f"the server did not answer within 180 s; see {log_file}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=120)
        self._log.close()


def _percentiles(values: list[float]) -> dict:
    a = np.asarray(values) * 1000
    return {
        "n": len(values),
        "p50_ms": round(float(np.percentile(a, 50)), 2),
        "p99_ms": round(float(np.percentile(a, 99)), 2),
        "max_ms": round(float(a.max()), 2),
    }


def _new_service(work: Path, name: str, model: Path, run_overrides: list[str]) -> ErasureService:
    service = ErasureService(work / name, create=True)
    service.init("default", model, run_overrides, "qpae", False)
    return service


def _wait_erased(client: httpx.Client, url: str, ids: list[int], timeout_s: float) -> dict[int, float]:
    """Poll until every request is erased; the client-side time each was first seen erased."""
    seen: dict[int, float] = {}
    deadline = time.monotonic() + timeout_s
    while len(seen) < len(ids):
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"requests {sorted(set(ids) - set(seen))} were not erased within {timeout_s} s"
            )
        for i in ids:
            if i not in seen:
                status = client.get(f"{url}/requests/{i}").json()
                if status["status"] == "failed":
                    raise RuntimeError(f"request {i} failed: {status['error']}")
                if status["status"] == "erased":
                    seen[i] = time.perf_counter()
        time.sleep(0.1)
    return seen


def one_request(work: Path, model: Path, run_overrides: list[str], speaker: str, timeout_s: float) -> dict:
    service = _new_service(work, "one", model, run_overrides)
    token = secrets.token_urlsafe(24)
    server = _Server(service.root, token, work / "one.log")
    try:
        with httpx.Client(headers=server.headers, timeout=60) as client:
            start = time.perf_counter()
            r = client.post(server.url + "/requests", json={"speakers": [speaker]})
            posted = time.perf_counter()
            r.raise_for_status()
            request = r.json()
            current = client.get(server.url + "/models/current").json()
            erased_at = _wait_erased(client, server.url, [request["id"]], timeout_s)[request["id"]]
    finally:
        server.stop()
    final = service.ledger.request(request["id"]).public()
    return {
        "post_to_masked_current_ms": round((posted - start) * 1000, 1),
        "server_masking_ms": round(request["seconds_to_masked"] * 1000, 1),
        "masked_current_after_post": current["kind"] == "masked",
        "post_to_erased_s": round(erased_at - start, 2),
        "server_received_to_erased_s": round(final["seconds_to_erased"], 2),
        "erasure_run_s": round(final["seconds_to_erased"] - final["seconds_to_masked"], 2),
    }


def queue(work: Path, model: Path, run_overrides: list[str], speakers: list[str], timeout_s: float) -> dict:
    service = _new_service(work, "queue", model, run_overrides)
    token = secrets.token_urlsafe(24)
    server = _Server(service.root, token, work / "queue.log")
    try:
        with httpx.Client(headers=server.headers, timeout=60) as client:
            start = time.perf_counter()
            posts, ids = [], []
            for speaker in speakers:
                t = time.perf_counter()
                r = client.post(server.url + "/requests", json={"speakers": [speaker]})
                posts.append(time.perf_counter() - t)
                r.raise_for_status()
                ids.append(r.json()["id"])
            all_posted = time.perf_counter()
            done = _wait_erased(client, server.url, ids, timeout_s)
    finally:
        server.stop()
    finished = max(done.values())
    to_erased = [done[i] - start for i in ids]
    return {
        "requests": len(ids),
        "posting_all_s": round(all_posted - start, 2),
        "post_latency": _percentiles(posts),
        "all_erased_s": round(finished - start, 1),
        "throughput_requests_per_min": round(len(ids) / ((finished - start) / 60), 2),
        "post_to_erased_s": {
            "first": round(min(to_erased), 1),
            "median": round(float(np.median(to_erased)), 1),
            "last": round(max(to_erased), 1),
        },
        "chain_intact": service.chain_problem() is None,
    }


def load(
    work: Path, model: Path, run_overrides: list[str], speakers: list[str], clients: int, status_calls: int
) -> dict:
    service = _new_service(work, "load", model, run_overrides)
    token = secrets.token_urlsafe(24)
    server = _Server(service.root, token, work / "load.log")
    # the first speaker's request is made before the load (the status calls ask for it)
    tasks = [("submit", s) for s in speakers[1:]] + [("status", None)] * status_calls
    rng = np.random.default_rng(0)
    tasks = [tasks[i] for i in rng.permutation(len(tasks))]
    accepted: dict[int, list[str]] = {}
    latencies: dict[str, list[float]] = {"submit": [], "status": []}
    codes: dict[str, int] = {}
    try:
        with httpx.Client(
            headers=server.headers, timeout=120, limits=httpx.Limits(max_connections=clients)
        ) as client:
            first = client.post(server.url + "/requests", json={"speakers": [speakers[0]]}).json()
            accepted[first["id"]] = [speakers[0]]

            def call(task):
                kind, speaker = task
                t = time.perf_counter()
                if kind == "submit":
                    r = client.post(server.url + "/requests", json={"speakers": [speaker]})
                else:
                    r = client.get(f"{server.url}/requests/{first['id']}")
                return kind, speaker, r.status_code, r.json(), time.perf_counter() - t

            start = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(clients) as pool:
                for kind, speaker, code, body, seconds in pool.map(call, tasks):
                    latencies[kind].append(seconds)
                    codes[f"{kind} {code}"] = codes.get(f"{kind} {code}", 0) + 1
                    if kind == "submit" and code == 202:
                        accepted[body["id"]] = [speaker]
            wall = time.perf_counter() - start
    finally:
        server.stop()
    in_ledger = {r.id: list(r.class_names) for r in service.ledger.requests("default")}
    missing = [i for i, names in accepted.items() if in_ledger.get(i) != names]
    return {
        "clients": clients,
        "calls": len(tasks),
        "wall_s": round(wall, 2),
        "status": _percentiles(latencies["status"]),
        "submit": _percentiles(latencies["submit"]),
        "responses": codes,
        "accepted": len(accepted),
        "accepted_missing_from_ledger": missing,
        "chain_intact": service.chain_problem() is None,
    }
