"""The commands the emulator runs itself rather than on fakeredis: name -> handler."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from slotlab.commands import CommandSpec

if TYPE_CHECKING:
    from slotlab.backends.emulated.client import _Client


_Handler = Callable[["_Client", CommandSpec, list[bytes]], Any]
_HANDLERS: dict[str, _Handler] = {}


def _handles(*names: str) -> Callable[[_Handler], _Handler]:
    def register(fn: _Handler) -> _Handler:
        for name in names:
            _HANDLERS[name] = fn
        return fn

    return register
