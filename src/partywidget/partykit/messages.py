"""Changes as PartyKit room messages: ``{prefix}s{changes JSON}``, split to fit a frame.

PartyKit (Cloudflare) closes a socket with 1009 on a frame over 1 MiB, so a Changes
whose message would be longer than ``max_bytes`` (UTF-8) is split into several valid
``s`` messages. A single cell or value that cannot fit alone is left out and returned
as a :class:`~partywidget.changes.ChangesTooLargeError`, so the rest still syncs.
"""

from __future__ import annotations

from typing import Any, Final

from partywidget.changes import ChangesTooLargeError, split_changes
from partywidget.codec import CHANGES_TYPE, encode_changes, encode_message
from partywidget.model import DELETED, Changes

__all__ = ["DEFAULT_MAX_MESSAGE_BYTES", "encode_changes_message", "messages_for"]

#: PartyKit (Cloudflare) closes a socket on a frame over 1 MiB; keep a margin below it.
DEFAULT_MAX_MESSAGE_BYTES: Final = 1024 * 1024 - 4096


def encode_changes_message(prefix: str, changes: Changes) -> str:
    return encode_message(prefix, CHANGES_TYPE, encode_changes(changes))


def messages_for(
    changes: Changes, max_bytes: int, prefix: str
) -> tuple[list[tuple[Changes, str]], list[ChangesTooLargeError]]:
    """``(part, message)`` pairs that each fit in ``max_bytes``, and the errors for
    entries too large even alone (left out). Raises ``CodecError`` for unencodable
    cells."""
    message = encode_changes_message(prefix, changes)
    if _utf8_len(message) <= max_bytes:
        return [(changes, message)], []
    parts, errors = _split(changes, max_bytes, prefix)
    return [(part, encode_changes_message(prefix, part)) for part in parts], errors


def _split(
    changes: Changes, limit: int, prefix: str
) -> tuple[list[Changes], list[ChangesTooLargeError]]:
    try:
        return split_changes(changes, limit, prefix), []
    except ChangesTooLargeError:
        pass
    errors: list[ChangesTooLargeError] = []
    tables: dict[str, Any] = {}
    for table_id, table in changes[0].items():
        if table is DELETED:
            tables[table_id] = table
            continue
        for row_id, row in table.items():
            if row is DELETED:
                tables.setdefault(table_id, {})[row_id] = row
                continue
            for cell_id, cell in row.items():
                single: Changes = ({table_id: {row_id: {cell_id: cell}}}, {}, 1)
                if _utf8_len(encode_changes_message(prefix, single)) > limit:
                    errors.append(
                        ChangesTooLargeError(
                            f"cell {table_id!r}/{row_id!r}/{cell_id!r} does not fit "
                            f"in a {limit}-byte message: not sent"
                        )
                    )
                else:
                    tables.setdefault(table_id, {}).setdefault(row_id, {})[cell_id] = cell
    values: dict[str, Any] = {}
    for value_id, value in changes[1].items():
        if _utf8_len(encode_changes_message(prefix, ({}, {value_id: value}, 1))) > limit:
            errors.append(
                ChangesTooLargeError(
                    f"value {value_id!r} does not fit in a {limit}-byte message: not sent"
                )
            )
        else:
            values[value_id] = value
    if not (tables or values):
        return [], errors
    return split_changes((tables, values, 1), limit, prefix), errors


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
