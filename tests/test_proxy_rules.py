"""kube-proxy's pure rules table and its iptables-save rendering."""
from __future__ import annotations

from node.proxy import rules


def service(name: str = "web", ns: str = "default", cluster_ip: str = "127.96.0.10",
            ports: list[dict] | None = None, **spec: object) -> dict:
    return {"metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": cluster_ip, "type": "ClusterIP",
                     "ports": ports if ports is not None else [{"name": "http", "port": 80, "protocol": "TCP",
                                                                "targetPort": 8080}], **spec}}


def ep(ip: str, ready: bool = True, serving: bool | None = None, terminating: bool = False,
       node: str = "n1") -> dict:
    return {"addresses": [ip], "nodeName": node,
            "conditions": {"ready": ready, "serving": ready if serving is None else serving,
                           "terminating": terminating}}


def eps_slice(svc: str, endpoints: list[dict], port: int = 8080, name: str = "http", ns: str = "default",
              slice_name: str = "s1") -> dict:
    return {"metadata": {"name": slice_name, "namespace": ns, "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4", "endpoints": endpoints,
            "ports": [{"name": name, "port": port, "protocol": "TCP"}]}


def test_chain_names_are_kubernetes() -> None:
    spn = rules.service_port_name("kube-system", "kube-dns", "dns-tcp")
    assert rules.service_chain(spn, "TCP") == "KUBE-SVC-ERIFXISQEP7F7OF4"
    assert rules.service_chain(rules.service_port_name("kube-system", "kube-dns", "dns"), "UDP") == \
        "KUBE-SVC-TCOU7JCQXEZGVUNU"
    assert rules.endpoint_chain(spn, "TCP", "10.0.0.1:53").startswith("KUBE-SEP-")
    assert len(rules.endpoint_chain(spn, "TCP", "10.0.0.1:53")) == len("KUBE-SEP-") + 16


def test_probabilities_as_iptables_chooses() -> None:
    sl = eps_slice("web", [ep("127.64.1.7"), ep("127.64.1.5"), ep("127.64.1.6")])
    t = rules.compute_table([service()], [sl], "n1")
    (sp,) = t.services
    assert [e.ip for e in sp.endpoints] == ["127.64.1.5", "127.64.1.6", "127.64.1.7"]
    assert [e.probability for e in sp.endpoints] == [1 / 3, 1 / 2, None]
    text = rules.render_iptables(t)
    assert f"-A KUBE-SERVICES -d 127.96.0.10/32 -p tcp -m tcp --dport 80 -j {sp.chain}" in text
    assert f"-A {sp.chain} -m statistic --mode random --probability 0.33333333349 -j " \
           f"{sp.endpoints[0].chain}" in text
    assert f"-A {sp.chain} -m statistic --mode random --probability 0.50000000000 -j " \
           f"{sp.endpoints[1].chain}" in text
    assert f"-A {sp.chain} -j {sp.endpoints[2].chain}" in text
    assert f"-A {sp.endpoints[0].chain} -p tcp -m tcp -j DNAT --to-destination 127.64.1.5:8080" in text


def test_ready_only_then_terminating_fallback() -> None:
    sl = eps_slice("web", [ep("127.64.1.5"), ep("127.64.1.6", ready=False),
                           ep("127.64.1.7", ready=False, serving=True, terminating=True)])
    (sp,) = rules.compute_table([service()], [sl], "n1").services
    assert [e.ip for e in sp.endpoints] == ["127.64.1.5"]
    sl = eps_slice("web", [ep("127.64.1.6", ready=False),
                           ep("127.64.1.7", ready=False, serving=True, terminating=True)])
    (sp,) = rules.compute_table([service()], [sl], "n1").services
    assert [e.ip for e in sp.endpoints] == ["127.64.1.7"]


def test_no_endpoints_rejects() -> None:
    t = rules.compute_table([service()], [], "n1")
    assert t.services[0].endpoints == ()
    text = rules.render_iptables(t)
    assert '-A KUBE-SERVICES -d 127.96.0.10/32 -p tcp -m comment --comment "default/web:http has no ' \
           'endpoints" -m tcp --dport 80 -j REJECT' in text


def test_headless_and_external_name_skipped_nodeport_on_node_ip() -> None:
    svcs = [service("headless", cluster_ip="None"),
            {"metadata": {"name": "ext", "namespace": "default"},
             "spec": {"type": "ExternalName", "externalName": "example.com"}},
            service("np", cluster_ip="127.96.0.11", type="NodePort",
                    ports=[{"name": "", "port": 80, "protocol": "TCP", "nodePort": 30080}])]
    sl = eps_slice("np", [ep("127.64.1.5")], name="")
    t = rules.compute_table(svcs, [sl], "n1", node_ip="127.0.0.2")
    assert [s.service for s in t.services] == ["np"]
    assert t.services[0].name == "default/np"
    text = rules.render_iptables(t)
    assert f"-A KUBE-NODEPORTS -d 127.0.0.2/32 -p tcp -m tcp --dport 30080 -j {t.services[0].chain}" in text


def test_internal_traffic_policy_local() -> None:
    sl = eps_slice("web", [ep("127.64.1.5", node="n1"), ep("127.64.2.5", node="n2")])
    (sp,) = rules.compute_table([service(internalTrafficPolicy="Local")], [sl], "n2").services
    assert [e.ip for e in sp.endpoints] == ["127.64.2.5"]


def test_deterministic_and_comparable_between_nodes() -> None:
    svcs = [service("b", cluster_ip="127.96.0.12"), service("a", cluster_ip="127.96.0.11")]
    slices = [eps_slice("a", [ep("127.64.1.5"), ep("127.64.2.5")], slice_name="a1"),
              eps_slice("b", [ep("127.64.3.5")], slice_name="b1")]
    t1 = rules.render_iptables(rules.compute_table(svcs, slices, "n1"))
    t2 = rules.render_iptables(rules.compute_table(list(reversed(svcs)), list(reversed(slices)), "n2"))
    assert t1 == t2
    assert t1.startswith("*filter\n") and t1.endswith("COMMIT\n")


def test_port_matched_by_name_across_slices_and_deduplicated() -> None:
    s = service(ports=[{"name": "http", "port": 80, "protocol": "TCP"},
                       {"name": "metrics", "port": 9100, "protocol": "TCP"}])
    slices = [eps_slice("web", [ep("127.64.1.5")], port=8080, name="http", slice_name="s1"),
              eps_slice("web", [ep("127.64.1.5")], port=8080, name="http", slice_name="s2"),
              eps_slice("web", [ep("127.64.1.6")], port=9100, name="metrics", slice_name="s3")]
    t = rules.compute_table([s], slices, "n1")
    assert {sp.port_name: [(e.ip, e.port) for e in sp.endpoints] for sp in t.services} == \
        {"http": [("127.64.1.5", 8080)], "metrics": [("127.64.1.6", 9100)]}


def test_iptables_probability_format() -> None:
    assert rules.iptables_probability(1 / 3) == "0.33333333349"
    assert rules.iptables_probability(0.25) == "0.25000000000"
