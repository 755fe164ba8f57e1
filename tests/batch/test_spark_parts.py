"""The result parts Spark executors write: checked to be seen whole by the driver, merged in order.

These need pyarrow only (no Java): the parts are written here as an executor would write them.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from magstat.batch.engines.spark import (
    MAX_RESULT_PARTITIONS,
    MIN_RESULT_PARTITIONS,
    check_parts,
    merge_parts,
    part_name,
    part_schema,
    result_partitions,
)


def _write(folder, part, keys):
    """A part holding one result per key, in the given order (as a sorted partition would)."""
    records = [
        {
            "key": key,
            "seq": seq,
            "patient_id": key,
            "row": None if key is None else json.dumps({"patient_id": key, "as_of": "2020-01-01"}),
            "detail": None,
            "issues": None,
        }
        for seq, key in enumerate(keys)
    ]
    pq.write_table(pa.Table.from_pylist(records, schema=part_schema(pa)), folder / part_name(part))


def test_check_parts_refuses_a_part_the_driver_cannot_see(tmp_path):
    """A reported part that is missing, or holds other rows, stops the run naming shared storage."""
    _write(tmp_path, 0, ["a", "b"])
    assert [tmp_path / "part-00000.parquet"] == check_parts(tmp_path, [(0, 2)])
    with pytest.raises(RuntimeError, match=r"cannot find that file.*share"):
        check_parts(tmp_path, [(0, 2), (1, 3)])
    with pytest.raises(RuntimeError, match="reads 2 there"):
        check_parts(tmp_path, [(0, 3)])


def test_merge_parts_gives_one_stream_in_patient_order(tmp_path):
    """Sorted parts merge into one stream sorted by patient id; results without a patient come first."""
    _write(tmp_path, 0, ["b", "d", "e"])
    _write(tmp_path, 1, [None, "a", "c", "f"])
    paths = check_parts(tmp_path, [(1, 4), (0, 3)])
    merged = list(merge_parts(paths))
    assert [None, "a", "b", "c", "d", "e", "f"] == [
        None if r.row is None else r.row["patient_id"] for r in merged
    ]
    assert "2020-01-01" == merged[1].row["as_of"].isoformat()


def test_result_partitions_depend_on_input_size_only():
    """The number of parts grows with the input, within fixed bounds, and nothing else."""
    assert MIN_RESULT_PARTITIONS == result_partitions(0)
    assert MIN_RESULT_PARTITIONS == result_partitions(10 << 20)
    assert 8 == result_partitions(2 << 30)
    assert MAX_RESULT_PARTITIONS == result_partitions(1 << 50)
