"""``kemu apiserver`` and ``kemu bench`` reject bad flags with a message that names the flag."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def kemu(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("args, code, needle", [
    (["--listen", "http://127.0.0.1:1"], 1, "--listen"),
    (["--listen", "mem://x"], 1, "--listen"),
    (["--max-frame-bytes", "10"], 1, "--max-frame-bytes"),
    (["--snapshot-every", "0"], 1, "--snapshot-every"),
    (["--snapshot-every", "often"], 2, "--snapshot-every"),
    (["--history-size", "0"], 1, "--history-size"),
    (["--default-toleration-seconds", "-5"], 1, "--default-toleration-seconds"),
    (["--bookmark-interval", "0"], 1, "--bookmark-interval"),
    (["--bookmark-interval", "-1"], 1, "--bookmark-interval"),
    (["--bookmark-interval", "soon"], 2, "--bookmark-interval"),
    (["--event-ttl", "an hour"], 2, "--event-ttl"),
])
def test_apiserver_bad_flags(tmp_path: Path, args: list[str], code: int, needle: str) -> None:
    r = kemu("apiserver", "--data-dir", str(tmp_path / "d"), *args)
    assert r.returncode == code, r.stderr
    assert needle in r.stderr


def test_apiserver_unusable_data_dir(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("not a directory")
    r = kemu("apiserver", "--data-dir", str(f), "--listen", "tcp://127.0.0.1:0")
    assert r.returncode == 1 and "--data-dir" in r.stderr


def test_apiserver_requires_data_dir() -> None:
    r = kemu("apiserver")
    assert r.returncode == 2 and "--data-dir" in r.stderr


@pytest.mark.parametrize("args, needle", [
    (["apiserver", "--seconds", "-1"], "--seconds"),
    (["watch", "--watchers", "many"], "--watchers"),
    (["nonsense"], "invalid choice"),
])
def test_bench_bad_flags(args: list[str], needle: str) -> None:
    r = kemu("bench", *args)
    assert r.returncode == 2 and needle in r.stderr
