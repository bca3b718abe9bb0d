import pytest

from cvpipe.core.io import atomic_path, write_json, write_text


def test_interrupted_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "out.txt"
    write_text(target, "complete")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "complete"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_write_json_is_sorted_and_creates_parents(tmp_path):
    target = tmp_path / "a" / "b.json"
    write_json(target, {"b": 1, "a": "é"})
    assert target.read_text(encoding="utf-8") == '{\n  "a": "é",\n  "b": 1\n}\n'


@pytest.mark.parametrize("size", [0, 1, 4096, 3 * (1 << 20) + 7])
def test_read_file_returns_every_byte(tmp_path, size):
    from cvpipe.core.io import read_file

    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    (tmp_path / "f").write_bytes(data)
    assert read_file(tmp_path / "f") == data
    with pytest.raises(FileNotFoundError):
        read_file(tmp_path / "missing")


def test_outputs_get_the_mode_of_any_new_file(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        write_text(tmp_path / "out.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out.txt").stat().st_mode) == 0o644  # not mkstemp's 0600


@pytest.mark.parametrize("exchange", [True, False])
def test_replace_dir_puts_the_new_folder_in_place_and_removes_the_old(tmp_path, monkeypatch, exchange):
    import cvpipe.core.io as io_module
    from cvpipe.core.io import replace_dir

    if not exchange:  # the fallback for systems without renameat2(RENAME_EXCHANGE)
        monkeypatch.setattr(io_module, "_exchange", lambda a, b: False)
    target, staging = tmp_path / "out", tmp_path / ".stage" / "out"
    (target / "old").mkdir(parents=True)
    (target / "old" / "f").write_text("old")
    staging.mkdir(parents=True)
    (staging / "new").write_text("new")
    replace_dir(staging, target)
    assert [p.name for p in target.iterdir()] == ["new"] and (target / "new").read_text() == "new"
    assert list((tmp_path / ".stage").iterdir()) == []  # the old folder is gone, nothing left beside
    fresh = tmp_path / ".stage" / "fresh"
    fresh.mkdir()
    replace_dir(fresh, tmp_path / "first")  # no old folder: a plain rename
    assert (tmp_path / "first").is_dir() and not fresh.exists()


def test_the_linux_swap_is_atomic_when_available(tmp_path):
    import sys

    from cvpipe.core.io import _exchange

    if not sys.platform.startswith("linux"):
        pytest.skip("renameat2 is Linux only")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "from_a").touch()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "from_b").touch()
    assert _exchange(tmp_path / "a", tmp_path / "b")  # one call: both names exist at every moment
    assert (tmp_path / "b" / "from_a").exists() and (tmp_path / "a" / "from_b").exists()
