"""The public API is pinned: adding, removing or renaming an exported name must be a
deliberate change of this file, and the package's own lists of names cannot drift."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
import types
from typing import Any

import pytest

import partywidget
import partywidget.server

PARTYWIDGET_API = [
    "DELETED",
    "CloseEvent",
    "CodecError",
    "ErrorEvent",
    "MemoryStorage",
    "MessageEvent",
    "OpenEvent",
    "PartyKitPersister",
    "PartySocket",
    "PartyStoreWidget",
    "Persister",
    "SQLiteStorage",
    "ServerThread",
    "Status",
    "Store",
    "TinyBasePartyKitServer",
    "__version__",
    "create_app",
    "create_custom_persister",
    "create_partykit_persister",
    "create_store",
    "run_in_thread",
]

SERVER_API = [
    "Connection",
    "Limits",
    "MemoryStorage",
    "PartyServer",
    "SQLiteStorage",
    "ServerThread",
    "Storage",
    "TinyBasePartyKitServer",
    "TinyBaseServerConfig",
    "create_app",
    "run_in_thread",
]


def public_members(module: types.ModuleType, also: tuple[str, ...] = ()) -> list[str]:
    """Names a user can reach on ``module``, as httpx's test_exported_members counts them:
    everything not underscored (plus ``also``), except submodules (Python binds those on
    their package when they are imported) and the ``from __future__`` feature flag."""
    return sorted(
        name
        for name, value in vars(module).items()
        if (not name.startswith("_") or name in also)
        and not isinstance(value, types.ModuleType)
        and name != "annotations"
    )


def type_checking_imports(module: types.ModuleType) -> dict[str, str]:
    """``{name: relative module}`` of the imports under ``if TYPE_CHECKING:``."""
    tree = ast.parse(inspect.getsource(module))
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            for statement in node.body:
                assert isinstance(statement, ast.ImportFrom)
                for alias in statement.names:
                    # "X as X" marks a re-export for type checkers (PEP 484).
                    assert alias.asname == alias.name
                    found[alias.name] = "." * statement.level + (statement.module or "")
    return found


def test_the_top_level_api_is_pinned() -> None:
    assert partywidget.__all__ == sorted(PARTYWIDGET_API)


def test_every_top_level_name_loads_and_nothing_else_is_public() -> None:
    for name in partywidget.__all__:
        assert getattr(partywidget, name) is not None
    assert public_members(partywidget, also=("__version__",)) == partywidget.__all__
    assert dir(partywidget) == partywidget.__all__


def test_the_lazy_table_and_the_type_checking_imports_agree() -> None:
    lazy: dict[str, str] = partywidget._LAZY
    assert type_checking_imports(partywidget) == lazy
    assert sorted([*lazy, "DELETED", "__version__"]) == partywidget.__all__


@pytest.mark.parametrize("name", sorted(partywidget._LAZY))
def test_each_lazy_name_is_the_object_its_module_defines(name: str) -> None:
    value: Any = getattr(partywidget, name)
    module = sys.modules[f"partywidget{partywidget._LAZY[name]}"]
    assert value is getattr(module, name)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Lobby'"):
        _ = partywidget.Lobby


def test_importing_the_package_stays_light() -> None:
    """The room server and the CLI import partywidget; they must not pay for pandas or
    anywidget. A fresh interpreter, since this one has loaded everything already."""
    code = "import sys, partywidget; print(sorted({'pandas', 'anywidget'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_server_api_is_pinned() -> None:
    assert partywidget.server.__all__ == sorted(SERVER_API)
    assert public_members(partywidget.server) == partywidget.server.__all__
