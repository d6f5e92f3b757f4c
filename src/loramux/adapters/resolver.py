"""Resolution of a request's `model` to an adapter version, from an in-memory table.

The registry rebuilds a `Resolver` after every change and swaps it in whole, so resolving a
request reads only immutable in-memory values: a dict lookup, a hash and a bisect (about a
microsecond), never the database.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from loramux.adapters.records import (
    PINNED,
    AdapterRecord,
    RegistryState,
    VersionRecord,
    VersionStatus,
)
from loramux.adapters.traffic import Assignment, TrafficSplit, user_bucket
from loramux.adapters.version import AdapterVersion
from loramux.errors import EngineUnavailableError, ModelNotFoundError

Locate = Callable[[VersionRecord, AdapterRecord], AdapterVersion]
"""Turns a stored version into the `AdapterVersion` engines load (absolute path, description)."""
Visible = Callable[[str], bool]
"""Adapter name -> whether the caller may see it (a department key sees only its adapters)."""


@dataclass(frozen=True)
class Route:
    """One adapter, ready for resolution."""

    versions: Mapping[str, AdapterVersion]
    """Servable versions (not retired; the engine loads them when a request needs one)."""
    unavailable: Mapping[str, str]
    """Version -> why it cannot be served (retired)."""
    split: TrafficSplit | None
    main: str | None


class Resolver:
    """Model name -> adapter version, by pin or by sticky traffic split."""

    def __init__(self, base_model_id: str, routes: Mapping[str, Route]) -> None:
        self.base_model_id = base_model_id
        self.routes = routes

    @classmethod
    def build(
        cls,
        state: RegistryState,
        base_model_id: str,
        locate: Locate,
    ) -> Resolver:
        """Build the table from the registry's state.

        Args:
            state: adapters, versions and splits.
            base_model_id: the `model` that means no adapter.
            locate: makes the `AdapterVersion` of a stored version.
        """
        routes: dict[str, Route] = {}
        for name, adapter in state.adapters.items():
            servable: dict[str, AdapterVersion] = {}
            unavailable: dict[str, str] = {}
            for record in state.versions.get(name, ()):
                version = locate(record, adapter)
                if record.status is VersionStatus.RETIRED:
                    unavailable[record.version] = "it was retired"
                else:
                    servable[record.version] = version
            split = None
            if adapter.traffic:
                split = TrafficSplit.from_weights(adapter.traffic, adapter.experiment_id or "")
            routes[name] = Route(servable, unavailable, split, adapter.main_version)
        return cls(base_model_id, routes)

    def served_versions(self) -> list[AdapterVersion]:
        """The main version of every adapter that gets traffic (what `/v1/models` lists)."""
        return list(self._served)

    @functools.cached_property
    def _served(self) -> tuple[AdapterVersion, ...]:
        found = []
        for name in sorted(self.routes):
            route = self.routes[name]
            if route.split is not None and route.main is not None and route.main in route.versions:
                found.append(route.versions[route.main])
        return tuple(found)

    @functools.cached_property
    def served_names(self) -> frozenset[str]:
        """The names of the adapters in `served_versions` (built once per table: the table is
        rebuilt, not changed, when the registry changes)."""
        return frozenset(v.name for v in self._served)

    def servable_versions(self) -> list[AdapterVersion]:
        """Every version that is not retired (pinned or with traffic), by adapter and version."""
        return [
            route.versions[v]
            for name in sorted(self.routes)
            for route in (self.routes[name],)
            for v in sorted(route.versions)
        ]

    def assign(
        self,
        model: str,
        user: str | None = None,
        *,
        visible: Visible | None = None,
        base_visible: bool = True,
    ) -> Assignment | None:
        """Which adapter version serves a request for `model`; None for the base model.

        `name@version` pins a version (any that is not retired). A plain name picks a version
        by the traffic split, sticky per `user` (None picks at random). The 404 for an unknown
        model names the models the caller may use: the adapters `visible` accepts (None: all)
        and the base model when `base_visible`.

        Raises:
            ModelNotFoundError: unknown adapter or version, retired version, or no traffic.
            EngineUnavailableError: the split picked a version the engine could not load.
        """
        if model == self.base_model_id:
            return None
        name, sep, pinned = model.partition("@")
        route = self.routes.get(name)
        if route is None:
            names = [n for n in sorted(self.routes) if visible is None or visible(n)]
            known = ", ".join([self.base_model_id, *names] if base_visible else names) or "none"
            raise ModelNotFoundError(
                f"The model {model!r} does not exist. Available models: {known} "
                "(see GET /v1/models).",
                param="model",
            )
        if sep:
            found = route.versions.get(pinned)
            if found is None:
                why = route.unavailable.get(pinned, "it is not registered")
                raise ModelNotFoundError(
                    f"version {pinned!r} of adapter {name!r} cannot be served: {why}",
                    param="model",
                )
            return Assignment(found, PINNED)
        if route.split is None:
            raise ModelNotFoundError(
                f"adapter {name!r} has no version with traffic; promote one "
                f"(POST /v1/adapters/{name}/promote)",
                param="model",
            )
        chosen = route.split.pick(user_bucket(user, route.split.experiment_id))
        found = route.versions.get(chosen)
        if found is None:
            raise EngineUnavailableError(
                f"version {chosen} of adapter {name!r} cannot be served: "
                f"{route.unavailable.get(chosen, 'unknown')}; shift its traffic to another version"
            )
        return Assignment(found, route.split.experiment_id)
