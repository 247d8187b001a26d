"""The smallest world the seed's ECS module needs: entities with named components of plain data.

Writes are main-thread only (the thread that created the world); reads work from any thread
under the world's lock (THR-ECS-WRITE-MAIN, THR-READS-ANY-THREAD).
"""

from __future__ import annotations

import copy
import enum
import threading

from refimpl.errors import InvalidArgument, ThreadAffinityError


class BoolKey(enum.Enum):
    """``true`` or ``false`` as a table key, kept apart from the keys ``1`` and ``0`` that
    Python's ``True == 1`` would merge it with (SBX-BINDING-VALUES)."""

    FALSE = False
    TRUE = True


# Component data: what a Lua table of strings, numbers, booleans and nested tables becomes.
Data = str | bytes | int | float | bool | dict["Key", "Data"]
Key = str | bytes | int | float | BoolKey


class World:
    """Entities are positive integers; components are deep-copied in and out, so no caller
    shares mutable data with the world."""

    def __init__(self) -> None:
        self.main_thread = threading.get_ident()
        self._lock = threading.Lock()
        self._next_id = 1
        self._components: dict[int, dict[str, Data]] = {}

    def create_entity(self) -> int:
        """A new entity id, unique for the world's lifetime (LB-ECS-CREATE, THR-ECS-WRITE-MAIN)."""
        self._check_main("create_entity")
        with self._lock:
            entity = self._next_id
            self._next_id += 1
            self._components[entity] = {}
            return entity

    def add_component(self, entity: int, name: str, data: Data) -> None:
        """Attach (or replace) a deep copy of component ``name`` on ``entity`` (LB-ECS-ADD,
        THR-ECS-WRITE-MAIN)."""
        self._check_main("add_component")
        with self._lock:
            self._entity(entity)[name] = copy.deepcopy(data)

    def get_component(self, entity: int, name: str) -> Data | None:
        """A copy of the component, or ``None`` if the entity lacks it (LB-ECS-GET,
        THR-READS-ANY-THREAD)."""
        with self._lock:
            component = self._entity(entity).get(name)
            return copy.deepcopy(component)

    def _entity(self, entity: int) -> dict[str, Data]:
        components = self._components.get(entity)
        if components is None:
            raise InvalidArgument(f"no entity {entity}")
        return components

    def _check_main(self, operation: str) -> None:
        if threading.get_ident() != self.main_thread:
            raise ThreadAffinityError(f"World.{operation} is main-thread only")
