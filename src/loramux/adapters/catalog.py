"""The catalog of adapters a server offers, and model-name resolution.

A request's `model` is the base model id, an adapter name (`hr`), or a pinned version
(`hr@3f9c1a2b4d5e`). The catalog answers which `AdapterVersion` that means, or raises
`ModelNotFoundError` with the names that exist.
"""

from __future__ import annotations

from collections.abc import Iterable

from loramux.adapters.version import AdapterVersion
from loramux.errors import ModelNotFoundError


class AdapterCatalog:
    """Adapter name -> its served version (one version per name for now)."""

    def __init__(self, base_model_id: str, versions: Iterable[AdapterVersion] = ()) -> None:
        self.base_model_id = base_model_id
        self._by_name: dict[str, AdapterVersion] = {}
        for version in versions:
            self.add(version)

    def add(self, version: AdapterVersion) -> None:
        self._by_name[version.name] = version

    def remove(self, name: str) -> AdapterVersion | None:
        return self._by_name.pop(name, None)

    def versions(self) -> list[AdapterVersion]:
        return [self._by_name[n] for n in sorted(self._by_name)]

    def resolve(self, model: str) -> AdapterVersion | None:
        """Return the adapter version `model` names, or None for the base model.

        Raises:
            ModelNotFoundError: unknown name or version.
        """
        if model == self.base_model_id:
            return None
        name, _, version = model.partition("@")
        found = self._by_name.get(name)
        if found is None or (version and version != found.version):
            known = ", ".join([self.base_model_id, *sorted(self._by_name)])
            what = f"version {version!r} of adapter {name!r}" if found else f"model {model!r}"
            raise ModelNotFoundError(
                f"The {what} does not exist. Available models: {known} (see GET /v1/models).",
                param="model",
            )
        return found
