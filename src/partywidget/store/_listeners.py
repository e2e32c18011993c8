"""Listener registration and dispatch, with TinyBase's wildcard trees and Id pool.

Each kind of listener lives in a tree of dicts keyed by the Ids it was registered for
(``None`` is a wildcard), whose leaves are ordered sets (dicts) of listener Ids. A change
at ``(t, r, c)`` reaches the leaves ``(t,r,c), (t,r,*), (t,*,c), (t,*,*), (*,r,c), ...`` in
that order, exactly as TinyBase's ``getWildcardedLeaves``. Listener Ids are strings from a
pool that reuses released Ids first-in-first-out, as TinyBase's ``getPoolFunctions``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final

__all__ = ["ALL", "NO_ID", "Listener", "ListenerRegistry", "Tree", "tree_size"]

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

    def delete(self, listener_id: str) -> None:
        record = self._records.pop(listener_id, None)
        if record is None:
            return
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
