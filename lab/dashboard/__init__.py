"""The web dashboard add-on: ``kemu dashboard`` serves a live, read-only page on loopback.

``lab.dashboard.state`` (the model, no I/O), ``lab.dashboard.hub`` (the fan-out to
Server-Sent Events subscribers), ``lab.dashboard.watcher`` (the informers and the
chaos record), ``lab.dashboard.server`` (HTTP), ``lab.dashboard.cli`` (the command),
and ``static/`` (the page, its script and style sheet; no external URL). Nothing is
imported here, so registering the command costs nothing.
"""
