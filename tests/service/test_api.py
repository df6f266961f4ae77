"""The HTTP API against a real server on a loopback port (``qpae-erase serve`` in its own process,
with its worker), the masked-then-erased lifecycle with real unlearning runs, and kill -9 of the
worker and of the server."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from qpae.service.service import ErasureService

from conftest import SYNTHETIC_8

TOKEN = "t0ken-for-the-tests-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def erase_cli(*args, env=None, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "qpae.cli.erase", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


class Server:
    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(root.parent / f"server-{port}.log", "a")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "qpae.cli.erase", "serve", f"service.root={root}", f"service.port={port}"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "QPAE_API_TOKEN": TOKEN},
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (root.parent / f"server-{port}.log").read_text()
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise AssertionError("the server did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=60)
        self.log.close()


def auth(token=TOKEN):
    return {"Authorization": f"Bearer {token}"}


def wait_for(predicate, timeout_s=600, every_s=0.05):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError("timed out")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (killed, not yet reaped by its parent) is dead too
    status = Path(f"/proc/{pid}/status")
    return not (status.is_file() and "\nState:\tZ" in status.read_text())


@pytest.mark.slow
def test_the_api_masks_then_erases_and_survives_kill_9_of_worker_and_server(
    tmp_path, pretrained, feature_cache, synthetic_root
):
    root = tmp_path / "service"
    init = erase_cli(
        "init",
        str(pretrained),
        f"service.root={root}",
        f"paths.cache={feature_cache}",
        f"paths.data={synthetic_root}",
        *SYNTHETIC_8,
        "schedule=paper",
        "unlearn.epochs=3",
        "purge=false",
    )
    assert init.returncode == 0, init.stderr
    port = free_port()
    server = Server(root, port)
    try:
        url = server.url
        # no token, a wrong token: 401, whatever the body names (nothing is revealed)
        assert httpx.get(url + "/models/current").status_code == 401
        for speakers in (["spk03"], ["nobody"]):
            r = httpx.post(
                url + "/requests", json={"speakers": speakers}, headers=auth("wrong-token-xxxxxxxx")
            )
            assert r.status_code == 401 and r.json() == {"detail": "missing or wrong bearer token"}
        # malformed bodies and unknown speakers: 422 with a reason
        for body in ({"speakers": [3]}, {"speakers": []}, {"speakers": ["spk03"], "extra": 1}, {"who": "x"}):
            assert httpx.post(url + "/requests", json=body, headers=auth()).status_code == 422
        r = httpx.post(url + "/requests", content=b"{not json", headers=auth())
        assert r.status_code == 422
        r = httpx.post(url + "/requests", json={"speakers": ["nobody"]}, headers=auth())
        assert r.status_code == 422 and "unknown class 'nobody'" in r.json()["detail"]
        assert httpx.get(url + "/requests/999", headers=auth()).status_code == 404

        # accepted: masked at once, then erased by the worker; the worker is killed mid-run
        r = httpx.post(url + "/requests", json={"speakers": ["spk03"], "requester": "T-9"}, headers=auth())
        assert r.status_code == 202, r.text
        request = r.json()
        current = httpx.get(url + "/models/current", headers=auth()).json()
        assert current["kind"] == "masked" and current["masked"] == ["spk03"]
        service = ErasureService(root)
        started = wait_for(lambda: [e for e in service.ledger.events("default") if e["kind"] == "started"])
        os.kill(started[0]["detail"]["worker_pid"], signal.SIGKILL)
        done = wait_for(
            lambda: (
                (s := httpx.get(f"{url}/requests/{request['id']}", headers=auth()).json())["status"]
                in ("erased", "failed")
                and s
            ),
            every_s=0.5,
        )
        assert done["status"] == "erased" and done["attempts"] == 2, done
        assert done["seconds_to_erased"] > done["seconds_to_masked"]
        current = httpx.get(url + "/models/current", headers=auth()).json()
        assert current["kind"] == "erased" and current["forgotten"] == ["spk03"]
        assert current["metrics_after"]["FA"] < 50
        receipt = httpx.get(f"{url}/models/{current['sha256']}/receipt", headers=auth()).json()
        assert receipt["kind"] == "erased" and receipt["erasure_receipt"]["request"][
            "forget_class_names"
        ] == ["spk03"]
        assert [v.kind for v in service.ledger.versions("default")].count("erased") == 1

        # one server per ledger
        second = erase_cli(
            "serve",
            f"service.root={root}",
            f"service.port={free_port()}",
            env={"QPAE_API_TOKEN": TOKEN},
            timeout=120,
        )
        assert second.returncode == 2 and "another qpae-erase server is running" in second.stderr

        # kill -9 of the server after it accepted a request: its worker goes too; a new server
        # finishes the request
        r = httpx.post(url + "/requests", json={"speakers": ["spk05"]}, headers=auth())
        assert r.status_code == 202
        second_id = r.json()["id"]
        pids = wait_for(
            lambda: [
                e["detail"]["worker_pid"]
                for e in service.ledger.events("default")
                if e["kind"] == "started" and e["request_id"] == second_id
            ]
        )
        server.proc.kill()
        server.proc.wait(timeout=30)
        wait_for(lambda: not alive(pids[0]), timeout_s=30)
        assert service.ledger.request(second_id).status == "running"  # interrupted, not lost
        server = Server(root, port)
        done = wait_for(lambda: service.ledger.request(second_id).status in ("erased", "failed"), every_s=0.5)
        assert service.ledger.request(second_id).status == "erased"
        assert service.ledger.current("default").forgotten == ("spk03", "spk05")
    finally:
        server.stop()

    # the CLI sees the same ledger: verify exits 0 for the current file, 1 once a receipt is edited
    current = service.registry.model_path(service.ledger.current("default").sha256)
    ok = erase_cli("verify", str(current), f"service.root={root}")
    assert ok.returncode == 0 and "erases requests [1, 2]" in ok.stdout, ok.stdout + ok.stderr
    history = json.loads(erase_cli("history", f"service.root={root}").stdout)
    assert [v["kind"] for v in history["versions"]].count("erased") == 2
    record = service.registry.record_path(2)
    record.write_text(record.read_text().replace("spk03", "spk04"))
    bad = erase_cli("verify", str(current), f"service.root={root}")
    assert bad.returncode == 1 and "record 2 (000002.json) was edited" in bad.stdout
