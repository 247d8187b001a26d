"""Input state for the seed's ``input`` module: keys and mouse position, set by the host.

The host writes it on the main thread (the thread that created it); scripts only read it, from
any thread, under the state's lock (THR-INPUT-WRITE-MAIN, THR-READS-ANY-THREAD).
"""

from __future__ import annotations

import threading

from refimpl.errors import ThreadAffinityError


class InputState:
    """Pressed keys (by name, e.g. ``"W"``) and the mouse position in pixels."""

    def __init__(self) -> None:
        self.main_thread = threading.get_ident()
        self._lock = threading.Lock()
        self._pressed: set[str] = set()
        self._mouse = (0.0, 0.0)

    def set_key(self, key: str, pressed: bool) -> None:
        """Press or release ``key``; main thread only (THR-INPUT-WRITE-MAIN)."""
        self._check_main("set_key")
        with self._lock:
            if pressed:
                self._pressed.add(key)
            else:
                self._pressed.discard(key)

    def is_key_pressed(self, key: str) -> bool:
        """Whether ``key`` is down, from any thread (LB-INPUT-KEY, THR-READS-ANY-THREAD)."""
        with self._lock:
            return key in self._pressed

    def set_mouse_pos(self, x: float, y: float) -> None:
        """Move the mouse; main thread only (THR-INPUT-WRITE-MAIN)."""
        self._check_main("set_mouse_pos")
        with self._lock:
            self._mouse = (x, y)

    def get_mouse_pos(self) -> tuple[float, float]:
        """The mouse position, from any thread (LB-INPUT-MOUSE, THR-READS-ANY-THREAD)."""
        with self._lock:
            return self._mouse

    def _check_main(self, operation: str) -> None:
        if threading.get_ident() != self.main_thread:
            raise ThreadAffinityError(f"InputState.{operation} is main-thread only")
