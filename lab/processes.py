"""Spawning control-plane processes: ``ApiserverProcess`` runs ``python -m control.apiserver``.

Contract: ``start`` returns once the apiserver serves (it has written its
endpoint file) or raises with the reason; ``stop`` is SIGTERM, a grace period,
then SIGKILL; ``kill`` is SIGKILL. Nothing is left running after ``stop``.
The data directory survives restarts, so a killed apiserver can be started
again on it. Issue 3's supervisor builds on this.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class ApiserverProcess:
    def __init__(self, data_dir: str | Path, run_dir: str | Path, *extra: str) -> None:
        self.data_dir = Path(data_dir)
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.endpoint = self.run_dir / "apiserver.endpoint"
        self.log = self.run_dir / "apiserver.log"
        self.extra = extra
        self.proc: subprocess.Popen | None = None
        self.address = ""

    def start(self, timeout: float = 60.0, listen: str = "tcp://127.0.0.1:0") -> float:
        """Start and wait until it serves; returns the seconds that took."""
        if self.endpoint.exists():
            self.endpoint.unlink()
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "control.apiserver", "--data-dir", str(self.data_dir),
             "--listen", listen, "--endpoint-file", str(self.endpoint),
             "--log-file", str(self.log), *self.extra],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = t0 + timeout
        while not self.endpoint.exists():
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"apiserver exited with {self.proc.returncode}: {err.strip()} "
                                   f"(log: {self.log})")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"apiserver did not serve within {timeout:g}s (log: {self.log})")
            time.sleep(0.005)
        self.address = self.endpoint.read_text().strip()
        return time.monotonic() - t0

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._close_pipes()

    def stop(self, grace: float = 10.0) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_pipes()

    def _close_pipes(self) -> None:
        if self.proc and self.proc.stderr:
            self.proc.stderr.close()
