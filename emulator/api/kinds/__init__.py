"""Built-in kinds, one module per API family. Importing this package (which
``emulator.api.registry`` does) registers them all with ``REGISTRY``.

To add a kind: write a module here that builds a ``ResourceType`` and calls
``REGISTRY.register``, and import it below.
"""
from emulator.api.kinds import (config, coordination, event, namespace,  # noqa: F401
                                node, pod)
from emulator.api.kinds import apps, batch, discovery, service, storage  # noqa: F401
from emulator.api.kinds import policy, statefulset  # noqa: F401
