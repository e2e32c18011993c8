"""The TinyBase data model as Python types, shared by every layer.

Kept in its own dependency-free module so that the codec, the Store, the persister and the
server can all speak of cells and Changes without importing one another.
"""

from __future__ import annotations

from typing import Any, Final, TypeAlias

__all__ = [
    "DELETED",
    "Cell",
    "CellOrDeleted",
    "Changes",
    "Content",
    "Deleted",
    "Row",
    "Table",
    "Tables",
    "Value",
    "Values",
]


class Deleted:
    """The type of :data:`DELETED`, Python's stand-in for TinyBase's ``undefined``.

    TinyBase marks a deleted table, row, cell or value in Changes with ``undefined``.
    Python has no ``undefined`` and ``None`` is already a legal cell (JSON ``null``), so a
    dedicated singleton is needed; on the wire it becomes ``"\\uFFFC"``.
    """

    _instance: Deleted | None = None

    def __new__(cls) -> Deleted:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "DELETED"

    def __reduce__(self) -> str:
        return "DELETED"

    def __copy__(self) -> Deleted:
        return self

    def __deepcopy__(self, memo: Any) -> Deleted:
        return self


DELETED: Final[Deleted] = Deleted()

# A cell or value: str, finite int/float (not bool-as-number), bool, None, or a JSON object
# or array (dict with str keys / list) of such things.
Cell: TypeAlias = Any
Value: TypeAlias = Any
CellOrDeleted: TypeAlias = Any
Row: TypeAlias = dict[str, Cell]
Table: TypeAlias = dict[str, Row]
Tables: TypeAlias = dict[str, Table]
Values: TypeAlias = dict[str, Value]
# [tables, values]
Content: TypeAlias = tuple[Tables, Values]
# [changed_tables, changed_values, 1]: DELETED at any level means "deleted".
Changes: TypeAlias = tuple[dict[str, Any], dict[str, Any], int]
