"""The one registry shape ferx uses for models, datasets and explanation methods: a name, declared
once beside the thing, mapped to a record every consumer reads."""

from __future__ import annotations

from typing import Generic, Iterator, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, plural: str, missing: type[Exception] = KeyError):
        self.kind, self.plural, self.missing = kind, plural, missing
        self._records: dict[str, T] = {}

    def add(self, name: str, record: T) -> T:
        if name in self._records:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self._records[name] = record
        return record

    def remove(self, name: str) -> None:
        """Forget ``name`` (tests that register a throw-away record clean up with it)."""
        self._records.pop(name, None)

    def get(self, name: str) -> T:
        if name not in self._records:
            raise self.missing(f"unknown {self.kind} {name!r}; registered {self.plural}: {', '.join(self._records)}")
        return self._records[name]

    def __contains__(self, name: str) -> bool:
        return name in self._records

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def names(self) -> list[str]:
        """In registration order."""
        return list(self._records)

    def records(self) -> list[T]:
        return list(self._records.values())
