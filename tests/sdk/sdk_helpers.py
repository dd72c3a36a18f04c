"""Helpers of the SDK tests (imported by name: tests have no __init__.py): a real `costwarden serve`
subprocess that can be stopped and started again on the same data dir and port, and polling."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx

# lite-agent and late-agent are blocked by any spend; runaway is throttled at $0.50 and blocked at $1.00.
BUDGETS = """\
version: 1
budgets:
  - id: runaway-cap
    scope: {workflow: runaway}
    period: day
    amount: "1.00"
    thresholds:
      - {at: 50, actions: [{throttle: {rate_per_min: "600"}}]}
      - {at: 100, actions: [{block: true}]}
  - id: lite-cap
    scope: {workflow: lite-agent}
    period: day
    amount: "0.000001"
    thresholds:
      - {at: 100, actions: [{block: true}]}
  - id: late-cap
    scope: {workflow: late-agent}
    period: day
    amount: "0.000001"
    thresholds:
      - {at: 100, actions: [{block: true}]}
"""


def usage(event_id: str, workflow: str, input_tokens: int = 1000, output_tokens: int = 100,
          model: str = "gpt-4o-mini") -> dict:
    return {"event_id": event_id, "occurred_at": datetime.now(timezone.utc).isoformat(), "source": "gateway",
            "provider": "openai", "model": model, "tokens": {"input": input_tokens, "output": output_tokens},
            "attribution": {"tags": {"workflow": workflow}}}


def wait_for(pred, timeout: float = 5.0, step: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return bool(pred())


def free_port() -> int:
    from costwarden.api.server import free_port as fp

    return fp()


class ServeProcess:
    """`costwarden --budgets B serve --port P --no-alerts` in a subprocess, in its own data dir."""

    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root = root
        self.port = port or free_port()
        self.budgets = root / "budgets.yaml"
        self.budgets.write_text(BUDGETS)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("COSTWARDEN_")}
        self.env.update(COSTWARDEN_DATA_DIR=str(root / "data"), COSTWARDEN_API__STREAM_HEARTBEAT_S="1",
                        PYTHONUNBUFFERED="1")
        self.proc: subprocess.Popen | None = None
        self.logs: list[Path] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "costwarden.cli", "--budgets", str(self.budgets), *args],
                             cwd=self.root, env=self.env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout

    def token(self, role: str) -> str:
        """Created with the CLI while no server holds the data dir."""
        return self.cli("tokens", "create", "--name", f"{role}-bot", "--role", role).strip()

    def start(self, timeout: float = 90) -> "ServeProcess":
        log = self.root / f"serve-{len(self.logs)}.log"
        self.logs.append(log)
        self.proc = subprocess.Popen([sys.executable, "-m", "costwarden.cli", "--budgets", str(self.budgets),
                                      "serve", "--port", str(self.port), "--no-alerts"],
                                     cwd=self.root, env=self.env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"costwarden serve exited ({self.proc.returncode}):\n{self.log_text()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"costwarden serve did not get ready:\n{self.log_text()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> float:
        """Signal the server; seconds until the process exited."""
        assert self.proc is not None
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise
        finally:
            self.proc = None
        return time.monotonic() - t0

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-4000:] for p in self.logs if p.exists())


class InThreadApi:
    """The embedded runtime + uvicorn in a thread (costwarden.api.ApiServer) on a chosen port;
    `start()` may come after an SDK was pointed at the port."""

    def __init__(self, settings, root: Path, port: int | None = None) -> None:
        from costwarden.api import EmbeddedRuntime, create_token

        budgets = root / "budgets.yaml"
        budgets.write_text(BUDGETS)
        settings.budgets.budgets_file = budgets
        settings.api.stream_heartbeat_s = 1.0
        self.port = port or free_port()
        self.runtime = EmbeddedRuntime.open(settings, deliver=False)
        self.tokens = {role: self.runtime.thread.call(lambda role=role: create_token(self.runtime.store,
                                                                                     f"{role}-bot", role))
                       for role in ("gateway", "admin")}
        self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "InThreadApi":
        from costwarden.api import ApiServer, create_app

        self.server = ApiServer(create_app(self.runtime), port=self.port).start()
        return self

    def client(self, role: str = "gateway") -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.tokens[role]}"}, timeout=10)

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
        self.runtime.close()
