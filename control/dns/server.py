"""The cluster DNS add-on: real DNS over UDP and TCP on loopback, from informers.

Contract
--------
* ``ClusterDNS(client, profile, domain="cluster.local", clock=time.monotonic)``
  is the component: ``start()`` lists and watches Services and
  EndpointSlices; ``step(timeout)`` handles events and, when something
  changed, rebuilds the whole ``records.Records`` snapshot and swaps it in
  with one attribute assignment. The DNS threads only ever read
  ``snapshot`` (an immutable object), so they need no lock and see either the
  old or the new snapshot, never a mix. A lost apiserver keeps the last
  snapshot (answers go stale, never missing) until the informers relist.
* ``serve(source, host="127.0.0.1", port=0)`` starts dnslib's threaded UDP
  and TCP servers on the same port (0: an ephemeral one, shared by both) and
  returns a ``DNSListener`` (``.host``, ``.port``, ``.stop()``). Only
  loopback addresses are accepted: the add-on never leaves the machine and
  never forwards (names outside the cluster domain are REFUSED).
* Answers (``ClusterResolver``): authoritative (AA=1, RA=0); NXDOMAIN and
  NODATA carry the zone's SOA in the authority section; SRV answers carry
  their targets' A records as additionals. Errors: a packet that does not
  parse gets FORMERR (when at least its id can be read; shorter garbage is
  dropped), more than one question FORMERR, an opcode other than QUERY
  NOTIMP, a class other than IN NOTIMP, AXFR/IXFR NOTIMP, any other unknown
  type NOERROR with no answers. Responses sent to the server are ignored.
  The server keeps serving whatever arrives.
* Faults (``faults.DNSFaults``, the ``dns-error`` chaos kind): a well-formed
  QUERY whose name matches an active rule gets the rule's rcode instead of
  its answer: SERVFAIL (AA=0, no records) or NXDOMAIN (AA=1, the zone's SOA
  in authority, as a real NXDOMAIN). ``build_reply(request, snapshot,
  faults=None)``, ``ClusterResolver(source, faults=None)`` and ``serve(...,
  faults=None)`` take the rules; without them nothing fails.
* ``run(server, profile_name, listen_host="127.0.0.1", port=0, log_path=None,
  lab=None, stop=None, port_file=None)`` is the process entry: it binds
  first (so ``port_file`` — written atomically as ``udp://HOST:PORT
  tcp://HOST:PORT`` — is there as soon as DNS answers, even before the
  apiserver is reached), then starts the informers, retrying while the
  apiserver is unreachable, and loops until ``stop``. Each snapshot swap logs
  ``dns_records_synced`` with ``records`` and ``duration_ms``. When the process
  serves a control socket (``emulator.ctl.current``), ``run`` registers the
  ``dns`` op (``DNSFaults.set``) before it binds, so a restarted add-on gets
  its faults back before its first answer.
"""
from __future__ import annotations

import ipaddress
import os
import struct
import time
from dataclasses import dataclass
from typing import Any, Callable

from dnslib import A, CNAME, QTYPE, RR, SOA, SRV, DNSError, DNSHeader, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSLogger, DNSServer

from control.dns import records as rec
from control.dns.faults import DNSFaults
from emulator import ctl
from emulator.api.errors import APIError
from emulator.component import start_with_backoff
from emulator.client import Client
from emulator.informer import Informer
from emulator.logging import configure, get_logger
from emulator.process import StopFlag, die_with_parent
from emulator.profiles import Profile, get_profile

QCLASS_IN, QCLASS_ANY = 1, 255
OPCODE_QUERY = 0
ZONE_TRANSFERS = {251, 252}   # IXFR, AXFR


def _rdata(r: rec.Record) -> Any:
    if r.rtype == "A":
        return A(r.data[0])
    if r.rtype == "SRV":
        return SRV(priority=r.data[0], weight=r.data[1], port=r.data[2], target=r.data[3] + ".")
    if r.rtype == "CNAME":
        return CNAME(r.data[0] + ".")
    mname, rname, serial, refresh, retry, expire, minimum = r.data
    return SOA(mname + ".", rname + ".", (serial, refresh, retry, expire, minimum))


def _rr(r: rec.Record) -> RR:
    return RR(r.name + ".", getattr(QTYPE, r.rtype), rdata=_rdata(r), ttl=r.ttl)


