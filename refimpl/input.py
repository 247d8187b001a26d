"""Input state for the seed's ``input`` module: keys and mouse position, set by the host.

Scripts only read it, from any thread, under the state's lock (LB-INPUT-*, THR-READ-ANY-THREAD).
"""

from __future__ import annotations

import threading


class InputState:
    """Pressed keys (by name, e.g. ``"W"``) and the mouse position in pixels."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pressed: set[str] = set()
        self._mouse = (0.0, 0.0)

    def set_key(self, key: str, pressed: bool) -> None:
        with self._lock:
            if pressed:
                self._pressed.add(key)
            else:
                self._pressed.discard(key)

    def is_key_pressed(self, key: str) -> bool:
        with self._lock:
            return key in self._pressed

    def set_mouse_pos(self, x: float, y: float) -> None:
        with self._lock:
            self._mouse = (x, y)

    def get_mouse_pos(self) -> tuple[float, float]:
        with self._lock:
            return self._mouse
