"""Each stage reads its manifest once: the gate and the register stage pass the folder they read on, rather than
reading it again where another function needs it (issue 20: validate read it twice, register four times)."""

from __future__ import annotations

from pathlib import Path

import pytest

import cvpipe.data.manifest
import stages.register
import stages.validate
from stages import register, validate
from tests.conftest import REPO
from tests.stages.conftest import GATE


def count_reads(monkeypatch: pytest.MonkeyPatch, *modules) -> list[Path]:
    """Every ``read_manifest_dir`` call made through ``modules`` (each imports the reader by name)."""
    calls: list[Path] = []
    for module in modules:
        real = module.read_manifest_dir

        def spy(folder, *args, _real=real, **kwargs):
            calls.append(Path(folder))
            return _real(folder, *args, **kwargs)

        monkeypatch.setattr(module, "read_manifest_dir", spy)
    return calls


def test_the_gate_reads_the_manifest_once(fruits_manifest, tmp_path, monkeypatch):
    calls = count_reads(monkeypatch, stages.validate, cvpipe.data.manifest)
    argv = ["--manifest-dir", str(fruits_manifest), "--task", "classification", "--report", str(tmp_path / "report"),
            "--out", str(tmp_path / "validated"), "--params", str(REPO / "params.yaml")]
    assert validate.main(argv) == 0
    assert calls == [fruits_manifest]
    assert (tmp_path / "validated" / "manifest.parquet").is_file()


def test_register_reads_the_manifest_once_for_the_runs_input_and_the_tasks_data(registry, tmp_path, store, monkeypatch):
    root, fruits, _ = registry
    calls = count_reads(monkeypatch, stages.register, cvpipe.data.manifest)
    result = register.run("fruits360", "classification", root / "clf", root / "clf_eval", fruits, GATE, mlruns=tmp_path)
    assert result.alias == "champion" and calls == [fruits]


def test_a_manifest_read_once_is_still_checked_for_its_task(fruits_manifest):
    from cvpipe.core.errors import DataError
    from cvpipe.data.manifest import manifest_of, read_manifest_dir

    manifest = read_manifest_dir(fruits_manifest)
    assert manifest_of(manifest, "classification") is manifest  # handed on, not read again
    with pytest.raises(DataError, match="task is 'classification', not 'segmentation'"):
        manifest_of(manifest, "segmentation")
