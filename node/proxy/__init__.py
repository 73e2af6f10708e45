"""kube-proxy: a per-node rules table computed from Services and EndpointSlices."""
