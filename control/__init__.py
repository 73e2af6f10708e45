"""The control plane: apiserver, scheduler, controllers and add-ons.

Layering contract: ``control`` imports ``emulator`` only, never ``node`` or ``lab``.
"""
