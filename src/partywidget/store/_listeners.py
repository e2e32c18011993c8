"""Listener registration and calls, with TinyBase's wildcard trees and Id pool.

Each kind of listener lives in a tree of dicts keyed by the Ids it was registered for
(``None`` is a wildcard), whose leaves are ordered sets (dicts) of listener Ids. A change
at ``(t, r, c)`` reaches the leaves ``(t,r,c), (t,r,*), (t,*,c), (t,*,*), (*,r,c), ...`` in
that order, exactly as TinyBase's ``getWildcardedLeaves``. Listener Ids are strings from a
pool that reuses released Ids first-in-first-out, as TinyBase's ``getPoolFunctions``.

``KINDS`` describes each kind of data listener once (the names of its Ids, how
``call_listener`` expands its wildcards and what it passes, how TinyBase counts it), so
registering one is a single generic call and the Store's ``add_*_listener`` methods are
one line each.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from partywidget.model import DELETED

if TYPE_CHECKING:
    from partywidget.store._store import Store

__all__ = [
    "ALL",
    "KINDS",
    "NO_ID",
    "Listener",
    "ListenerKind",
    "ListenerRegistry",
    "Tree",
    "tree_size",
]

Listener = Callable[..., Any]
# A tree node: id -> child node, or (at the leaves) listener id -> None.
Tree = dict[Any, Any]


class _Sentinel:
    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


# In a dispatch path: "every child at this level" (JavaScript's null in callListeners).
ALL: Final = _Sentinel("ALL")
# In a registration path: "no Id given" (JavaScript's undefined, e.g. a sorted-row-Ids
# listener without a cell Id); only ALL dispatches reach it.
NO_ID: Final = _Sentinel("NO_ID")

_ROOT: Final = ("",)
_MAX_POOL: Final = 1000


class _Record:
    __slots__ = ("extra_args", "extra_count", "listener", "path", "path_getters", "tree")

    def __init__(
        self,
        listener: Listener,
        tree: Tree,
        path: tuple[Any, ...],
        path_getters: Sequence[Callable[..., list[str]]],
        extra_args: Callable[[list[Any]], list[Any]] | None,
        extra_count: int,
    ) -> None:
        self.listener = listener
        self.tree = tree
        self.path = path
        self.path_getters = path_getters
        self.extra_args = extra_args
        self.extra_count = extra_count


def tree_size(tree: Tree, depth: int) -> int:
    """TinyBase's ``collSizeN``: entries ``depth`` levels down (used for listener stats)."""
    if depth <= 1:
        return len(tree)
    return sum(tree_size(child, depth - 1) for child in tree.values())


