"""A dataset with ``datasets.<name>.path`` is read where it lies: data/raw/<name> links there, never a copy."""

from __future__ import annotations

import pytest

from cvpipe.core.errors import DataError, ParamsError
from stages import samples


def test_a_path_becomes_a_link_once_and_a_real_folder_is_never_replaced(tmp_path):
    real = tmp_path / "extract"
    (real / "Training").mkdir(parents=True)
    out = tmp_path / "raw"
    assert samples.run({"real": "fruits360"}, out, links={"real": real}) == ["real"]
    assert (out / "real").is_symlink() and (out / "real").resolve() == real.resolve()
    assert samples.run({"real": "fruits360"}, out, links={"real": real}) == []  # already linked: nothing written
    assert not any(p.name.startswith(".") for p in out.iterdir())  # no staged link left behind

    (out / "kept").mkdir()
    (out / "kept" / "mine.txt").write_text("data")
    with pytest.raises(DataError, match="not a link"):
        samples.run({"kept": "fruits360"}, out, links={"kept": real})
    assert (out / "kept" / "mine.txt").read_text() == "data"


def test_a_path_that_is_not_a_folder_names_its_params_key(tmp_path):
    with pytest.raises(ParamsError, match=r"datasets\.real\.path"):
        samples.run({"real": "coco"}, tmp_path / "raw", links={"real": tmp_path / "missing"})
    assert not (tmp_path / "raw" / "real").exists()