def build_reply(request: DNSRecord, snapshot: rec.Records, faults: DNSFaults | None = None) -> DNSRecord:
    """The whole answer to one parsed request (pure: no sockets)."""
    reply = DNSRecord(DNSHeader(id=request.header.id, qr=1, aa=1, ra=0, rd=request.header.rd,
                                opcode=request.header.opcode))
    for q in request.questions:
        reply.add_question(q)
    if request.header.opcode != OPCODE_QUERY:
        reply.header.rcode = rec.NOTIMP
        return reply
    if len(request.questions) != 1:
        reply.header.rcode = rec.FORMERR
        return reply
    q = request.q
    if q.qclass not in (QCLASS_IN, QCLASS_ANY) or q.qtype in ZONE_TRANSFERS:
        reply.header.rcode = rec.NOTIMP
        return reply
    failed = faults.match(str(q.qname)) if faults is not None else None
    if failed is not None:   # a dns-error fault: no records, the rule's rcode
        reply.header.rcode = failed
        reply.header.aa = 1 if failed == rec.NXDOMAIN else 0
        if failed == rec.NXDOMAIN:
            reply.add_auth(_rr(rec.soa(snapshot)))
        return reply
    qtype = QTYPE.get(q.qtype)
    qtype = qtype if isinstance(qtype, str) else f"TYPE{q.qtype}"
    rcode, answers = rec.answer(snapshot, str(q.qname), qtype)
    reply.header.rcode = rcode
    reply.header.aa = 1 if rcode != rec.REFUSED else 0
    for r in answers:
        reply.add_answer(_rr(r))
    for r in answers:
        if r.rtype == "SRV":
            for extra in snapshot.names.get(r.data[3], ()):
                if extra.rtype == "A":
                    reply.add_ar(_rr(extra))
    if rcode == rec.NXDOMAIN or (rcode == rec.NOERROR and not answers):
        reply.add_auth(_rr(rec.soa(snapshot)))
    return reply


def formerr(data: bytes) -> bytes | None:
    """A FORMERR reply to a packet that did not parse, or None when not even its id is there."""
    if len(data) < 2:
        return None
    rid = struct.unpack("!H", data[:2])[0]
    opcode = (data[2] >> 3) & 0xF if len(data) > 2 else 0
    return DNSRecord(DNSHeader(id=rid, qr=1, opcode=opcode, rcode=rec.FORMERR)).pack()


class ClusterResolver(BaseResolver):
    def __init__(self, source: Callable[[], rec.Records], faults: DNSFaults | None = None) -> None:
        self.source = source
        self.faults = faults

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        return build_reply(request, self.source(), self.faults)


class _Handler(DNSHandler):
    """dnslib's handler, with FORMERR for garbage and SERVFAIL for our own bugs."""

    def get_reply(self, data: bytes) -> bytes:
        data = bytes(data)
        if len(data) >= 3 and data[2] & 0x80:
            raise DNSError("response ignored")   # never answer a response (no loops)
        try:
            request = DNSRecord.parse(data)
        except Exception:
            out = formerr(data)
            if out is None:
                raise DNSError("packet too short")
            self.server.logger.formerr += 1
            return out
        try:
            reply = self.server.resolver.resolve(request, self)
        except Exception as e:   # keep serving; report the bug
            get_logger().error("dns_resolve_failed", qname=str(request.q.qname), error=repr(e))
            reply = request.reply()
            reply.header.rcode = rec.SERVFAIL
        return reply.pack()


class _QuietLogger(DNSLogger):
    """dnslib prints every query by default; we only count errors."""

    def __init__(self) -> None:
        super().__init__(log="-request,-reply,-truncated,-error,-recv,-send,-data")
        self.formerr = 0
        self.errors = 0

    def log_error(self, handler: Any, e: Any) -> None:
        self.errors += 1


@dataclass
class DNSListener:
    host: str
    port: int
    udp: DNSServer
    tcp: DNSServer

    def stop(self) -> None:
        for s in (self.udp, self.tcp):
            s.server.shutdown()
            s.server.server_close()

    @property
    def address(self) -> str:
        return f"udp://{self.host}:{self.port} tcp://{self.host}:{self.port}"


def check_loopback(host: str) -> str:
    try:
        ok = ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"dns: refusing to listen on {host!r}: only loopback addresses are allowed")
    return host


