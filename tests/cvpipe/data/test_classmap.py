import pytest

from cvpipe.core.errors import DataError
from cvpipe.data.classmap import ClassMap


def test_from_source_ids_orders_by_id_and_keeps_ids():
    cm = ClassMap.from_source_ids([(90, "toothbrush"), (1, "person"), (3, "car")])
    assert cm.names == ["person", "car", "toothbrush"]
    assert [c.source_id for c in cm.classes] == [1, 3, 90]
    assert cm.index_of_source_id(90) == 2


def test_save_load_round_trip(tmp_path):
    cm = ClassMap.from_names(["Apple Braeburn", "Banana"])
    cm.save(tmp_path / "classes.json")
    assert ClassMap.load(tmp_path / "classes.json") == cm


def test_duplicate_names_are_refused():
    with pytest.raises(ValueError, match="repeated: \\['a'\\]"):
        ClassMap.from_names(["a", "b", "a"])


def test_unknown_name_lists_known_classes():
    with pytest.raises(KeyError, match="known classes: \\['a', 'b'\\]"):
        ClassMap.from_names(["a", "b"]).index_of("c")


def test_load_of_a_broken_file_names_it(tmp_path):
    bad = tmp_path / "classes.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match=r"classes\.json: not a valid class map"):
        ClassMap.load(bad)
