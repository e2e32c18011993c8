"""TinyBase 10 schema validation: which schemas are accepted, and how they are cleaned.

A cell or value schema may hold ``type`` (one type name or a non-empty list of them),
``enum`` (instead of ``type``: a non-empty list of scalar, non-null values), ``default``,
``allowNull`` and ``required``; any other key is dropped. An invalid cell schema is
dropped from its table schema, an empty table schema from the tables schema, and an
empty result means the whole ``set_*_schema`` call is ignored -- TinyBase never raises
for a bad schema. A ``default`` that does not fit the type or enum is dropped; a JSON
default is kept encoded, like a stored JSON cell.
"""

from __future__ import annotations

from typing import Any, Final

from partywidget.store._cells import (
    cell_type,
    decode_if_json,
    encode_if_json,
    is_reserved_string,
)
from partywidget.store._js import js_keys, js_truthy, strict_equal

__all__ = [
    "ALLOW_NULL",
    "DEFAULT",
    "ENUM",
    "REQUIRED",
    "TYPE",
    "decode_schema",
    "type_includes",
    "validate_cell_or_value_schema",
    "validate_tables_schema",
    "validate_values_schema",
]

TYPE: Final = "type"
ENUM: Final = "enum"
DEFAULT: Final = "default"
ALLOW_NULL: Final = "allowNull"
REQUIRED: Final = "required"
_SCHEMA_KEYS: Final = (TYPE, ENUM, DEFAULT, ALLOW_NULL, REQUIRED)
_TYPES: Final = ("string", "boolean", "number", "object", "array")
_MISSING: Final = object()


def _is_schema_type(type_: Any) -> bool:
    return type_.__class__ is str and type_ in _TYPES


def _is_schema_types(types: Any) -> bool:
    if isinstance(types, list):
        return bool(types) and all(_is_schema_type(type_) for type_ in types)
    return _is_schema_type(types)


def type_includes(types: Any, type_: str | None) -> bool:
    """Whether a schema's ``type`` (one name or a list of names) admits ``type_``."""
    if isinstance(types, list):
        return type_ in types
    return bool(types == type_)


def enum_includes(enum: list[Any], value: Any) -> bool:
    return any(strict_equal(item, value) for item in enum)


def _valid_enum_value(value: Any) -> bool:
    type_ = cell_type(value)
    return (
        value is not None
        and type_ is not None
        and type_ not in ("object", "array")
        and not is_reserved_string(value)
    )


def validate_cell_or_value_schema(schema: Any) -> bool:
    """Clean ``schema`` in place and say whether it is a valid cell/value schema."""
    if not isinstance(schema, dict) or not schema:
        return False
    for key in list(schema):
        if key not in _SCHEMA_KEYS:
            del schema[key]
    if not schema:
        return False
    type_ = schema.get(TYPE, _MISSING)
    enum = schema.get(ENUM, _MISSING)
    if enum is _MISSING:
        if not _is_schema_types(type_):
            return False
    elif (
        type_ is not _MISSING
        or not isinstance(enum, list)
        or not enum
        or not all(_valid_enum_value(value) for value in enum)
    ):
        return False
    default = schema.get(DEFAULT, _MISSING)
    if default is None and not js_truthy(schema.get(ALLOW_NULL)):
        return False
    if default is not None:
        fits = (
            default is not _MISSING
            and (
                type_includes(type_, cell_type(default))
                if enum is _MISSING
                else enum_includes(enum, default)
            )
            and not is_reserved_string(default)
        )
        if fits:
            schema[DEFAULT] = encode_if_json(default)
        else:
            schema.pop(DEFAULT, None)
    return True


def _validate_children(obj: Any, validate_child: Any) -> bool:
    """TinyBase's ``objValidate`` for schemas: drop invalid children; non-empty result?"""
    if not isinstance(obj, dict) or not obj:
        return False
    for key in js_keys(obj):
        if not validate_child(obj[key]):
            del obj[key]
    return bool(obj)


def validate_tables_schema(tables_schema: Any) -> bool:
    """Clean a (copied) tables schema in place; ``False`` means ignore the whole call."""
    return _validate_children(
        tables_schema,
        lambda table_schema: _validate_children(table_schema, validate_cell_or_value_schema),
    )


def validate_values_schema(values_schema: Any) -> bool:
    """Clean a (copied) values schema in place; ``False`` means ignore the whole call."""
    return _validate_children(values_schema, validate_cell_or_value_schema)


def decode_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A stored schema as the user sees it (JSON ``default`` decoded)."""
    return {
        key: decode_if_json(value) if key == DEFAULT else value for key, value in schema.items()
    }
