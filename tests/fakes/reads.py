"""Record which keys of which raw Stripe objects a mapping reads.

``recording(objects)`` wraps every typed dict (one with ``"object"``) in a dict
subclass that notes ``(object type, key)`` on ``[]``, ``get`` and ``in``; the
unmapped-field table must call each such key carried or derived.
"""

from __future__ import annotations

from typing import Any


class _Recorder(dict):  # type: ignore[type-arg]
    def __init__(self, data: dict[str, Any], seen: set[tuple[str, str]]) -> None:
        super().__init__(data)
        self._seen = seen
        self._kind = str(data.get("object"))

    def _note(self, key: object) -> None:
        if isinstance(key, str) and dict.get(self, key) not in (None, "", [], {}):
            self._seen.add((self._kind, key))

    def __getitem__(self, key: str) -> Any:
        self._note(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self._note(key)
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self._note(key)
        return super().__contains__(key)


def recording(value: Any, seen: set[tuple[str, str]]) -> Any:
    if isinstance(value, list):
        return [recording(v, seen) for v in value]
    if isinstance(value, dict):
        inner = {k: recording(v, seen) for k, v in value.items()}
        return _Recorder(inner, seen) if isinstance(value.get("object"), str) else inner
    return value
