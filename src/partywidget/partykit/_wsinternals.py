"""Every place PartySocket reaches beneath websockets' documented connection API.

Why at all: a local edit's way out and a remote edit's way in are the hot paths of a
notebook's sync. websockets' public API costs one event-loop turn on each -- ``await
ws.send()`` from a writer task, ``recv()`` waking a reader task -- where a browser's
WebSocket writes from the caller and calls ``onmessage`` from the network callback.

What is relied on, and why each choice:

- **Writing** (:func:`write_now`) uses only documented APIs of the layers *below* the
  connection: the sans-I/O :class:`websockets.protocol.Protocol` (``send_text``,
  ``send_binary``, ``data_to_send``) and asyncio's ``Transport``
  (``get_write_buffer_size``/``get_write_buffer_limits``, ``is_closing``, ``write``).
  Flow control is read from the transport: at or under its low-water mark asyncio has
  resumed writing, so the connection is not paused and ``ws.send`` would not wait
  either. There is no fragmented send to wait for, since PartySocket only sends whole
  messages. (This replaces reading the connection's private ``send_data``, ``paused``
  and ``fragmented_send_waiter``/``send_in_progress``.) What is undocumented is only
  that a connection exposes them as ``ws.protocol`` and ``ws.transport``.
- **Reading** has no public equivalent, so :class:`DirectClientConnection` overrides
  ``process_event``, the hook ``data_received`` calls for every parsed frame. It is a
  subclass passed through ``connect(create_connection=...)``, which websockets documents
  as the way to customise a connection.
- **Closing frames** (:func:`close_frames`) and **aborting** (:func:`abort`) read
  ``ws.protocol.close_rcvd``/``close_sent`` (documented on the Protocol; the
  connection's ``close_code`` hides the code we sent, e.g. 1009 or 1011) and call
  ``ws.transport.abort()``.

Version check: these hooks are unchanged from websockets 13.0 (the first with
``websockets.asyncio``) through 17.x, read from websockets' history and tested with the
installed version. Outside :data:`SUPPORTED_VERSIONS`, or if a hook is missing,
:data:`AVAILABLE` is False: PartySocket then uses the stock connection and ``ws.send``
(correct, one loop turn slower per message) and a warning is logged once.
``tests/unit/test_wsinternals.py`` fails in that case, so an upgrade is re-verified and
the range widened on purpose, never silently.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import re
from collections.abc import Callable
from typing import Any, Final

from websockets.asyncio.client import ClientConnection
from websockets.frames import Close, Frame, Opcode
from websockets.protocol import Event, Protocol, Side, State
from websockets.version import version as _websockets_version

from .events import Data

__all__ = [
    "AVAILABLE",
    "SUPPORTED_VERSIONS",
    "WEBSOCKETS_VERSION",
    "DirectClientConnection",
    "abort",
    "close_frames",
    "connection_class",
    "take_over",
    "write_now",
]

_log = logging.getLogger("partywidget.partykit.socket")

#: websockets versions whose internals this module was checked against: [from, to).
SUPPORTED_VERSIONS: Final = ((13, 0), (18, 0))


def _parse_version(text: str) -> tuple[int, int]:
    match = re.match(r"(\d+)(?:\.(\d+))?", text)
    if match is None:
        return (0, 0)
    return int(match[1]), int(match[2] or 0)


WEBSOCKETS_VERSION: Final = _parse_version(_websockets_version)


def missing_hooks() -> list[str]:
    """What this module relies on that the installed websockets lacks (empty: all there)."""
    protocol = Protocol(Side.CLIENT)
    missing = [
        f"Protocol.{name}"
        for name in ("send_text", "send_binary", "data_to_send", "close_rcvd", "close_sent")
        if not hasattr(protocol, name)
    ]
    hook = getattr(ClientConnection, "process_event", None)
    if not callable(hook) or list(inspect.signature(hook).parameters) != ["self", "event"]:
        missing.append("ClientConnection.process_event(self, event)")
    if not callable(getattr(ClientConnection, "data_received", None)):
        missing.append("ClientConnection.data_received")
    return missing


def _check() -> bool:
    low, high = SUPPORTED_VERSIONS
    if not low <= WEBSOCKETS_VERSION < high:
        _log.warning(
            "PartySocket: websockets %s is outside the versions checked (%s to %s); "
            "using its public API only (slower)",
            _websockets_version,
            ".".join(map(str, low)),
            ".".join(map(str, high)),
        )
        return False
    missing = missing_hooks()
    if missing:
        _log.warning(
            "PartySocket: websockets %s lacks %s; using its public API only (slower)",
            _websockets_version,
            ", ".join(missing),
        )
        return False
    return True


#: Whether the fast paths below are used (checked once, at import).
AVAILABLE: Final = _check()


def connection_class() -> type[ClientConnection]:
    """The ``create_connection`` factory PartySocket passes to ``connect``."""
    return DirectClientConnection if AVAILABLE else ClientConnection


def write_now(ws: ClientConnection, message: Data) -> bool:
    """Write one whole message to ``ws`` synchronously, as ``await ws.send(message)``
    would when it does not have to wait; False (nothing written) when it would.

    Callers only use it when their writer task is idle and its queue empty, so message
    order is unchanged.
    """
    if not AVAILABLE or ws.state is not State.OPEN:
        return False
    transport = ws.transport
    if transport.is_closing():
        return False
    low, _high = transport.get_write_buffer_limits()
    if transport.get_write_buffer_size() > low:  # paused, or maybe: let ws.send wait
        return False
    protocol = ws.protocol
    try:
        if isinstance(message, str):
            protocol.send_text(message.encode())
        else:
            protocol.send_binary(message)
    except Exception:  # e.g. the protocol left OPEN: let the writer path decide
        return False
    try:
        for data in protocol.data_to_send():
            if data:
                transport.write(data)
            elif transport.can_write_eof():  # end of stream: only ever after a close frame
                transport.write_eof()
            else:
                transport.close()
    except Exception:
        # The frame has left the protocol: like a failed ``ws.send``, the connection's
        # own error handling closes it (and we reconnect); do not send it twice.
        _log.debug("PartySocket direct write failed", exc_info=True)
    return True


def close_frames(ws: ClientConnection) -> tuple[Close | None, Close | None]:
    """The close frames received and sent on ``ws`` (None where there was none)."""
    return ws.protocol.close_rcvd, ws.protocol.close_sent


def abort(ws: ClientConnection) -> None:
    """Drop the TCP connection now (no closing handshake)."""
    ws.transport.abort()


def take_over(ws: ClientConnection, deliver: Callable[[Data], None]) -> list[Data]:
    """Start direct delivery on ``ws``: return the messages parsed before now (deliver
    them first), then ``deliver`` gets each later one as soon as it is parsed. Returns
    [] and delivers nothing when ``ws`` uses the stock queue (read it with ``recv``)."""
    if not isinstance(ws, DirectClientConnection):
        return []
    early, ws.early = ws.early or [], None
    if not ws.queued:
        ws.deliver = deliver
    return early


class DirectClientConnection(ClientConnection):
    """A websockets client connection that hands each whole message to PartySocket as
    soon as it is parsed, inside ``data_received``.

    Order is kept: messages parsed before PartySocket takes the connection over are held
    in ``early`` and delivered first; a fragmented (or undecodable) message switches
    the connection to the stock queue (``queued``) for good, so it and everything after
    it go through ``recv()`` in order.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Messages parsed before PartySocket took over (None once it has).
        self.early: list[Data] | None = []
        #: Where whole messages go once PartySocket took over (None: the stock queue).
        self.deliver: Callable[[Data], None] | None = None
        self.queued = False

    def process_event(self, event: Event) -> None:
        if isinstance(event, Frame) and not self.queued:
            opcode = event.opcode
            if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
                message = _whole_message(event)
                if message is not None:
                    if self.deliver is not None:
                        self.deliver(message)
                        return
                    if self.early is not None:
                        self.early.append(message)
                        return
                self.queued = True
                self.deliver = None
            elif opcode is Opcode.CONT:
                self.queued = True
                self.deliver = None
        super().process_event(event)


def _whole_message(frame: Frame) -> Data | None:
    """The message in a final data frame; None for a fragment or invalid UTF-8 (the
    stock path then handles it, and fails the connection on bad UTF-8)."""
    if not frame.fin:
        return None
    if frame.opcode is Opcode.BINARY:
        return bytes(frame.data)
    with contextlib.suppress(UnicodeDecodeError):
        return bytes(frame.data).decode()
    return None
