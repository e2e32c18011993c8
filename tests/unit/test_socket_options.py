"""``SocketOptions``: one frozen dataclass, built from keywords, mappings or partysocket's
own (camelCase, milliseconds) options; validated before any socket exists."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from partywidget._options import options_from
from partywidget.partykit.options import SocketOptions, reconnection_delay
from partywidget.partykit.socket import PartySocket


def test_defaults_are_partysockets_in_seconds() -> None:
    options = SocketOptions()
    assert (options.min_reconnection_delay, options.max_reconnection_delay) == (3.0, 10.0)
    assert options.reconnection_delay_grow_factor == 1.3
    assert (options.min_uptime, options.connection_timeout) == (5.0, 4.0)
    assert options.max_retries == options.max_enqueued_messages == math.inf
    assert not options.start_closed
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.min_uptime = 1  # type: ignore[misc]


def test_backoff_is_partysockets_formula() -> None:
    assert [round(SocketOptions().reconnection_delay(n), 6) for n in range(7)] == [
        0.0,
        3.0,
        3.9,
        5.07,
        6.591,
        8.5683,
        10.0,
    ]
    assert reconnection_delay(10**6, 1.0, 7.0, 2.0) == 7.0  # no overflow after hours down
    assert reconnection_delay(-1, 1.0, 7.0, 2.0) == 0.0


def test_mappings_take_snake_or_camel_case_and_keywords_override() -> None:
    shared = {"minReconnectionDelay": 0.5, "max_retries": 3, "basePath": "x/y"}
    sock = PartySocket("h", "r", options=shared, max_retries=7, start_closed=True)
    assert sock.options == SocketOptions(
        min_reconnection_delay=0.5, max_retries=7, base_path="x/y", start_closed=True
    )
    assert sock.room_url == "wss://h/x/y"
    # An instance is used as is; keywords still override single fields.
    base = SocketOptions(ping_interval=None, start_closed=True)
    assert PartySocket("h", "r", options=base).options is base
    assert PartySocket("h", "r", options=base, debug=True).options.debug
    # The widget's view of the arguments: one flat dict, identity first.
    options = PartySocket("h", "r", party="p", options=base).party_socket_options
    assert (options["party"], options["ping_interval"], options["start_closed"]) == (
        "p",
        None,
        True,
    )
    assert list(options)[:6] == ["host", "room", "party", "id", "query", "protocol"]


def test_partysocket_options_convert_milliseconds() -> None:
    js = {"minReconnectionDelay": 50, "maxReconnectionDelay": 200, "maxRetries": 2}
    assert SocketOptions.from_partysocket(js) == SocketOptions(
        min_reconnection_delay=0.05, max_reconnection_delay=0.2, max_retries=2
    )
    js2 = {"connectionTimeout": 1500, "minUptime": 0, "startClosed": True}
    options = SocketOptions.from_partysocket(js2)
    assert (options.connection_timeout, options.min_uptime, options.start_closed) == (1.5, 0, True)
    with pytest.raises(ValueError, match="host"):
        SocketOptions.from_partysocket({"host": "h"})  # identity is the socket's


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"min_reconnection_delay": -1}, ValueError),
        ({"connection_timeout": math.nan}, ValueError),
        ({"ping_interval": -0.5}, ValueError),
        ({"reconnection_delay_grow_factor": 0}, ValueError),
        ({"path": "/x"}, ValueError),
        ({"path": "a?b"}, ValueError),
        ({"protocols": "chat"}, TypeError),
    ],
)
def test_bad_values_are_refused_before_a_socket_exists(
    fields: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        SocketOptions(**fields)
    with pytest.raises(error):
        PartySocket("h", "r", start_closed=True, **fields)


def test_unknown_names_are_errors_never_ignored() -> None:
    with pytest.raises(TypeError, match="no_such_option"):
        PartySocket("h", "r", no_such_option=1)
    with pytest.raises(ValueError, match="noSuchOption"):
        PartySocket("h", "r", options={"noSuchOption": 1})
    with pytest.raises(ValueError, match="twice"):
        options_from(SocketOptions, {"maxRetries": 1, "max_retries": 2})
    with pytest.raises(TypeError):
        PartySocket("h", "r", options=["not", "a", "mapping"])  # type: ignore[arg-type]
