"""flows.data: the Prefect tasks call the stage functions; a failed gate fails the task with its summary."""

import pytest

from cvpipe.params import load_params
from cvpipe.samples import generate
from flows.data import GateFailed, ingest_task, validate_task
from tests.conftest import REPO


def test_gate_task_raises_the_gate_summary_and_writes_no_clean_tables(tmp_path):
    params = load_params(REPO / "params.yaml")
    root = generate("fruits360", tmp_path / "raw")
    (root / "Test" / "Kiwi" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0")
    counts = ingest_task.fn("fruits360", root, tmp_path / "m", 2, "record")
    assert counts["images"] == 161
    with pytest.raises(GateFailed, match=r"FAIL images.decode(.|\n)*Test/Kiwi/broken.jpg"):
        validate_task.fn("fruits360", tmp_path / "m", params, tmp_path / "report", tmp_path / "validated")
    assert not (tmp_path / "validated").exists()
    assert validate_task.retries == 0  # a data problem is not retried
