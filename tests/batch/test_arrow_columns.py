"""The results writer's columns, built from buffers, against ``pyarrow.array`` on the same values."""

from __future__ import annotations

import datetime as dt
import random
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from magstat.batch.output import arrow_column, arrow_schema
from magstat.batch.readers.nhanes import EXTRA_COLUMNS

STRINGS = ["", "a", "at_risk", "Hypomagnesémie – 低镁血症", "x" * 300, "😀", "line\nbreak"]
FLOATS = [0.0, -0.0, 1.5, 0.73, 1e-300, 1e300, float("inf"), -float("inf"), float("nan"), 3, -7, 2**53]
INTS = [0, 1, -1, 5, 2**62, -(2**63), 2**63 - 1]
DATES = [
    dt.date(1970, 1, 1),
    dt.date(1, 1, 1),
    dt.date(9999, 12, 31),
    dt.date(2020, 2, 29),
    dt.date(1969, 12, 31),
]
LISTS = [[], ["drug.ppi"], ["a", "b", "c"], ["é", ""]]

USUAL = {
    pa.string(): STRINGS,
    pa.float64(): FLOATS,
    pa.int64(): INTS,
    pa.bool_(): [True, False],
    pa.date32(): DATES,
    pa.list_(pa.string()): LISTS,
}

UNUSUAL = {
    pa.float64(): [2**53 + 1, True, 10**400],
    pa.int64(): [True, 2**63, 1.0],
    pa.bool_(): [1, 0],
    pa.date32(): [dt.datetime(2020, 1, 2, 3, 4, tzinfo=dt.UTC)],
    pa.list_(pa.string()): [["a", None], ("a",)],
    pa.string(): ["\ud800", 5, b"bytes"],
}


def _pyarrow(values: list, kind: pa.DataType) -> pa.Array | type[Exception]:
    try:
        return pa.array(values, kind)
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
        return type(exc)


def _ours(values: list, kind: pa.DataType) -> pa.Array | type[Exception]:
    try:
        return arrow_column(values, kind)
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
        return type(exc)


def _same(expected: pa.Array | type[Exception], actual: pa.Array | type[Exception]) -> bool:
    if isinstance(expected, type) or isinstance(actual, type):
        return expected == actual
    actual.validate(full=True)
    # NaN is not equal to itself: compare the values' texts (and the types) instead.
    return (
        expected.type == actual.type
        and expected.null_count == actual.null_count
        and (str(expected.to_pylist()) == str(actual.to_pylist()))
    )


@pytest.mark.parametrize("kind", list(USUAL), ids=str)
def test_usual_values_give_pyarrows_array(kind):
    """Columns of the usual values (with nulls anywhere, of any length) equal pyarrow.array's."""
    rng = random.Random(f"usual-{kind}")
    pool = [*USUAL[kind], None]
    for length in [0, 1, 7, 8, 9, 63, 64, 65, *[rng.randrange(200) for _ in range(60)]]:
        values = [rng.choice(pool) for _ in range(length)]
        expected, actual = _pyarrow(values, kind), _ours(values, kind)
        assert not isinstance(expected, type)
        assert _same(expected, actual), (kind, values)


@pytest.mark.parametrize("kind", list(UNUSUAL), ids=str)
def test_unusual_values_give_pyarrows_answer(kind):
    """A value outside the usual ones is left to pyarrow.array: the same array, or the same error."""
    rng = random.Random(f"unusual-{kind}")
    pool = [*USUAL[kind], None]
    for odd in UNUSUAL[kind]:
        for _ in range(5):
            values = [rng.choice(pool) for _ in range(rng.randrange(1, 20))]
            values.insert(rng.randrange(len(values) + 1), odd)
            assert _same(_pyarrow(values, kind), _ours(values, kind)), (kind, values)


def test_every_results_column_type_is_built_without_pyarrow_array():
    """Every column type of the results (base and NHANES columns) has its own builder, so a run never falls back."""
    for field in arrow_schema(EXTRA_COLUMNS):
        values = [USUAL[field.type][0], None]
        assert pa.array(values, field.type).equals(arrow_column(values, field.type))
    assert set(USUAL) == {field.type for field in arrow_schema(EXTRA_COLUMNS)}


def test_screening_does_not_import_pandas(tmp_path, bulk):
    """A screening writes its outputs without importing pandas (which pyarrow.array would import)."""
    script = (
        "import sys, datetime as dt\n"
        "from pathlib import Path\n"
        "from magstat.batch import ScreenOptions, screen\n"
        f"screen(ScreenOptions(input=Path({str(bulk)!r}), out=Path({str(tmp_path / 'out')!r}),"
        " as_of=dt.date(2021, 6, 1), workers=0, csv=True, details=True))\n"
        "print('pandas' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert "False" == done.stdout.strip().splitlines()[-1]
    assert (Path(tmp_path / "out") / "results.parquet").exists()
