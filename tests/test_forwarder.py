"""kube-proxy's forwarding data path (``node.proxy.forwarder``), on real loopback sockets.

Each test builds a ``rules.Table`` by hand, starts a Forwarder on it and
talks to real TCP servers standing in for pods (threads on 127.64.x.y).
"""
from __future__ import annotations

import hashlib
import os
import socket
import threading
from typing import Callable, Iterator

import pytest

from emulator import netem  # noqa: F401 (the fixture type)
import structlog

from node.proxy import rules
from node.proxy.forwarder import Forwarder
from node.proxy.relay import CHUNK, NotLoopbackError, check_loopback, listen_socket
from tests.conftest import poll_for

POD_A = "127.64.250.11"
POD_B = "127.64.250.12"
NODE_IP = "127.32.250.1"


def free_port(ip: str) -> int:
    s = socket.socket()
    try:
        s.bind((ip, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def cluster_ip() -> str:
    """A ClusterIP no other test in this process uses at the same time."""
    n = int.from_bytes(os.urandom(2), "big")
    return f"127.110.{n >> 8}.{(n & 0xFF) or 1}"


class Backend:
    """A TCP server on a pod-like address: ``handler(conn)`` in a thread per connection."""

    def __init__(self, ip: str, handler: Callable[[socket.socket], None], rcvbuf: int | None = None,
                 port: int = 0) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind((ip, port))
        self.sock.listen(64)
        self.ip, self.port = ip, self.sock.getsockname()[1]
        self.handler = handler
        self.threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []
        self.accepted = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            t = threading.Thread(target=self._handle, args=(c,), daemon=True)
            self.threads.append(t)
            t.start()

    def _handle(self, c: socket.socket) -> None:
        try:
            c.settimeout(20)
            self.handler(c)
        except BaseException as e:   # surfaced by the test
            self.errors.append(e)
        finally:
            c.close()

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(5)
        for t in self.threads:
            t.join(5)


def endpoint(b: Backend) -> rules.Endpoint:
    return rules.Endpoint(b.ip, b.port, "n1", True, True, False, f"KUBE-SEP-{b.port}")


def table(cip: str, port: int, eps: list[rules.Endpoint], node_port: int | None = None,
          node_ip: str = NODE_IP) -> rules.Table:
    sp = rules.ServicePort("default/web:http", "default", "web", "http", "TCP", cip, port, node_port,
                           "KUBE-SVC-TEST", tuple(eps))
    return rules.Table("n1", node_ip, (sp,))


def recv_all(s: socket.socket) -> bytes:
    out = bytearray()
    while True:
        d = s.recv(1 << 16)
        if not d:
            return bytes(out)
        out += d


def expect_reset(addr: tuple[str, int]) -> None:
    """The proxy accepts, then resets: the client sees it at connect (when the reset is that
    quick) or at its next read."""
    with pytest.raises(ConnectionResetError):
        with socket.create_connection(addr, timeout=10) as c:
            c.sendall(b"GET / HTTP/1.0\r\n\r\n")
            recv_all(c)


def echo(c: socket.socket) -> None:
    while True:
        d = c.recv(1 << 16)
        if not d:
            break
        c.sendall(d)
    c.shutdown(socket.SHUT_WR)


def ident(name: bytes) -> Callable[[socket.socket], None]:
    def handler(c: socket.socket) -> None:
        c.sendall(name)
        c.shutdown(socket.SHUT_WR)
        recv_all(c)
    return handler


@pytest.fixture
def fwd() -> Iterator[Forwarder]:
    f = Forwarder("n1", NODE_IP, connect_timeout=0.3, connect_attempts=2, log_interval=0.05).start()
    yield f
    f.stop()


@pytest.fixture
def backends() -> Iterator[list[Backend]]:
    made: list[Backend] = []
    yield made
    for b in made:
        b.close()
    for b in made:
        assert not b.errors, b.errors


def test_large_payload_both_ways(fwd: Forwarder, backends: list[Backend]) -> None:
    b = Backend(POD_A, echo)
    backends.append(b)
    cip, port = cluster_ip(), 18080
    assert fwd.update(table(cip, port, [endpoint(b)])).result(5) == [(cip, port)]
    payload = os.urandom(8 << 20)
    c = socket.create_connection((cip, port), timeout=20)
    sender = threading.Thread(target=lambda: (c.sendall(payload), c.shutdown(socket.SHUT_WR)), daemon=True)
    sender.start()
    got = recv_all(c)   # reads while the sender still sends: both directions at once
    sender.join(10)
    c.close()
    assert len(got) == len(payload) and got == payload
    st = poll_for(lambda: (s := fwd.stats((cip, port)))["closed"] == 1 and s, 5, what="connection closed")
    assert st["opened"] == 1 and st["bytes_in"] == len(payload) and st["bytes_out"] == len(payload)


def test_half_close_client_still_receives_the_reply(fwd: Forwarder, backends: list[Backend]) -> None:
    reply = os.urandom(2 << 20)

    def digest_then_reply(c: socket.socket) -> None:
        data = recv_all(c)                                # until the client's FIN, passed on
        c.sendall(hashlib.sha256(data).digest() + reply)  # the other direction still open
        c.shutdown(socket.SHUT_WR)

    b = Backend(POD_A, digest_then_reply)
    backends.append(b)
    cip, port = cluster_ip(), 18081
    fwd.update(table(cip, port, [endpoint(b)])).result(5)
    request = os.urandom(300_000)
    c = socket.create_connection((cip, port), timeout=20)
    c.sendall(request)
    c.shutdown(socket.SHUT_WR)
    got = recv_all(c)
    c.close()
    assert got[:32] == hashlib.sha256(request).digest()
    assert got[32:] == reply


def test_slow_reader_pauses_the_relay(fwd: Forwarder, backends: list[Backend]) -> None:
    release = threading.Event()
    received: list[bytes] = []

    def slow(c: socket.socket) -> None:
        release.wait(20)
        received.append(hashlib.sha256(recv_all(c)).digest())
        c.shutdown(socket.SHUT_WR)

    b = Backend(POD_A, slow, rcvbuf=32 * 1024)
    backends.append(b)
    cip, port = cluster_ip(), 18082
    fwd.update(table(cip, port, [endpoint(b)])).result(5)
    c = socket.create_connection((cip, port), timeout=20)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 * 1024)
    c.setblocking(False)
    h = hashlib.sha256()
    block = os.urandom(CHUNK)
    sent = 0

    def push_until_paused() -> bool:
        nonlocal sent
        while True:
            try:
                n = c.send(block)
            except BlockingIOError:
                break
            h.update(block[:n])
            sent += n
        conns = fwd.connections()
        return bool(conns) and conns[0]["up"] is not None and not conns[0]["up"]["reading"]

    poll_for(push_until_paused, 15, what="the relay to stop reading from the client")
    (conn,) = fwd.connections()
    assert conn["up"]["pending"] <= CHUNK          # what the relay holds is bounded ...
    before = fwd.stats((cip, port))["bytes_in"]
    with pytest.raises(BlockingIOError):            # ... and the client is pushed back by the kernel
        for _ in range(64):
            n = c.send(block)
            h.update(block[:n])
            sent += n
    assert fwd.stats((cip, port))["bytes_in"] - before <= 2 * CHUNK
    # the reader catches up: everything arrives, intact
    release.set()
    c.setblocking(True)
    c.settimeout(20)
    c.sendall(block)
    h.update(block)
    sent += len(block)
    c.shutdown(socket.SHUT_WR)
    assert recv_all(c) == b""
    c.close()
    poll_for(lambda: received, 10, what="the backend to read everything")
    assert received == [h.digest()]
    assert fwd.stats((cip, port))["bytes_in"] == sent


def test_endpoint_removed_new_connections_go_to_the_rest(fwd: Forwarder, backends: list[Backend]) -> None:
    a, b = Backend(POD_A, ident(b"a")), Backend(POD_B, ident(b"b"))
    backends.extend([a, b])
    cip, port = cluster_ip(), 18083

    def names(n: int) -> set[bytes]:
        out = set()
        for _ in range(n):
            with socket.create_connection((cip, port), timeout=10) as c:
                c.shutdown(socket.SHUT_WR)
                out.add(recv_all(c))
        return out

    fwd.update(table(cip, port, [endpoint(a), endpoint(b)])).result(5)
    assert names(40) == {b"a", b"b"}     # random choice: both (all 40 alike has odds 2^-39)
    established = socket.create_connection((cip, port), timeout=10)
    fwd.update(table(cip, port, [endpoint(b)])).result(5)
    assert names(20) == {b"b"}
    # a connection made before the change goes on (as conntrack keeps it)
    established.shutdown(socket.SHUT_WR)
    assert recv_all(established) in (b"a", b"b")
    established.close()


def test_endpoint_gone_resets_the_client(fwd: Forwarder) -> None:
    cip, port = cluster_ip(), 18084
    dead = rules.Endpoint(POD_A, free_port(POD_A), "n1", True, True, False, "KUBE-SEP-DEAD")
    fwd.update(table(cip, port, [dead])).result(5)
    expect_reset((cip, port))   # the proxy accepts, then resets: nothing listens there
    st = poll_for(lambda: (s := fwd.stats((cip, port)))["closed"] == 1 and s, 5, what="closed")
    assert st["refused"] == 1 and st["active"] == 0


def test_endpoint_that_never_answers_times_out_with_a_reset(fwd: Forwarder) -> None:
    # A listener whose accept queue is full drops new SYNs: the connect gets no answer.
    full = socket.socket()
    full.bind((POD_A, 0))
    full.listen(0)
    fillers = []
    try:
        for _ in range(2):
            f = socket.socket()
            f.setblocking(False)
            f.connect_ex(full.getsockname())
            fillers.append(f)
        cip, port = cluster_ip(), 18085
        ep = rules.Endpoint(POD_A, full.getsockname()[1], "n1", True, True, False, "KUBE-SEP-FULL")
        fwd.update(table(cip, port, [ep])).result(5)
        expect_reset((cip, port))   # after 2 attempts of 0.3 s
        st = poll_for(lambda: (s := fwd.stats((cip, port)))["closed"] == 1 and s, 5, what="closed")
        assert st["timeouts"] == 1 and st["refused"] == 0
    finally:
        for f in fillers:
            f.close()
        full.close()


def test_no_endpoints_no_listener_refused(fwd: Forwarder, backends: list[Backend]) -> None:
    b = Backend(POD_A, ident(b"a"))
    backends.append(b)
    cip, port = cluster_ip(), 18086
    assert fwd.update(table(cip, port, [])).result(5) == []
    with pytest.raises(ConnectionRefusedError):   # as the REJECT rule for a Service without endpoints
        socket.create_connection((cip, port), timeout=5)
    fwd.update(table(cip, port, [endpoint(b)])).result(5)
    with socket.create_connection((cip, port), timeout=5) as c:
        assert recv_all(c) == b"a"
    fwd.update(rules.Table("n1", NODE_IP, ())).result(5)   # the Service is gone: its listener too
    assert fwd.listening() == []
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((cip, port), timeout=5)


def test_node_port_listens_on_the_node_ip(fwd: Forwarder, backends: list[Backend]) -> None:
    b = Backend(POD_A, ident(b"a"))
    backends.append(b)
    cip, port, node_port = cluster_ip(), 18087, free_port(NODE_IP)
    assert sorted(fwd.update(table(cip, port, [endpoint(b)], node_port=node_port)).result(5)) == \
        sorted([(cip, port), (NODE_IP, node_port)])
    for addr in ((NODE_IP, node_port), (cip, port)):
        with socket.create_connection(addr, timeout=5) as c:
            assert recv_all(c) == b"a"
    with pytest.raises(ConnectionRefusedError):    # on the node IP only
        socket.create_connection(("127.32.250.2", node_port), timeout=5)


def test_only_loopback_addresses(fwd: Forwarder, backends: list[Backend]) -> None:
    assert check_loopback("127.96.0.1") == "127.96.0.1"
    for bad in ("10.96.0.1", "0.0.0.0", "::1", "not-an-ip"):
        with pytest.raises(NotLoopbackError):
            check_loopback(bad)
    with pytest.raises(NotLoopbackError, match="127.0.0.0/8"):
        listen_socket("0.0.0.0", 0)
    # a Service whose ClusterIP is not loopback gets no listener
    outside = table("10.96.0.10", 18088, [rules.Endpoint(POD_A, 80, "n1", True, True, False, "X")])
    assert fwd.update(outside).result(5) == []
    assert fwd.failed_listeners() == 1
    # an endpoint that is not loopback is never connected to: the client is reset
    cip, port = cluster_ip(), 18089
    fwd.update(table(cip, port, [rules.Endpoint("10.1.2.3", 80, "n1", True, True, False, "X")])).result(5)
    expect_reset((cip, port))


def test_counts_in_the_log(backends: list[Backend]) -> None:
    b = Backend(POD_A, ident(b"a"))
    backends.append(b)
    cip, port = cluster_ip(), 18090
    with structlog.testing.capture_logs() as logs:
        f = Forwarder("n1", NODE_IP, log_interval=0.05).start()
        try:
            f.update(table(cip, port, [endpoint(b)])).result(5)
            for _ in range(3):
                with socket.create_connection((cip, port), timeout=5) as c:
                    c.shutdown(socket.SHUT_WR)
                    assert recv_all(c) == b"a"

            def counted() -> object:
                return [e for e in list(logs) if e["event"] == "proxy_connections" and e["closed"] == 3]
            (line, *_) = poll_for(counted, 5, what="proxy_connections with 3 closed")
            assert line["service"] == "default/web:http" and line["address"] == f"{cip}:{port}"
            assert line["opened"] == 3 and line["active"] == 0 and line["bytes_out"] == 3
            f.update(table(cip, port, [endpoint(b)])).result(5)
        finally:
            f.stop()
    syncs = [e for e in logs if e["event"] == "proxy_forwarder_sync"]
    assert syncs[0]["listeners"] == 1 and syncs[0]["added"] == 1
    assert syncs[-1]["opened"] == 3 and syncs[-1]["closed"] == 3 and syncs[-1]["added"] == 0


def test_every_node_binds_the_cluster_ip_and_the_kernel_spreads_connections(
        backends: list[Backend]) -> None:
    """Two node proxies (here two Forwarders) share ClusterIP:port through SO_REUSEPORT; each
    relays with its own table. When one goes away, the other takes every new connection."""
    a, b = Backend(POD_A, ident(b"a")), Backend(POD_B, ident(b"b"))
    backends.extend([a, b])
    cip, port = cluster_ip(), 18091
    n1 = Forwarder("n1", "127.32.250.1").start()
    n2 = Forwarder("n2", "127.32.250.2").start()
    try:
        n1.update(table(cip, port, [endpoint(a)])).result(5)   # tables that differ show who relayed
        n2.update(table(cip, port, [endpoint(b)])).result(5)

        def names(n: int) -> list[bytes]:
            out = []
            for _ in range(n):
                with socket.create_connection((cip, port), timeout=5) as c:
                    c.shutdown(socket.SHUT_WR)
                    out.append(recv_all(c))
            return out

        assert set(names(40)) == {b"a", b"b"}
        # The client's side of each connection ends before the relay's side to the backend:
        # wait for n1 to have closed them all, or stopping it resets the last one under the
        # backend's feet (a race this test is not about).
        poll_for(lambda: n1.stats((cip, port))["active"] == 0, 10, what="n1's relayed connections closed")
        n1.stop()            # the node dies: its listener is gone with it
        assert set(names(20)) == {b"b"}
        assert n1.stats((cip, port))["opened"] + n2.stats((cip, port))["opened"] == 60
        poll_for(lambda: n2.stats((cip, port))["active"] == 0, 10, what="n2's relayed connections closed")
    finally:
        n1.stop()
        n2.stop()


def test_a_node_port_in_use_is_reported_and_retried(fwd: Forwarder, backends: list[Backend]) -> None:
    b = Backend(POD_A, ident(b"a"))
    backends.append(b)
    cip, port = cluster_ip(), 18092
    squatter = socket.socket()            # another process holds the NodePort on the node IP
    squatter.bind((NODE_IP, 0))
    squatter.listen(1)
    node_port = squatter.getsockname()[1]
    t = table(cip, port, [endpoint(b)], node_port=node_port)
    with structlog.testing.capture_logs() as logs:
        assert fwd.update(t).result(5) == [(cip, port)]   # the ClusterIP still works
    assert fwd.failed_listeners() == 1
    (warn,) = [e for e in logs if e["event"] == "proxy_listen_failed"]
    assert warn["address"] == f"{NODE_IP}:{node_port}" and warn["kind"] == "NodePort"
    assert "in use" in warn["error"]
    squatter.close()
    assert sorted(fwd.update(t).result(5)) == sorted([(cip, port), (NODE_IP, node_port)])   # retried
    assert fwd.failed_listeners() == 0
    with socket.create_connection((NODE_IP, node_port), timeout=5) as c:
        assert recv_all(c) == b"a"


# -- chaos on the forwarded link (emulator.netem rules of this node process) --
@pytest.fixture
def netem_table(monkeypatch: pytest.MonkeyPatch) -> "netem.LinkTable":
    from emulator import netem
    t = netem.LinkTable()
    monkeypatch.setattr(netem, "TABLE", t)
    return t


def remote_endpoint(b: Backend, node: str) -> rules.Endpoint:
    return rules.Endpoint(b.ip, b.port, node, True, True, False, f"KUBE-SEP-{b.port}")


def test_a_partition_times_connects_out_and_delay_holds_chunks_in_order(
        fwd: Forwarder, backends: list[Backend], netem_table: "netem.LinkTable") -> None:
    b = Backend(POD_A, echo)
    backends.append(b)
    cip, port = cluster_ip(), 18090
    fwd.update(table(cip, port, [remote_endpoint(b, "n2")])).result(5)
    # cut n1 <-> n2: the proxy's connects get no answer, the client is reset after the attempts
    netem_table.set_rules("n1", [{"peers": ["n2"], "drop": 1.0}])
    expect_reset((cip, port))
    st = poll_for(lambda: (s := fwd.stats((cip, port)))["closed"] == 1 and s, 5, what="closed")
    assert st["timeouts"] == 1 and b.accepted == 0
    # a delay on what n2 sends back: every byte still arrives, in order
    netem_table.set_rules("n1", [{"peers": ["n2"], "delay": {"mean": 0.02}, "dir": "in"}])
    payload = os.urandom(300_000)
    with socket.create_connection((cip, port), timeout=20) as c:
        sender = threading.Thread(target=lambda: (c.sendall(payload), c.shutdown(socket.SHUT_WR)),
                                  daemon=True)
        sender.start()
        got = recv_all(c)
        sender.join(10)
    assert got == payload and b.accepted == 1


def test_a_cut_mid_stream_stalls_and_resumes_when_healed(
        fwd: Forwarder, backends: list[Backend], netem_table: "netem.LinkTable") -> None:
    b = Backend(POD_A, echo)
    backends.append(b)
    cip, port = cluster_ip(), 18091
    fwd.update(table(cip, port, [remote_endpoint(b, "n2")])).result(5)
    with socket.create_connection((cip, port), timeout=20) as c:
        c.sendall(b"one")
        assert c.recv(16) == b"one"
        netem_table.set_rules("n1", [{"peers": ["n2"], "drop": 1.0}])
        c.sendall(b"two")
        c.settimeout(0.5)
        with pytest.raises(socket.timeout):
            c.recv(16)   # held while the link is cut
        netem_table.set_rules("n1", [])
        c.settimeout(10)
        assert c.recv(16) == b"two"
