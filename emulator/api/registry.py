"""The kind registry: which API kinds exist and how each is named, scoped,
defaulted and validated.

Contract:
- ``ResourceType`` describes one kind (immutable, hashable). ``default(obj)``
  fills the kind's defaults in place; ``validate(obj, old)`` returns a list of
  field causes (``old`` is the stored object on update, else None);
  ``validate_name(name)`` returns the messages for a bad metadata.name.
  ``selectable_fields`` lists the extra field-selector fields the kind supports
  (metadata.name and metadata.namespace are always supported) and
  ``field_defaults`` the value a missing field compares as (otherwise "").
- ``Registry.for_object(obj)`` checks apiVersion and kind; ``by_kind(kind)``
  looks a kind up exactly; ``resolve(name)`` accepts the names kubectl does
  (kind, plural, singular, short names, case-insensitive, and ``plural.group``
  / ``plural.version.group``). Every failure is ``APIError(BAD_REQUEST)``.
- ``REGISTRY`` is the process-wide registry; importing this module registers
  the built-in kinds (``emulator.api.kinds``). More kinds join via ``register``.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from typing import Any, Callable

from emulator.api.errors import BAD_REQUEST, APIError
from emulator.api.meta import is_dns1123_subdomain

__all__ = ["ResourceType", "Registry", "REGISTRY"]


def _no_default(obj: dict[str, Any]) -> None:
    return None


def _no_validate(obj: dict[str, Any], old: dict[str, Any] | None) -> list[dict[str, str]]:
    return []


@dataclass(frozen=True)
class ResourceType:
    kind: str
    group: str
    version: str
    plural: str
    singular: str
    short_names: tuple[str, ...] = ()
    namespaced: bool = True
    has_status: bool = False
    has_generation: bool = False
    default: Callable[[dict[str, Any]], None] = field(default=_no_default, repr=False)
    validate: Callable[[dict[str, Any], dict[str, Any] | None], list[dict[str, str]]] = field(
        default=_no_validate, repr=False)
    validate_name: Callable[[str], list[str]] = field(default=is_dns1123_subdomain, repr=False)
    selectable_fields: tuple[str, ...] = ()
    field_defaults: tuple[tuple[str, str], ...] = ()

    # cached_property writes the instance __dict__ directly, so it works on this
    # frozen dataclass; api_version is read several times per write.
    @functools.cached_property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    @property
    def resource(self) -> str:
        """The plural resource name, as in ``pods "x" not found``."""
        return self.plural

    @functools.cached_property
    def qualified_kind(self) -> str:
        """``Pod`` for core kinds, ``Lease.coordination.k8s.io`` otherwise."""
        return f"{self.kind}.{self.group}" if self.group else self.kind

    @property
    def qualified_resource(self) -> str:
        """``pods`` for core kinds, ``leases.coordination.k8s.io`` otherwise."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


def _describe(obj: Any) -> str:
    try:
        text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    except (TypeError, ValueError):
        text = repr(obj)
    return text if len(text) <= 200 else text[:197] + "..."


class Registry:
    """A set of ResourceTypes with kubectl-style name resolution."""

    def __init__(self) -> None:
        self._by_kind: dict[str, ResourceType] = {}
        self._names: dict[str, ResourceType] = {}
        self._sorted: tuple[ResourceType, ...] = ()

    @staticmethod
    def _aliases(rt: ResourceType) -> set[str]:
        names = {rt.kind.lower(), rt.plural.lower(), rt.singular.lower()}
        names.update(s.lower() for s in rt.short_names)
        if rt.group:
            for n in (rt.plural, rt.singular, rt.kind.lower()):
                names.add(f"{n}.{rt.group}".lower())
                names.add(f"{n}.{rt.version}.{rt.group}".lower())
        return names

    def register(self, rt: ResourceType) -> None:
        """Add ``rt``; re-registering a kind replaces it. Name clashes raise ValueError."""
        aliases = self._aliases(rt)
        for name in aliases:
            other = self._names.get(name)
            if other is not None and other.kind != rt.kind:
                raise ValueError(f"resource name {name!r} of {rt.kind} is already "
                                 f"used by {other.kind}")
        old = self._by_kind.get(rt.kind)
        if old is not None:
            for name in self._aliases(old):
                self._names.pop(name, None)
        self._by_kind[rt.kind] = rt
        for name in aliases:
            self._names[name] = rt
        self._sorted = tuple(sorted(self._by_kind.values(), key=lambda r: r.kind))

    def all(self) -> list[ResourceType]:
        return list(self._sorted)

    def _supported_versions(self) -> str:
        return ", ".join(f"{rt.api_version}/{rt.kind}" for rt in self._sorted)

    def for_object(self, obj: Any) -> ResourceType:
        """The type of ``obj``, checking both apiVersion and kind."""
        if not isinstance(obj, dict):
            raise APIError(BAD_REQUEST, f"Object is not a JSON object: '{_describe(obj)}'")
        kind = obj.get("kind")
        if kind.__class__ is str:   # fast path: a registered kind with its apiVersion
            rt = self._by_kind.get(kind)
            if rt is not None and rt.api_version == obj.get("apiVersion"):
                return rt
        api_version = obj.get("apiVersion")
        if not kind or not isinstance(kind, str):
            raise APIError(BAD_REQUEST, f"Object 'Kind' is missing in '{_describe(obj)}'")
        if not api_version or not isinstance(api_version, str):
            raise APIError(BAD_REQUEST, f"Object 'apiVersion' is missing in '{_describe(obj)}'")
        rt = self._by_kind.get(kind)
        if rt is None or rt.api_version != api_version:
            raise APIError(BAD_REQUEST,
                           f'no kind "{kind}" is registered for version "{api_version}"; '
                           f"supported kinds: {self._supported_versions()}")
        return rt

    def by_kind(self, kind: str) -> ResourceType:
        rt = self._by_kind.get(kind)
        if rt is None:
            supported = ", ".join(r.kind for r in self._sorted)
            raise APIError(BAD_REQUEST,
                           f'no kind "{kind}" is registered; supported kinds: {supported}')
        return rt

    def resolve(self, name: str) -> ResourceType:
        """A CLI resource name (``po``, ``pods``, ``Pod``, ``leases.coordination.k8s.io``)."""
        rt = self._names.get(name.lower()) if isinstance(name, str) else None
        if rt is None:
            raise APIError(BAD_REQUEST, f'the server doesn\'t have a resource type "{name}"')
        return rt

    def __contains__(self, kind: object) -> bool:
        return kind in self._by_kind

    def __len__(self) -> int:
        return len(self._by_kind)


REGISTRY = Registry()

# Registers the built-in kinds. At the bottom so that kind modules can import
# ResourceType and REGISTRY from this (partially initialised) module.
import emulator.api.kinds  # noqa: E402,F401
