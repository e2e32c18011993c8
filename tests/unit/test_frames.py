"""DataFrames from Store tables, and DataFrames back into minimal Changes (real Store)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from partywidget.frames import FrameCache, table_changes_from_frame, table_to_frame
from partywidget.model import DELETED
from partywidget.store import create_store


@pytest.fixture
def store():
    s = create_store()
    s.set_table(
        "pets",
        {
            "fido": {"species": "dog", "legs": 4, "weight": 12.5, "good": True},
            "felix": {"species": "cat", "legs": 4, "weight": 4, "tags": ["x"]},
            "polly": {"species": "parrot", "good": False, "meta": {"a": 1}},
        },
    )
    return s


def test_frame_shape_order_and_missing_cells(store):
    df = table_to_frame(store, "pets")
    assert df.index.name == "row_id"
    assert list(df.index) == ["fido", "felix", "polly"]
    assert list(df.columns) == ["species", "legs", "weight", "good", "tags", "meta"]
    assert df.loc["polly", "legs"] is pd.NA
    assert df.loc["felix", "good"] is pd.NA
    assert df.loc["felix", "tags"] == ["x"]
    assert df.loc["polly", "meta"] == {"a": 1}


def test_inferred_nullable_dtypes(store):
    df = table_to_frame(store, "pets")
    assert str(df["species"].dtype) == "string"
    assert str(df["legs"].dtype) == "Int64"
    assert str(df["weight"].dtype) == "Float64"
    assert str(df["good"].dtype) == "boolean"
    assert df["tags"].dtype == object
    assert df["meta"].dtype == object
    assert df["legs"].tolist() == [4, 4, pd.NA]


def test_mixed_column_is_object():
    s = create_store().set_table("t", {"a": {"x": 1}, "b": {"x": "one"}, "c": {"x": True}})
    df = table_to_frame(s, "t")
    assert df["x"].dtype == object
    assert df["x"].tolist() == [1, "one", True]


def test_bools_and_ints_do_not_mix_into_numbers():
    s = create_store().set_table("t", {"a": {"x": 1}, "b": {"x": True}})
    assert table_to_frame(s, "t")["x"].dtype == object


def test_empty_and_missing_table():
    df = table_to_frame(create_store(), "nothing")
    assert df.empty
    assert df.index.name == "row_id"


def test_schema_sets_column_order_and_dtypes():
    s = create_store().set_tables_schema(
        {"t": {"n": {"type": "number"}, "s": {"type": "string"}, "b": {"type": "boolean"}}}
    )
    s.set_row("t", "r1", {"b": True, "s": "x", "n": 3})
    s.set_row("t", "r2", {"n": 2.5})
    df = table_to_frame(s, "t")
    assert list(df.columns) == ["n", "s", "b"]
    assert [str(t) for t in df.dtypes] == ["Float64", "string", "boolean"]
    assert df["n"].tolist() == [3.0, 2.5]
    assert df.loc["r2", "s"] is pd.NA


def test_cache_rebuilds_only_changed_tables(store):
    store.set_table("other", {"r": {"v": 1}})
    cache = FrameCache(store)
    first = cache.frame("pets")
    cache.frame("other")
    assert cache.builds == 2
    again = cache.frame("pets")
    assert cache.builds == 2  # nothing changed: no rebuild
    pd.testing.assert_frame_equal(first, again)

    store.set_cell("other", "r", "v", 2)
    cache.frame("pets")
    assert cache.builds == 2  # another table changed: pets still cached
    assert cache.frame("other").loc["r", "v"] == 2
    assert (cache.builds, cache.patched) == (2, 1)

    store.set_cell("pets", "fido", "legs", 3)  # one cell, same type: patched, not rebuilt
    assert cache.frame("pets").loc["fido", "legs"] == 3
    assert (cache.builds, cache.patched) == (2, 2)
    store.set_row("pets", "rex", {"legs": 4})  # a new row: rebuilt
    assert "rex" in cache.frame("pets").index
    assert cache.builds == 3
    cache.close()


def test_cache_is_not_corrupted_by_callers(store):
    cache = FrameCache(store)
    df = cache.frame("pets")
    df.loc["fido", "legs"] = 99
    df["new"] = 1
    again = cache.frame("pets")
    assert again.loc["fido", "legs"] == 4
    assert "new" not in again.columns


def test_cache_notices_schema_changes(store):
    cache = FrameCache(store)
    assert str(cache.frame("pets")["legs"].dtype) == "Int64"
    store.set_tables_schema({"pets": {"legs": {"type": "number"}, "species": {"type": "string"}}})
    assert str(cache.frame("pets")["legs"].dtype) == "Float64"


def test_unchanged_frame_gives_no_changes(store):
    df = table_to_frame(store, "pets")
    assert table_changes_from_frame(store, "pets", df) == ({}, {}, 1)


def test_one_edited_cell_gives_one_change(store):
    df = table_to_frame(store, "pets")
    df.loc["felix", "legs"] = 3
    assert table_changes_from_frame(store, "pets", df) == ({"pets": {"felix": {"legs": 3}}}, {}, 1)


def test_na_deletes_rows_and_columns(store):
    df = table_to_frame(store, "pets")
    df.loc["fido", "weight"] = pd.NA
    df = df.drop(index="polly").drop(columns=["tags"])
    changes = table_changes_from_frame(store, "pets", df)
    assert changes == (
        {"pets": {"fido": {"weight": DELETED}, "felix": {"tags": DELETED}, "polly": DELETED}},
        {},
        1,
    )
    store.apply_changes(changes)
    assert store.get_table("pets") == {
        "fido": {"species": "dog", "legs": 4, "good": True},
        "felix": {"species": "cat", "legs": 4, "weight": 4},
    }


def test_new_rows_and_numpy_and_datetime_conversion():
    s = create_store()
    df = pd.DataFrame(
        {
            "i": np.array([1, 2], dtype=np.int64),
            "f": np.array([0.5, np.nan]),
            "b": np.array([True, False]),
            "when": pd.to_datetime(["2024-01-02T03:04:05", None]),
            "o": [np.int32(7), {"k": np.float32(1.5)}],
        },
        index=pd.Index(["a", "b"], name="row_id"),
    )
    changes = table_changes_from_frame(s, "t", df)
    table = changes[0]["t"]
    assert table == {
        "a": {"i": 1, "f": 0.5, "b": True, "when": "2024-01-02T03:04:05", "o": 7},
        "b": {"i": 2, "b": False, "o": {"k": 1.5}},
    }
    assert type(table["a"]["i"]) is int
    assert type(table["a"]["b"]) is bool
    assert type(table["b"]["o"]["k"]) is float
    s.apply_changes(changes)
    assert s.get_cell("t", "a", "when") == "2024-01-02T03:04:05"


def test_python_datetime_and_date_objects():
    s = create_store()
    df = pd.DataFrame(
        {"d": [dt.date(2024, 5, 6)], "t": [dt.datetime(2024, 5, 6, 7, 8)]}, index=["r"]
    )
    assert table_changes_from_frame(s, "t", df)[0] == {
        "t": {"r": {"d": "2024-05-06", "t": "2024-05-06T07:08:00"}}
    }


def test_unsupported_values_name_the_column(store):
    df = table_to_frame(store, "pets")
    df["bad"] = pd.Series([{1, 2}, None, None], index=df.index, dtype=object)
    with pytest.raises(TypeError, match="'bad'"):
        table_changes_from_frame(store, "pets", df)
    df2 = table_to_frame(store, "pets")
    df2["c"] = [1 + 2j, 0j, 1j]
    with pytest.raises(TypeError, match="'c'"):
        table_changes_from_frame(store, "pets", df2)


def test_non_string_labels_are_refused(store):
    df = pd.DataFrame({0: [1]}, index=["r"])
    with pytest.raises(TypeError, match="column names"):
        table_changes_from_frame(store, "t", df)
    df = pd.DataFrame({"x": [1]}, index=[1.5])
    with pytest.raises(TypeError, match="row ids"):
        table_changes_from_frame(store, "t", df)
    # integer row labels are accepted as their decimal text
    assert table_changes_from_frame(store, "t", pd.DataFrame({"x": [1]}))[0] == {
        "t": {"0": {"x": 1}}
    }


def test_type_changes_count_even_when_values_compare_equal():
    # JavaScript: true !== 1, so True -> 1 is a change; 4 -> 4.0 is not.
    s = create_store().set_table("t", {"r": {"b": True, "n": 4}})
    df = pd.DataFrame({"b": [1], "n": [4.0]}, index=["r"], dtype=object)
    assert table_changes_from_frame(s, "t", df)[0] == {"t": {"r": {"b": 1}}}


def test_json_cells_compare_deeply(store):
    df = table_to_frame(store, "pets")
    assert table_changes_from_frame(store, "pets", df) == ({}, {}, 1)
    df.at["polly", "meta"] = {"a": 2}
    assert table_changes_from_frame(store, "pets", df)[0] == {"pets": {"polly": {"meta": {"a": 2}}}}


def test_json_cells_compare_as_tinybase_does():
    """TinyBase compares object cells by their JSON text: key order counts, 4 == 4.0."""
    s = create_store().set_table("t", {"r": {"j": {"a": 1, "b": [4]}}})
    same = pd.DataFrame({"j": [{"a": 1.0, "b": [4.0]}]}, index=["r"], dtype=object)
    assert table_changes_from_frame(s, "t", same) == ({}, {}, 1)
    reordered = pd.DataFrame({"j": [{"b": [4], "a": 1}]}, index=["r"], dtype=object)
    assert table_changes_from_frame(s, "t", reordered)[0] == {"t": {"r": {"j": {"b": [4], "a": 1}}}}
    flagged = pd.DataFrame({"j": [{"a": True, "b": [4]}]}, index=["r"], dtype=object)
    assert table_changes_from_frame(s, "t", flagged)[0] == {
        "t": {"r": {"j": {"a": True, "b": [4]}}}
    }


def test_patched_frames_equal_fresh_builds():
    """Random small edits: the cache's patched frame must equal a rebuild, always."""
    import random

    rng = random.Random(5)
    s = create_store().set_tables_schema({"t": {"typed": {"type": "number"}}})
    s.set_table(
        "t",
        {
            f"r{i}": {"i": i, "f": i + 0.5, "b": i % 2 == 0, "s": f"s{i}", "typed": i, "o": [i]}
            for i in range(50)
        },
    )
    s.set_cell("t", "r0", "mixed", 1)
    s.set_cell("t", "r1", "mixed", 1.5)
    cache = FrameCache(s)
    cache.frame("t")
    candidates = [1, 2, 2.5, True, False, "x", None, {"k": 1}, [1, 2], -(2**63), 2**53]
    for step in range(300):
        row = f"r{rng.randrange(50)}"
        cell = rng.choice(["i", "f", "b", "s", "typed", "o", "mixed"])
        if rng.random() < 0.1:
            s.del_cell("t", row, cell)
        else:
            try:
                s.set_cell("t", row, cell, rng.choice(candidates))
            except (TypeError, ValueError):
                continue
        if step % 3 == 0:
            pd.testing.assert_frame_equal(cache.frame("t"), table_to_frame(s, "t"))
    assert cache.patched > 0  # the patch path was exercised, not just rebuilds