class ListenerRegistry:
    """All of one Store's listeners: ids, records, and calls in TinyBase's order."""

    def __init__(self, owner: Any) -> None:
        self._owner = owner
        self._records: dict[str, _Record] = {}
        self._pool: list[str] = []
        self._next_id = 0
        self._added = 0  # how many listeners were ever added (to spot additions mid-call)
        # Data listeners (not the transaction ones): listener id -> 1 if a mutator, else 0.
        self._data_mutators: dict[str, int] = {}
        # Per (non-mutator, mutator): how many data listeners exist. Zero means the
        # finishing transaction can skip listener dispatch entirely.
        self.data_counts = [0, 0]
        # Per (non-mutator, mutator): which groups of tabular listeners exist, as cached
        # by the dispatch (None: recompute, after any change to the data listeners).
        self.tabular_flags: list[tuple[bool, bool, bool] | None] = [None, None]

    def _new_id(self) -> str:
        if self._pool:
            return self._pool.pop(0)
        listener_id = str(self._next_id)
        self._next_id += 1
        return listener_id

    def add(
        self,
        listener: Listener,
        tree: Tree,
        path: tuple[Any, ...] | None = None,
        path_getters: Sequence[Callable[..., list[str]]] = (),
        extra_args: Callable[[list[Any]], list[Any]] | None = None,
        extra_count: int = 0,
    ) -> str:
        """Register ``listener`` at ``path`` in ``tree``; return its new Id.

        ``extra_args``/``extra_count`` describe what :meth:`call_one` passes after the
        Ids (TinyBase's ``extraArgsGetter``; missing ones are padded with ``None``).
        """
        if not callable(listener):
            raise TypeError(f"listener must be callable, not {type(listener).__name__}")
        listener_id = self._new_id()
        self._added += 1
        full_path = path if path is not None else _ROOT
        self._records[listener_id] = _Record(
            listener, tree, full_path, path_getters, extra_args, extra_count
        )
        node = tree
        for key in full_path[:-1]:
            node = node.setdefault(key, {})
        node.setdefault(full_path[-1], {})[listener_id] = None
        return listener_id

    def add_data(
        self,
        listener: Listener,
        trees: tuple[Tree, Tree],
        mutator: Any,
        path: tuple[Any, ...] | None,
        path_getters: Sequence[Callable[..., list[str]]],
        extra_args: Callable[[list[Any]], list[Any]] | None,
        extra_count: int,
    ) -> str:
        """:meth:`add` a data listener to its (non-mutator, mutator) ``trees``, counted."""
        m = 1 if mutator else 0
        listener_id = self.add(listener, trees[m], path, path_getters, extra_args, extra_count)
        self._data_mutators[listener_id] = m
        self.data_counts[m] += 1
        self.tabular_flags[m] = None
        return listener_id

    def delete(self, listener_id: str) -> None:
        record = self._records.pop(listener_id, None)
        if record is None:
            return
        m = self._data_mutators.pop(listener_id, None)
        if m is not None:
            self.data_counts[m] -= 1
            self.tabular_flags[m] = None
        nodes: list[Tree] = [record.tree]
        for key in record.path[:-1]:
            nodes.append(nodes[-1][key])
        leaf = nodes[-1][record.path[-1]]
        leaf.pop(listener_id, None)
        # Prune empty leaves and branches so "has listeners" checks stay cheap.
        child: Tree = leaf
        for node, key in zip(reversed(nodes), reversed(record.path), strict=True):
            if child:
                break
            del node[key]
            child = node
        if listener_id.isdigit() and len(self._pool) < _MAX_POOL:
            self._pool.append(listener_id)

    def call(self, tree: Tree, ids: Sequence[Any] | None, *extra: Any) -> None:
        """Call every listener in ``tree`` matching ``ids`` (TinyBase's ``callListeners``)."""
        if not tree:
            return
        if ids is None:
            root = tree.get("")
            if root is None:
                return
            nodes: list[Tree] = [root]
            args: tuple[Any, ...] = extra
        else:
            # Fast path: follow the single matching branch (the usual, sparse, case:
            # only exact-Id or only wildcard listeners at each level), no lists.
            node = tree
            depth = 0
            for id_ in ids:
                if id_ is ALL:
                    break
                exact = None if id_ is None else node.get(id_)
                wild = node.get(None)
                if exact is None:
                    if wild is None:
                        return
                    node = wild
                elif wild is None:
                    node = exact
                else:
                    break
                depth += 1
            nodes = [node]
            # Breadth-first expansion keeps TinyBase's depth-first leaf order, because
            # each node's children are appended in (id, wildcard) order.
            for id_ in ids[depth:] if depth < len(ids) else ():
                found: list[Tree] = []
                if id_ is ALL:
                    for node in nodes:
                        found.extend(node.values())
                else:
                    for node in nodes:
                        if id_ is not None:
                            child = node.get(id_)
                            if child is not None:
                                found.append(child)
                        child = node.get(None)
                        if child is not None:
                            found.append(child)
                if not found:
                    return
                nodes = found
            args = (*ids, *extra)
        owner = self._owner
        records = self._records
        for leaf in nodes:
            added = self._added
            listener_ids = list(leaf)
            for listener_id in listener_ids:
                record = records.get(listener_id)
                if record is not None:
                    record.listener(owner, *args)
            if self._added != added:
                # A listener was added meanwhile: like JavaScript's Set iteration, also
                # call the ones that joined this leaf.
                self._call_added(leaf, set(listener_ids), args)

    def _call_added(self, leaf: Tree, done: set[str], args: tuple[Any, ...]) -> None:
        while True:
            new_ids = [listener_id for listener_id in leaf if listener_id not in done]
            if not new_ids:
                return
            for listener_id in new_ids:
                done.add(listener_id)
                record = self._records.get(listener_id)
                if record is not None:
                    record.listener(self._owner, *args)

    def call_then_throw(self, tree: Tree) -> None:
        """Call every listener without path; re-raise the first error after all ran."""
        if not tree:
            return
        error: BaseException | None = None
        for listener_id in list(tree.get("", {})):
            record = self._records.get(listener_id)
            if record is None:
                continue
            try:
                record.listener(self._owner)
            except Exception as exc:
                if error is None:
                    error = exc
        if error is not None:
            raise error

    def call_one(self, listener_id: str) -> None:
        """TinyBase's ``callListener``: call one listener as if its things changed.

        Wildcards expand to the Ids currently in the Store; arguments that only a real
        change provides (such as ``get_cell_change``) are ``None``.
        """
        record = self._records.get(listener_id)
        if record is None:
            return
        path = () if record.path == _ROOT else record.path

        def call_with(ids: list[Any]) -> None:
            index = len(ids)
            if index == len(path):
                extra = record.extra_args(ids) if record.extra_args is not None else []
                pad = [None] * (record.extra_count - len(extra))
                record.listener(self._owner, *ids, *extra, *pad)
            elif path[index] is None:
                getter = record.path_getters[index] if index < len(record.path_getters) else None
                for id_ in getter(*ids) if getter is not None else []:
                    call_with([*ids, id_])
            else:
                call_with([*ids, None if path[index] is NO_ID else path[index]])

        call_with([])


