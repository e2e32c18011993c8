"""Checking Python input before the Store touches anything.

Values JSON cannot hold (``set``, ``bytes``, NaN, non-``str`` keys, ...) raise
``TypeError``/``ValueError`` naming where they are, so a bad call changes nothing. What
comes out is a fresh copy the Store may keep and mutate (validation drops and fills cells
in place). Ids given as ints are converted, as JavaScript's ``'' + id``.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from partywidget.model import DELETED
from partywidget.store._cells import plain_table, py_cell, py_json, where

__all__ = [
    "check_id",
    "check_key",
    "listener_id",
    "py_changes",
    "py_content",
    "py_row",
    "py_table",
    "py_tables",
    "py_values",
]


def check_id(value: Any, what: str) -> str:
    """Ids are strings (ints are accepted and converted, as JavaScript's ``'' + id``)."""
    if value.__class__ is str:
        return str(value)
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return str(value)
    raise TypeError(f"{what} must be a str, not {type(value).__name__}")


def listener_id(value: Any, what: str) -> str | None:
    return None if value is None else check_id(value, what)


def check_key(key: Any, what: str) -> str:
    if not isinstance(key, str):
        raise TypeError(f"{what} {key!r} must be a str, not {type(key).__name__}")
    return str(key)


def py_row(table_id: str, row_id: str | None, row: Any) -> Any:
    if isinstance(row, dict):
        return {
            check_key(cell_id, "cell id"): py_cell(
                cell, partial(where, "cell", table_id, row_id, cell_id)
            )
            for cell_id, cell in row.items()
        }
    return py_json(row, lambda: where("row", table_id, row_id))


def py_table(table_id: str, table: Any) -> Any:
    plain = plain_table(table)
    if plain is not None:
        return plain
    if isinstance(table, dict):
        return {
            check_key(row_id, "row id"): py_row(table_id, row_id, row)
            for row_id, row in table.items()
        }
    return py_json(table, lambda: where("table", table_id))


def py_tables(tables: Any) -> Any:
    if isinstance(tables, dict):
        return {
            check_key(table_id, "table id"): py_table(table_id, table)
            for table_id, table in tables.items()
        }
    return py_json(tables, lambda: "tables")


def py_content(content: Any) -> Any:
    """``py_json(content)``, with plain tables checked and copied in one tight loop.

    Falls back to :func:`py_json` for anything unusual, per table, so errors (and
    which error comes first) are exactly ``py_json``'s.
    """
    if content.__class__ not in (list, tuple) or len(content) != 2:
        return py_json(content, lambda: "content")
    tables = content[0]
    if tables.__class__ is not dict:
        return py_json(content, lambda: "content")
    checked: dict[str, Any] = {}
    for table_id, table in tables.items():
        if table_id.__class__ is not str:
            return py_json(content, lambda: "content")
        plain = plain_table(table)
        checked[table_id] = (
            plain if plain is not None else py_json(table, lambda: "content", f"[0][{table_id!r}]")
        )
    return [checked, py_json(content[1], lambda: "content", "[1]")]


def py_values(values: Any) -> Any:
    if isinstance(values, dict):
        return {
            check_key(value_id, "value id"): py_cell(value, partial(where, "value", value_id))
            for value_id, value in values.items()
        }
    return py_json(values, lambda: "values")


def py_changes(changes: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check Changes from Python: ``(tables, values[, 1])`` with ``DELETED`` for removals."""
    if not isinstance(changes, (list, tuple)) or len(changes) < 2:
        raise TypeError("changes must be a (tables, values, 1) tuple or list")
    tables, values = changes[0], changes[1]
    if not isinstance(tables, dict) or not isinstance(values, dict):
        raise TypeError("changes must hold a dict of tables and a dict of values")
    checked_tables: dict[str, Any] = {}
    for table_id, table in tables.items():
        table_id = check_key(table_id, "table id")
        if table is DELETED:
            checked_tables[table_id] = DELETED
            continue
        if not isinstance(table, dict):
            raise TypeError(f"changes for table {table_id!r} must be a dict or DELETED")
        checked_table: dict[str, Any] = {}
        for row_id, row in table.items():
            row_id = check_key(row_id, "row id")
            if row is DELETED:
                checked_table[row_id] = DELETED
                continue
            if not isinstance(row, dict):
                raise TypeError(
                    f"changes for row {row_id!r} of table {table_id!r} must be a dict or DELETED"
                )
            checked_table[row_id] = {
                check_key(cell_id, "cell id"): cell
                if cell is DELETED
                else py_cell(cell, partial(where, "cell", table_id, row_id, cell_id))
                for cell_id, cell in row.items()
            }
        checked_tables[table_id] = checked_table
    checked_values = {
        check_key(value_id, "value id"): value
        if value is DELETED
        else py_cell(value, partial(where, "value", value_id))
        for value_id, value in values.items()
    }
    return checked_tables, checked_values
