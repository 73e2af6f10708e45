"""The cluster DNS add-on: svc.cluster.local names served on loopback."""
