"""``kemu image build-test-images``: the docker runtime's test images, built locally.

Contract
--------
No registry can be reached, so nothing is ever pulled. ``build_test_images``
builds ``kemu/busybox:latest`` ``FROM scratch`` with Debian's static busybox
(``/bin/busybox`` from the ``busybox-static`` package) and a symlink for each
of its applets at the path ``busybox --list-full`` gives (``/bin/sh``,
``/usr/sbin/httpd``, ...), through the docker SDK's build API and a temporary
context directory. It also tags ``busybox:latest`` unless the engine already
has a ``busybox:latest`` that kemu did not build (a real busybox image is as
good, and is left alone).

Idempotent: the image carries the label ``io.kemu.busybox.sha256`` (the hash
of the busybox binary it holds); when ``kemu/busybox:latest`` already carries
the hash of the host's busybox nothing is rebuilt. A missing
``busybox-static`` is a clear error naming the package to install.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Any

IMAGE = "kemu/busybox:latest"
ALIAS = "busybox:latest"
BUSYBOX = "/bin/busybox"
HASH_LABEL = "io.kemu.busybox.sha256"
DOCKERFILE = f"""FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
LABEL io.kemu.test-image="busybox"
LABEL {HASH_LABEL}="{{sha}}"
CMD ["sh"]
"""


class ImageBuildError(RuntimeError):
    """The test images cannot be built; the message says what to do."""


def static_busybox(path: str = BUSYBOX) -> str:
    """The path of a statically linked busybox, or ImageBuildError naming the fix."""
    fix = ("install Debian's busybox-static: apt-get install -y busybox-static "
           "(or run `make docker-engine`)")
    if not os.path.isfile(path):
        raise ImageBuildError(f"{path} not found: {fix}")
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    if not head.startswith(b"\x7fELF") or b"/lib64/ld-linux" in head or b"/lib/ld-linux" in head:
        raise ImageBuildError(f"{path} is not a static busybox (FROM scratch has no libc): {fix}")
    return path


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _applets(busybox: str) -> list[str]:
    """Applet paths relative to / (``bin/sh``, ``usr/sbin/httpd``...)."""
    out = subprocess.run([busybox, "--list-full"], capture_output=True, text=True, check=False)
    paths = [p.strip().lstrip("/") for p in out.stdout.splitlines() if p.strip()]
    if not paths:   # an old busybox without --list-full: everything in /bin
        out = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True)
        paths = ["bin/" + p.strip() for p in out.stdout.splitlines() if p.strip()]
    return paths


def make_context(ctx: str, busybox: str, sha: str) -> None:
    """Write the build context: a Dockerfile and rootfs/ (busybox, applet links, /etc, /tmp)."""
    root = os.path.join(ctx, "rootfs")
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "tmp", "root", "var/www"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    os.chmod(os.path.join(root, "tmp"), 0o1777)
    shutil.copy2(busybox, os.path.join(root, "bin", "busybox"))
    os.chmod(os.path.join(root, "bin", "busybox"), 0o755)
    for rel in _applets(busybox):
        if rel in ("bin/busybox", ""):
            continue
        dst = os.path.join(root, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if not os.path.lexists(dst):
            os.symlink("/bin/busybox", dst)
    with open(os.path.join(root, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
    with open(os.path.join(root, "etc", "group"), "w") as f:
        f.write("root:x:0:\nnogroup:x:65534:\n")
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write(DOCKERFILE.format(sha=sha))


def _client(client: Any = None) -> Any:
    if client is not None:
        return client
    import docker
    try:
        c = docker.from_env()
        c.ping()
        return c
    except Exception as e:   # docker.errors.DockerException and connection errors
        raise ImageBuildError(f"no Docker engine answers ({e}): run `make docker-engine`") from e


def build_test_images(client: Any = None, busybox: str = BUSYBOX, force: bool = False) -> list[str]:
    """Build (or find up to date) the test images; return the tags that now exist."""
    import docker
    bb = static_busybox(busybox)
    sha = _sha256(bb)
    c = _client(client)
    tags = [IMAGE]
    image = None
    if not force:
        try:
            existing = c.images.get(IMAGE)
            if (existing.labels or {}).get(HASH_LABEL) == sha:
                image = existing
        except docker.errors.ImageNotFound:
            pass
    if image is None:
        with tempfile.TemporaryDirectory(prefix="kemu-image-") as ctx:
            make_context(ctx, bb, sha)
            try:
                image, _logs = c.images.build(path=ctx, tag=IMAGE, rm=True, forcerm=True, pull=False)
            except docker.errors.BuildError as e:
                raise ImageBuildError(f"building {IMAGE} failed: {e}") from e
    try:
        alias = c.images.get(ALIAS)
        ours = HASH_LABEL in (alias.labels or {})
    except docker.errors.ImageNotFound:
        alias, ours = None, True
    if ours and (alias is None or alias.id != image.id):
        image.tag("busybox", "latest")
    if ours:
        tags.append(ALIAS)
    return tags


def add_parser(sub: Any) -> None:
    p = sub.add_parser("image", help="local container images for the docker runtime")
    isub = p.add_subparsers(dest="image_command", metavar="SUBCOMMAND")
    isub.required = True
    b = isub.add_parser("build-test-images",
                        help=f"build {IMAGE} (and {ALIAS}) FROM scratch with Debian's static busybox")
    b.add_argument("--busybox", default=BUSYBOX, help="the static busybox binary to use")
    b.add_argument("--force", action="store_true", help="rebuild even when the image is up to date")
    b.set_defaults(func=_cmd_build)


def _cmd_build(args: argparse.Namespace) -> int:
    try:
        tags = build_test_images(busybox=args.busybox, force=args.force)
    except ImageBuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for t in tags:
        print(f"image/{t} built")
    return 0
