"""``make demo``: start an apiserver, apply the example manifests, list them, stop.

Contract: everything it starts it stops, even on failure; it exits non-zero if
any step fails. It grows with the project (issue 3 adds a lab of nodes).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from lab.processes import ApiserverProcess

ROOT = Path(__file__).resolve().parent.parent


def kemu(server: str, *args: str) -> int:
    print(f"$ kemu {' '.join(args)}", flush=True)
    return subprocess.call([sys.executable, "-m", "lab.cli", *args, "--server", server], cwd=ROOT)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="kemu-demo-") as tmp:
        api = ApiserverProcess(os.path.join(tmp, "store"), os.path.join(tmp, "run"))
        try:
            seconds = api.start()
            print(f"apiserver serving at {api.address} (started in {seconds:.2f}s)\n", flush=True)
            steps = [
                ("apply", "-f", str(ROOT / "examples")),
                ("get", "namespaces"),
                ("get", "pods", "-A", "-o", "wide"),
                ("get", "configmaps", "-n", "demo"),
                ("get", "secrets", "-n", "demo"),
                ("create", "configmap", "extra", "-n", "demo", "--from-literal", "k=v"),
                ("label", "pod", "web-0", "-n", "demo", "tier=frontend"),
                ("get", "pods", "-n", "demo", "-l", "tier=frontend", "-o", "name"),
                ("describe", "pod", "web-0", "-n", "demo"),
                ("delete", "pod", "web-0", "-n", "demo"),
                ("get", "pods", "-n", "demo"),
            ]
            for step in steps:
                rc = kemu(api.address, *step)
                print(flush=True)
                if rc != 0:
                    print(f"demo step failed with exit code {rc}: kemu {' '.join(step)}", file=sys.stderr)
                    return rc
            return 0
        finally:
            api.stop()


if __name__ == "__main__":
    sys.exit(main())