# -- the Store's kinds of data listener -------------------------------------------------


class ListenerKind(NamedTuple):
    """One kind of data listener: what ``_add_listener`` needs to register it.

    Its trees are the Store's ``_<kind>_listeners`` attribute.
    """

    ids: tuple[str, ...]  # the names of the Ids of its path (for error messages)
    getters: tuple[str, ...]  # Store methods listing each level's Ids, for call_listener
    # What call_listener passes after the Ids, from (store, ids); None pads with None.
    extra: Callable[[Store, list[str]], list[Any]] | None = None
    extra_count: int = 1
    stats_depth: int = 2  # tree depth at which get_listener_stats counts (TinyBase's)


def _has(method: str) -> Callable[[Store, list[str]], list[Any]]:
    """call_listener's argument for a has-* listener: ``[store.<method>(*ids)]``."""
    return lambda store, ids: [getattr(store, method)(*ids)]


def _cell_now(store: Store, ids: list[str]) -> list[Any]:
    cell = store.get_cell(*ids) if store.has_cell(*ids) else DELETED
    return [cell, cell]


def _value_now(store: Store, ids: list[str]) -> list[Any]:
    value = store.get_value(ids[0]) if store.has_value(ids[0]) else DELETED
    return [value, value]


_T_ = ("table_id",)
_TR = ("table_id", "row_id")
_TRC = ("table_id", "row_id", "cell_id")
_TABLES = ("get_table_ids",)
_ROWS = ("get_table_ids", "get_row_ids")
_CELLS = ("get_table_ids", "get_row_ids", "get_cell_ids")
_VALUES = ("get_value_ids",)

# In get_listener_stats' order. (add_sorted_row_ids_listener registers a wrapper of the
# user's listener, at a path it checks itself.)
KINDS: dict[str, ListenerKind] = {
    "has_tables": ListenerKind((), (), _has("has_tables")),
    "tables": ListenerKind((), ()),
    "table_ids": ListenerKind((), ()),
    "has_table": ListenerKind(_T_, _TABLES, _has("has_table")),
    "table": ListenerKind(_T_, _TABLES),
    "table_cell_ids": ListenerKind(_T_, _TABLES),
    "has_table_cell": ListenerKind(
        ("table_id", "cell_id"),
        ("get_table_ids", "get_table_cell_ids"),
        _has("has_table_cell"),
        stats_depth=3,
    ),
    "row_count": ListenerKind(_T_, _TABLES),
    "row_ids": ListenerKind(_T_, _TABLES),
    # TinyBase counts (table, cell) pairs here rather than listeners; so do we.
    "sorted_row_ids": ListenerKind(("table_id", "cell_id"), _TABLES, None, 0),
    "has_row": ListenerKind(_TR, _ROWS, _has("has_row"), stats_depth=3),
    "row": ListenerKind(_TR, _ROWS, stats_depth=3),
    "cell_ids": ListenerKind(_TR, _ROWS, stats_depth=3),
    "has_cell": ListenerKind(_TRC, _CELLS, _has("has_cell"), stats_depth=4),
    "cell": ListenerKind(_TRC, _CELLS, _cell_now, 3, stats_depth=4),
    "invalid_cell": ListenerKind(_TRC, (), stats_depth=4),
    "has_values": ListenerKind((), (), _has("has_values")),
    "values": ListenerKind((), ()),
    "value_ids": ListenerKind((), ()),
    "has_value": ListenerKind(("value_id",), _VALUES, _has("has_value")),
    "value": ListenerKind(("value_id",), _VALUES, _value_now, 3),
    "invalid_value": ListenerKind(("value_id",), ()),
}


def listener_stats(store: Store) -> dict[str, int]:
    """How many listeners of each kind are registered (TinyBase's counting)."""
    stats = {
        kind: tree_size(pair[0], spec.stats_depth) + tree_size(pair[1], spec.stats_depth)
        for kind, spec in KINDS.items()
        for pair in [getattr(store, f"_{kind}_listeners")]
    }
    will, did = store._finish_transaction_listeners
    stats["transaction"] = sum(
        tree_size(tree, 2) for tree in (store._start_transaction_listeners, will, did)
    )
    return stats
