"""One way to configure a component: a frozen dataclass of options.

Every tunable part of partywidget (the PartySocket, the PartyKit persister and its
resync engine, the widget's grid, the room server's limits) takes one frozen dataclass.
Callers that hold a plain mapping -- a TinyBase config shared with JavaScript, a JSON
file, a notebook's literal -- get the same dataclass through :func:`options_from`, which
also takes TinyBase's camelCase spelling of every field. Unknown keys are an error,
never silently ignored, so a typo cannot turn an option off.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

__all__ = ["camel_case", "options_from"]

T = TypeVar("T")


def camel_case(name: str) -> str:
    """``max_message_bytes`` -> ``maxMessageBytes`` (TinyBase's spelling)."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def options_from(cls: type[T], value: T | Mapping[str, Any] | None = None, /, **changes: Any) -> T:
    """Build ``cls`` (a dataclass) from ``None``, an instance or a mapping, then apply
    ``changes`` (snake_case field names).

    A mapping may use snake_case or camelCase keys; giving one field both ways, or a
    key that is no field, raises :class:`ValueError`. Any other type raises
    :class:`TypeError`.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    names = [field.name for field in dataclasses.fields(cls)]
    if value is None:
        base: Any = cls()
    elif isinstance(value, cls):
        base = value
    elif isinstance(value, Mapping):
        spelled = {name: name for name in names} | {camel_case(name): name for name in names}
        kwargs: dict[str, Any] = {}
        unknown = []
        for key, item in value.items():
            name = spelled.get(key) if isinstance(key, str) else None
            if name is None:
                unknown.append(key)
            elif name in kwargs:
                raise ValueError(f"{cls.__name__} option {name!r} is given twice")
            else:
                kwargs[name] = item
        if unknown:
            raise ValueError(f"unknown {cls.__name__} options: {sorted(map(str, unknown))}")
        base = cls(**kwargs)
    else:
        raise TypeError(
            f"{cls.__name__} options must be a {cls.__name__}, a mapping or None, "
            f"not {type(value).__name__}"
        )
    unknown_changes = sorted(set(changes) - set(names))
    if unknown_changes:
        raise ValueError(f"unknown {cls.__name__} options: {unknown_changes}")
    result: T = dataclasses.replace(base, **changes) if changes else base
    return result
