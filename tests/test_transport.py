"""Both transport backends honour one contract."""
import itertools

import pytest

from emulator import transport
from tests.conftest import poll_for

_n = itertools.count()


@pytest.fixture(params=["tcp", "mem"])
def address(request: pytest.FixtureRequest) -> str:
    return "tcp://127.0.0.1:0" if request.param == "tcp" else f"mem://t{next(_n)}"


def test_frames_round_trip_in_order_per_peer(address: str) -> None:
    srv = transport.listen(address)
    a, b = transport.connect(srv.address), transport.connect(srv.address)
    try:
        for i in range(50):
            a.send(b"a%d" % i)
            b.send(b"b%d" % i)
        got: list[tuple[bytes, bytes]] = []
        poll_for(lambda: got.extend(srv.recv_batch(0.05)) or len(got) == 100, 5, what="100 frames")
        peers = {p for p, _ in got}
        assert len(peers) == 2
        for p in peers:
            frames = [f for q, f in got if q == p]
            prefix = frames[0][:1]
            assert frames == [prefix + b"%d" % i for i in range(50)]
            assert srv.send(p, b"reply-" + prefix)
        assert a.recv(5) == b"reply-a"
        assert b.recv(5) == b"reply-b"
        assert a.recv(0.01) is None
    finally:
        a.close(), b.close(), srv.close()


def test_send_to_a_departed_peer_returns_false(address: str) -> None:
    srv = transport.listen(address)
    c = transport.connect(srv.address)
    try:
        c.send(b"hi")
        batch: list = []
        poll_for(lambda: batch.extend(srv.recv_batch(0.05)) or batch, 5, what="a frame")
        peer = batch[0][0]
        c.close()
        poll_for(lambda: not srv.send(peer, b"x"), 5, what="send to a closed peer to fail")
        assert not srv.send(b"\x00no-such-peer", b"x")
    finally:
        srv.close()


def test_reconnect_gets_a_new_identity(address: str) -> None:
    srv = transport.listen(address)
    c = transport.connect(srv.address)
    try:
        c.send(b"1")
        first: list = []
        poll_for(lambda: first.extend(srv.recv_batch(0.05)) or first, 5)
        c.reconnect()
        c.send(b"2")
        second: list = []
        poll_for(lambda: second.extend(srv.recv_batch(0.05)) or second, 5)
        assert first[0][0] != second[0][0]
        assert srv.send(second[0][0], b"ok") and c.recv(5) == b"ok"
    finally:
        c.close(), srv.close()


def test_bad_addresses_are_explained() -> None:
    assert "tcp://, ipc:// or mem://" in transport.check_address("http://x")
    assert "tcp://HOST:PORT" in transport.check_address("tcp://127.0.0.1")
    assert transport.check_address("tcp://127.0.0.1:6443") is None


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:1", "mem://nobody-listens"])
def test_send_with_no_server_fails_fast(address: str) -> None:
    c = transport.connect(address)
    try:
        with pytest.raises(ConnectionError) as e:
            c.send(b"hello?")
        assert address in str(e.value)
    finally:
        c.close()


def test_the_listener_asks_for_a_listen_backlog_a_big_lab_fits_in() -> None:
    """ZeroMQ's default backlog (100) overflowed when 10,000 nodes connected at once."""
    import zmq

    from emulator.transport.zmq import LISTEN_BACKLOG, ZmqListener
    lst = ZmqListener("tcp://127.0.0.1:0")
    try:
        assert lst.sock.getsockopt(zmq.BACKLOG) == LISTEN_BACKLOG >= 4096
    finally:
        lst.close()


def test_a_client_can_wait_longer_for_its_connection_than_the_default() -> None:
    """A big lab's own client connects while thousands of nodes do: it must not give up
    a connection in the making after 1 s (and queue again behind them)."""
    from emulator.client import Client
    c = Client("tcp://127.0.0.1:1", connect_timeout=15.0)
    d = Client("tcp://127.0.0.1:1")
    try:
        conn = getattr(c._conn, "inner", c._conn)
        assert conn.connect_timeout == 15.0
        assert getattr(d._conn, "inner", d._conn).connect_timeout == 1.0
    finally:
        c.close()
        d.close()


def test_a_wait_under_a_millisecond_is_not_truncated_to_no_wait() -> None:
    from emulator.transport.zmq import poll_ms
    assert poll_ms(0.0004) == 1 and poll_ms(0.0005) == 1   # truncated, these were 0: a spin
    assert poll_ms(0.2) == 200 and poll_ms(0.0011) == 2
    assert poll_ms(0) == 0 and poll_ms(-1) == 0   # 0: look, do not wait
