"""One registry type for everything chosen by name in a config: dataset formats, stage backends, methods,
backbones, pooling, identity losses and optimisers.

A name registered twice is an error at import (two modules claiming one name would otherwise let the later
import silently win); an unknown name is a user error that lists the known ones.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .errors import InputError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, error: type[InputError] = InputError):
        self.kind = kind  # what the names name, for messages: "dataset format", "pooling", ...
        self.error = error  # raised for an unknown name (an InputError subclass)
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} names must be non-empty strings, got {name!r}")
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice: {self._entries[name]!r} and {entry!r}")
        self._entries[name] = entry
        return entry

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of add."""
        return lambda entry: self.add(name, entry)

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise self.error(f"unknown {self.kind} {name!r}; known: {', '.join(self.names()) or '(none)'}")
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return sorted(self._entries.items())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
