"""The Store methods a widget passes through, declared once each with their signature.

Why: users call ``w.set_row(...)``, ``w.get_cell(...)`` as on a Store, and the widget
must run each on its event loop's thread (the Store is not thread-safe) and refuse
writes when read-only. The rule lives in one place, :meth:`StoreFacade._store_call`;
each method below is only a signature and a docstring (so ``help()``, IDEs and mypy see
the real parameters), turned into a call of that rule by :func:`writer` or
:func:`reader`. :class:`Tables` (``w.tables``) is a DataFrame mapping over the same
methods.
"""

# The decorated methods' bodies are intentionally empty: the decorator supplies them.
# mypy: disable-error-code="empty-body"

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Self, TypeVar

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["StoreFacade", "Tables", "reader", "writer"]

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S", bound="StoreFacade")


def _forward(method: Callable[..., Any], call: Callable[..., Any]) -> None:
    """Give ``call`` the name, docstring and (via ``__wrapped__``) signature of ``method``."""
    call.__name__ = method.__name__
    call.__qualname__ = method.__qualname__
    call.__doc__ = method.__doc__
    call.__wrapped__ = method  # type: ignore[attr-defined]


def writer(method: Callable[Concatenate[S, P], S]) -> Callable[Concatenate[S, P], S]:
    """The Store setter of the same name; returns the widget, so calls chain."""
    name = method.__name__

    def call(self: S, /, *args: P.args, **kwargs: P.kwargs) -> S:
        self._store_call(name, args, kwargs, write=True)
        return self

    _forward(method, call)
    return call


def reader(
    method: Callable[Concatenate[S, P], R], *, write: bool = False
) -> Callable[Concatenate[S, P], R]:
    """The Store method of the same name; returns what the Store returns."""
    name = method.__name__

    def call(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        result: R = self._store_call(name, args, kwargs, write=write)
        return result

    _forward(method, call)
    return call


def writer_with_result(method: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
    """A Store write that returns the Store's result (a new row id, an actions' result)."""
    return reader(method, write=True)


class StoreFacade:
    """TinyBase Store methods, run by :meth:`_store_call` (which the widget defines)."""

    def _store_call(
        self, name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any], *, write: bool
    ) -> Any:
        raise NotImplementedError

    # -- writes (chainable) -----------------------------------------------------------------

    @writer
    def set_tables(self, tables: Mapping[str, Any]) -> Self:
        """Replace all tables (``Store.set_tables``)."""

    @writer
    def set_row(self, table_id: str, row_id: str, row: Mapping[str, Any]) -> Self:
        """Replace a row (``Store.set_row``)."""

    @writer
    def set_partial_row(self, table_id: str, row_id: str, row: Mapping[str, Any]) -> Self:
        """Set some cells of a row (``Store.set_partial_row``)."""

    @writer
    def set_cell(self, table_id: str, row_id: str, cell_id: str, cell: Any) -> Self:
        """Set one cell (``Store.set_cell``)."""

    @writer
    def set_values(self, values: Mapping[str, Any]) -> Self:
        """Replace all values (``Store.set_values``)."""

    @writer
    def set_partial_values(self, values: Mapping[str, Any]) -> Self:
        """Set some values (``Store.set_partial_values``)."""

    @writer
    def set_value(self, value_id: str, value: Any) -> Self:
        """Set one value (``Store.set_value``)."""

    @writer
    def set_content(self, content: Any) -> Self:
        """Replace tables and values (``Store.set_content``)."""

    @writer
    def apply_changes(self, changes: Any) -> Self:
        """Apply TinyBase Changes, deletions as ``DELETED`` (``Store.apply_changes``)."""

    @writer
    def del_tables(self) -> Self:
        """Delete all tables (``Store.del_tables``)."""

    @writer
    def del_table(self, table_id: str) -> Self:
        """Delete a table (``Store.del_table``)."""

    @writer
    def del_row(self, table_id: str, row_id: str) -> Self:
        """Delete a row (``Store.del_row``)."""

    @writer
    def del_cell(self, table_id: str, row_id: str, cell_id: str) -> Self:
        """Delete a cell (``Store.del_cell``)."""

    @writer
    def del_values(self) -> Self:
        """Delete all values (``Store.del_values``)."""

    @writer
    def del_value(self, value_id: str) -> Self:
        """Delete a value (``Store.del_value``)."""

    # -- writes with a result ---------------------------------------------------------------

    @writer_with_result
    def add_row(self, table_id: str, row: Mapping[str, Any]) -> str | None:
        """Add a row with a new id (TinyBase's ``addRow``); returns the id."""

    @writer_with_result
    def transaction(self, actions: Callable[[], R]) -> R:
        """Run ``actions()`` as one Store transaction on the loop thread (one message);
        returns its result."""

    # -- reads (copies) ---------------------------------------------------------------------

    @reader
    def get_table(self, table_id: str) -> dict[str, Any]:
        """A copy of a table, ``{row_id: {cell_id: cell}}``."""

    @reader
    def get_table_ids(self) -> list[str]:
        """The ids of the tables."""

    @reader
    def get_cell(self, table_id: str, row_id: str, cell_id: str) -> Any:
        """One cell (None if absent)."""

    @reader
    def get_value(self, value_id: str) -> Any:
        """One value (None if absent)."""

    @reader
    def get_content(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The local Store's content ``(tables, values)`` (copies)."""


class Tables(MutableMapping[str, "pd.DataFrame"]):
    """``w.tables``: the Store's tables as DataFrames; assigning a frame diffs it in."""

    def __init__(self, widget: Any) -> None:
        self._widget = widget

    def __getitem__(self, table_id: str) -> pd.DataFrame:
        if table_id not in self._widget.get_table_ids():
            raise KeyError(table_id)
        frame: pd.DataFrame = self._widget.df(table_id)
        return frame

    def __setitem__(self, table_id: str, frame: pd.DataFrame) -> None:
        self._widget.set_table(table_id, frame)

    def __delitem__(self, table_id: str) -> None:
        if table_id not in self._widget.get_table_ids():
            raise KeyError(table_id)
        self._widget.del_table(table_id)

    def __iter__(self) -> Iterator[str]:
        return iter(self._widget.get_table_ids())

    def __len__(self) -> int:
        return len(self._widget.get_table_ids())

    def __repr__(self) -> str:
        return f"<tables {self._widget.get_table_ids()!r}>"