def serve(source: Callable[[], rec.Records], host: str = "127.0.0.1", port: int = 0,
          resolver: BaseResolver | None = None, handler: type[DNSHandler] | None = None,
          tries: int = 20, faults: DNSFaults | None = None) -> DNSListener:
    """Start UDP and TCP servers on one port of ``host`` (loopback only).

    ``resolver``/``handler`` replace ours (the benchmark's constant-answer baseline).
    """
    check_loopback(host)
    resolver = resolver or ClusterResolver(source, faults)
    handler = handler or _Handler
    last: Exception | None = None
    for _ in range(tries if port == 0 else 1):
        logger = _QuietLogger()
        udp = DNSServer(resolver, address=host, port=port, logger=logger, handler=handler)
        bound = udp.server.server_address[1]
        try:
            tcp = DNSServer(resolver, address=host, port=bound, tcp=True, logger=logger, handler=handler)
        except OSError as e:   # the TCP side of that port is taken: pick another pair
            udp.server.server_close()
            last = e
            continue
        udp.start_thread()
        tcp.start_thread()
        return DNSListener(host, bound, udp, tcp)
    raise OSError(f"dns: no port free for both UDP and TCP on {host}: {last}")


class ClusterDNS:
    def __init__(self, client: Client, profile: Profile, domain: str = "cluster.local",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.profile = profile
        self.domain = domain
        self.clock = clock
        self.log = get_logger()
        self.services = Informer(client, "Service", clock=clock)
        self.slices = Informer(client, "EndpointSlice", clock=clock)
        for inf in (self.services, self.slices):
            inf.add_event_handler(self._changed, lambda _o, _n: self._changed(), lambda _o: self._changed())
        self.snapshot: rec.Records = rec.build_records([], [], domain)
        self.dirty = False
        self.syncs = 0

    def _changed(self, *_: Any) -> None:
        self.dirty = True

    def records(self) -> rec.Records:
        return self.snapshot

    def start(self) -> None:
        self.services.start()
        self.slices.start()
        self.rebuild()

    def step(self, timeout: float) -> None:
        try:
            self.client.poll(timeout)
            self.services.process()
            self.slices.process()
        except (APIError, ConnectionError) as e:
            self.log.warning("apiserver_unavailable", error=str(e))
            return
        if self.dirty:
            self.rebuild()

    def rebuild(self) -> None:
        if not (self.services.has_synced and self.slices.has_synced):
            return
        t0 = time.perf_counter()
        self.dirty = False
        snap = rec.build_records(self.services.list(), self.slices.list(), self.domain)
        self.snapshot = snap   # one reference swap: readers see old or new, never a mix
        self.syncs += 1
        self.log.info("dns_records_synced", records=len(snap),
                      duration_ms=round((time.perf_counter() - t0) * 1000, 3))

    def stop(self) -> None:
        self.services.stop()
        self.slices.stop()


def write_port_file(path: str, listener: DNSListener) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(listener.address + "\n")
    os.replace(tmp, path)


def run(server: str, profile_name: str = "default", listen_host: str = "127.0.0.1", port: int = 0,
        log_path: str | None = None, lab: str | None = None, stop: Any = None,
        port_file: str | None = None, domain: str = "cluster.local") -> int:
    """The dns add-on process; see the module docstring."""
    die_with_parent()
    configure("dns", lab=lab, path=log_path)
    log = get_logger()
    stop = stop if stop is not None else StopFlag()
    profile = get_profile(profile_name)
    client = Client(server, component="dns", lab=lab)
    dns = ClusterDNS(client, profile, domain=domain)
    faults = DNSFaults()
    if ctl.current is not None:
        ctl.current.add_handler("dns", faults.set)
    listener = serve(dns.records, listen_host, port, faults=faults)
    if port_file:
        write_port_file(port_file, listener)
    log.info("dns_listening", address=listener.address, domain=domain)
    try:
        start_with_backoff(dns.start, stop, log)
        while not stop:
            dns.step(0.1)
    finally:
        listener.stop()
        client.close()
        log.info("dns_stopped")
    return 0


def query(host: str, port: int, name: str, qtype: str = "A", tcp: bool = False,
          timeout: float = 2.0) -> DNSRecord:
    """Ask one question (dnslib's client side), for tests, benches and debugging."""
    check_loopback(host)
    q = DNSRecord.question(name, qtype)
    return DNSRecord.parse(q.send(host, port, tcp=tcp, timeout=timeout))


__all__ = ["ClusterDNS", "ClusterResolver", "DNSFaults", "DNSListener", "build_reply", "formerr", "query", "run",
           "serve"]
