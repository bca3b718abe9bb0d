import pytest

from cvpipe.io import atomic_path, write_json, write_text


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
    from cvpipe.io import read_file

    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    (tmp_path / "f").write_bytes(data)
    assert read_file(tmp_path / "f") == data
    with pytest.raises(FileNotFoundError):
        read_file(tmp_path / "missing")
