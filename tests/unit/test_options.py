from __future__ import annotations

from dataclasses import dataclass

import pytest

from partywidget._options import camel_case, options_from


@dataclass(frozen=True)
class Example:
    max_message_bytes: int = 10
    store_path: str = "/store"


def test_camel_case() -> None:
    assert camel_case("max_message_bytes") == "maxMessageBytes"
    assert camel_case("enabled") == "enabled"


def test_none_gives_defaults_and_instances_pass_through() -> None:
    assert options_from(Example) == Example()
    given = Example(3)
    assert options_from(Example, given) is given


def test_mapping_in_either_spelling() -> None:
    assert options_from(Example, {"maxMessageBytes": 5}) == Example(5)
    assert options_from(Example, {"max_message_bytes": 5, "storePath": "/x"}) == Example(5, "/x")


def test_changes_override() -> None:
    assert options_from(Example, {"storePath": "/x"}, max_message_bytes=7) == Example(7, "/x")


def test_unknown_and_twice_given_keys_are_errors() -> None:
    with pytest.raises(ValueError, match="unknown Example options: \\['nope'\\]"):
        options_from(Example, {"nope": 1})
    with pytest.raises(ValueError, match="given twice"):
        options_from(Example, {"store_path": "/a", "storePath": "/b"})
    with pytest.raises(ValueError, match="unknown Example options"):
        options_from(Example, None, nope=1)
    with pytest.raises(TypeError, match="must be a Example, a mapping or None"):
        options_from(Example, 3)
