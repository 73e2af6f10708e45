"""kemu's command-line interface.

``emulator.cli.kubectl`` holds the kubectl-style commands (get, describe,
create, apply, delete, patch, label): ``register(subparsers)`` adds them to
the ``kemu`` parser, ``run(argv, out, err)`` runs one of them on its own.
Supporting modules: ``server`` (which apiserver), ``manifests`` (``-f``
files), ``printers``/``printers_core`` (tables, ``-o`` formats),
``describers``/``describers_core`` (``describe``), ``merge`` (apply's patches),
``tabwriter`` (Go-compatible column alignment).
"""
