"""kemu's shared core: wire protocol, transports, API types, client, logging and CLI.

Layering contract: nothing in ``emulator`` imports ``control``, ``node`` or ``lab``.
"""
