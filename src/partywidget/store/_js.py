"""The JavaScript semantics the Store uses, under the names its modules import.

The rules themselves live in :mod:`partywidget.jsvalue` (one home for every layer);
this module only keeps the Store's historical names importable.
"""

from __future__ import annotations

from partywidget.jsvalue import (
    is_array_index,
    js_less,
    js_number_str,
    js_truthy,
    strict_equal,
)
from partywidget.jsvalue import js_key_order as js_keys

__all__ = [
    "is_array_index",
    "js_keys",
    "js_less",
    "js_number_str",
    "js_truthy",
    "strict_equal",
]
