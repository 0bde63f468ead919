"""transforms/label_map.py: reading, extending and writing label_map.pbtxt."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transforms.label_map import LabelMapError, extend_label_map, format_label_map, parse_label_map



def test_raccoon_label_map(raccoon):
    assert parse_label_map((raccoon / "label_map.pbtxt").read_text()) == {"raccoon": 1}


def test_od_api_style_map_with_double_quotes_and_display_names():
    text = '''
item {
  name: "/m/01g317"
  id: 1
  display_name: "person"
}
item {
  name: "/m/0199g"
  id: 2
  display_name: "bicycle"
}
'''
    assert parse_label_map(text) == {"/m/01g317": 1, "/m/0199g": 2}


def test_comments_and_compact_items():
    text = """# a label map
item { id: 2 name: 'dog' }  # the second class
# item { id: 3 name: 'ghost' }
item{name:'cat' id:1}
"""
    assert parse_label_map(text) == {"dog": 2, "cat": 1}


def test_escaped_quotes_and_backslashes():
    text = r"""item { id: 1 name: 'it\'s' }
item { id: 2 name: "say \"hi\"" }
item { id: 3 name: 'back\\slash' }"""
    assert parse_label_map(text) == {"it's": 1, 'say "hi"': 2, "back\\slash": 3}


def test_empty_or_comment_only_text_is_an_empty_map():
    assert parse_label_map("") == {}
    assert parse_label_map("  \n# nothing here\n") == {}


def test_format_label_map_exact_text_ordered_by_id():
    assert format_label_map({"dog": 2, "cat": 1}) == (
        "item {\n  id: 1\n  name: 'cat'\n}\nitem {\n  id: 2\n  name: 'dog'\n}\n"
    )
    assert format_label_map({}) == ""


def test_escapes_round_trip_through_format_label_map():
    ids = {"it's": 1, "back\\slash": 2, 'double "quoted"': 3, "\\'": 4, "café": 5, "tab\there": 6, "": 7}
    text = format_label_map(ids)
    assert "name: 'it\\'s'" in text
    assert "name: 'back\\\\slash'" in text
    assert parse_label_map(text) == ids


@pytest.mark.parametrize(
    "text, words",
    [
        ("item { id: 1 name: 'a' }\nitem { id: 1 name: 'b' }", "id 1 to two classes"),
        ("item { id: 1 name: 'a' }\nitem { id: 2 name: 'a' }", "names 'a' twice"),
        ("item { id: 0 name: 'background' }", "ids start at 1"),
        ("item { id: -3 name: 'neg' }", "ids start at 1"),
        ("item { id: 1 }", "without name or id"),
        ("item { name: 'a' }", "without name or id"),
        ("item { id: 1 display_name: 'a' }", "without name or id"),
        ("this is not a label map", "expected `item {"),
    ],
)
def test_invalid_maps_raise_label_map_error(text, words):
    with pytest.raises(LabelMapError) as raised:
        parse_label_map(text)
    assert words in str(raised.value)


def test_label_map_error_is_a_value_error():
    assert issubclass(LabelMapError, ValueError)


def test_same_item_twice_is_accepted():
    assert parse_label_map("item { id: 1 name: 'a' }\nitem { id: 1 name: 'a' }") == {"a": 1}


def test_extend_keeps_seed_ids_and_numbers_new_names_in_sorted_order():
    seed = {"zebra": 3, "ant": 7}
    extended = extend_label_map(seed, ["cat", "zebra", "bee", "cat", "ant", "aardvark"])
    assert extended == {"zebra": 3, "ant": 7, "aardvark": 8, "bee": 9, "cat": 10}
    assert seed == {"zebra": 3, "ant": 7}  # not modified


def test_extend_without_seed_numbers_from_one():
    assert extend_label_map({}, iter(["b", "a", "c", "a"])) == {"a": 1, "b": 2, "c": 3}


def test_extend_does_not_depend_on_name_order():
    names = ["person", "car", "bicycle", "dog"]
    assert extend_label_map({"car": 1}, names) == extend_label_map({"car": 1}, reversed(names))


def test_extend_with_nothing_new_is_the_seed():
    assert extend_label_map({"a": 4}, ["a"]) == {"a": 4}


def test_extended_map_survives_format_and_parse(raccoon):
    ids = extend_label_map(parse_label_map((raccoon / "label_map.pbtxt").read_text()), ["squirrel", "fox"])
    assert ids == {"raccoon": 1, "fox": 2, "squirrel": 3}
    assert parse_label_map(format_label_map(ids)) == ids


@pytest.mark.parametrize("name", ["C#", "sign #3", "a{b", "a}b"])
def test_names_with_comment_or_brace_characters_round_trip(name):
    ids = {name: 1, "other": 2}
    assert parse_label_map(format_label_map(ids)) == ids


# Names without "#", "{", "}" (their own test above); anything else, quotes, backslashes, newlines,
# non-ASCII, must come back unchanged.
_NAME = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="#{}"),
    max_size=15,
)


@given(st.sets(_NAME, max_size=8), st.integers(1, 1000))
def test_format_then_parse_is_identity(names, first_id):
    ids = {name: first_id + index for index, name in enumerate(sorted(names))}
    assert parse_label_map(format_label_map(ids)) == ids


@given(st.dictionaries(_NAME, st.integers(1, 50), max_size=6), st.lists(_NAME, max_size=6))
def test_extend_then_round_trip(seed_names, new_names):
    seed = {}
    for name, class_id in seed_names.items():
        if class_id not in seed.values():
            seed[name] = class_id
    extended = extend_label_map(seed, new_names)
    assert {name: extended[name] for name in seed} == seed
    new_ids = [extended[name] for name in sorted(set(new_names) - set(seed))]
    top = max(seed.values(), default=0)
    assert new_ids == list(range(top + 1, top + 1 + len(new_ids)))
    assert parse_label_map(format_label_map(extended)) == extended


# --- the OD API reads label_map.pbtxt with protobuf's text format parser -------------------------


def _string_int_label_map_class():
    """object_detection.protos.StringIntLabelMap, built here so the test needs no OD API install."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="string_int_label_map.proto", package="od", syntax="proto2")
    item = proto.message_type.add(name="StringIntLabelMapItem")
    item.field.add(name="name", number=1, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    item.field.add(name="id", number=2, type=field.TYPE_INT32, label=field.LABEL_OPTIONAL)
    item.field.add(name="display_name", number=3, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    label_map = proto.message_type.add(name="StringIntLabelMap")
    label_map.field.add(
        name="item", number=1, type=field.TYPE_MESSAGE, type_name=".od.StringIntLabelMapItem",
        label=field.LABEL_REPEATED,
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("od.StringIntLabelMap"))


def _protobuf_parse(text):
    from google.protobuf import text_format

    message = text_format.Parse(text, _string_int_label_map_class()())
    return {item.name: item.id for item in message.item}


def _protobuf_format(ids):
    from google.protobuf import text_format

    message = _string_int_label_map_class()()
    for name, class_id in ids.items():
        item = message.item.add()
        item.name, item.id = name, class_id
    return text_format.MessageToString(message, as_utf8=True)


def test_protobuf_reads_what_format_label_map_writes():
    ids = {"raccoon": 1, "it's": 2, "back\\slash": 3, 'say "hi"': 4, "café": 5}
    assert _protobuf_parse(format_label_map(ids)) == ids


def test_parse_reads_what_protobuf_writes():
    ids = {"raccoon": 1, "it's": 2, "back\\slash": 3, 'say "hi"': 4, "café": 5}
    assert parse_label_map(_protobuf_format(ids)) == ids


def test_protobuf_reads_a_name_with_a_newline():
    ids = {"two\nlines": 1}
    assert _protobuf_parse(format_label_map(ids)) == ids


def test_parse_decodes_protobuf_escapes():
    ids = {"two\nlines": 1}
    text = _protobuf_format(ids)
    assert "\\n" in text
    assert parse_label_map(text) == ids


# --- source_label_map: the ids the sources declare (docs/design.md section 2) ---------------------------

from transforms.label_map import ClassIdConflict, LabelIds, source_label_map  # noqa: E402


def test_first_source_ids_kept_with_unused_declared_classes_and_gaps():
    declared = [(0, "a.json", 1, "person"), (0, "a.json", 3, "car"), (0, "a.json", 90, "toothbrush")]
    ids, shifted = source_label_map({}, ["car", "person"], declared)
    assert ids == {"person": 1, "car": 3, "toothbrush": 90} and shifted == ()


def test_unused_id_zero_is_left_out_and_a_used_one_shifts_every_id_of_its_source():
    declared = [(0, "a.json", 0, "cells"), (0, "a.json", 1, "red"), (0, "a.json", 2, "white")]
    assert source_label_map({}, ["red", "white"], declared) == ({"red": 1, "white": 2}, ())
    declared = [(0, "a.json", 0, "red"), (0, "a.json", 1, "white")]
    assert source_label_map({}, ["red", "white"], declared, zero_used=[0]) == ({"red": 1, "white": 2}, (0,))


def test_later_sources_and_unnumbered_classes_get_the_next_free_ids_in_name_order():
    declared = [(1, "a.json", 5, "person"), (1, "a.json", 7, "car"), (2, "b.xml", 5, "person"),
                (2, "b.xml", 6, "zebra")]
    ids, _ = source_label_map({}, ["person", "car", "zebra", "ant"], declared)
    # source 1 (the first that numbers) gives person 5, car 7; zebra (6 in source 2) and ant (no numbering) follow
    assert ids == {"person": 5, "car": 7, "ant": 8, "zebra": 9}


def test_two_sources_giving_one_class_different_ids_is_an_error_naming_both():
    declared = [(0, "x/instances.json", 1, "person"), (1, "--classes", 2, "person")]
    names = {0: "coco:x/instances.json", 1: "yolo:y/labels"}.get
    with pytest.raises(ClassIdConflict) as raised:
        source_label_map({}, ["person"], declared, describe=names)
    message = str(raised.value)
    assert "'person' has id 1 in coco:x/instances.json" in message
    assert "id 2 in yolo:y/labels (--classes)" in message


def test_a_seed_or_a_class_map_merge_resolves_a_conflict():
    declared = [(0, "a.json", 3, "person"), (1, "b.xml", 2, "person")]
    assert source_label_map({"person": 9}, ["person"], declared)[0] == {"person": 9}
    assert source_label_map({}, ["person"], declared, merged={"person"})[0] == {"person": 3}  # the first source's


def test_within_an_origin_two_names_merged_into_one_keep_the_smaller_id():
    declared = [(0, "a.json", 4, "person"), (0, "a.json", 2, "person"), (0, "a.json", 3, "car")]
    assert source_label_map({}, [], declared)[0] == {"person": 2, "car": 3}


def test_one_id_for_two_classes_in_the_first_source_is_an_error():
    declared = [(0, "train.json", 3, "car"), (0, "val.json", 3, "truck")]
    with pytest.raises(ClassIdConflict, match="id 3 is class 'car' in source 1 \\(train.json\\) and 'truck'"):
        source_label_map({}, [], declared)


def test_seed_ids_win_and_a_first_source_class_whose_id_the_seed_took_moves_on():
    declared = [(0, "a.json", 1, "person"), (0, "a.json", 2, "car")]
    ids, _ = source_label_map({"dog": 1, "car": 7}, ["person", "car"], declared)
    assert ids == {"dog": 1, "car": 7, "person": 8}


def test_label_ids_pickle_with_how_they_were_given():
    import pickle

    ids = pickle.loads(pickle.dumps(LabelIds({"a": 2}, "source", 1)))
    assert ids == {"a": 2} and (ids.rule, ids.shifted_by) == ("source", 1) and isinstance(ids, dict)


_DECLARATION = st.tuples(st.integers(0, 2), st.sampled_from(["a", "b"]), st.integers(0, 12),
                         st.sampled_from(["ant", "bee", "cat", "dog", "eel", "fox"]))


@given(
    st.dictionaries(st.sampled_from(["cat", "dog", "gnu", "yak"]), st.integers(1, 12), max_size=3),
    st.lists(st.sampled_from(["ant", "cat", "hen", "yak"]), max_size=4),
    st.lists(_DECLARATION, max_size=12),
    st.lists(st.integers(0, 2), max_size=2),
    st.randoms(use_true_random=False),
)
def test_source_label_map_ids_never_collide_seeds_never_move_and_order_does_not_matter(
        seed_ids, names, declared, zero_used, shuffler):
    seed = {}
    for name, class_id in seed_ids.items():
        if class_id not in seed.values():
            seed[name] = class_id

    def outcome(declared, names, zero_used):
        try:
            return source_label_map(seed, names, declared, zero_used)
        except ClassIdConflict as error:
            return str(error)

    result = outcome(declared, names, zero_used)
    for _ in range(3):  # any arrival order gives the same map, or the same error
        shuffled = [list(items) for items in (declared, names, zero_used)]
        for items in shuffled:
            shuffler.shuffle(items)
        assert outcome(*shuffled) == result
    if isinstance(result, str):
        return
    ids, shifted = result
    assert len(set(ids.values())) == len(ids) and min(ids.values(), default=1) >= 1  # never collide, never 0
    assert {name: ids[name] for name in seed} == seed  # seeds never move
    assert set(names) <= set(ids)
    shift = lambda source: 1 if source in shifted else 0
    numbered = [(source, class_id + shift(source), name) for source, _, class_id, name in declared
                if class_id + shift(source) >= 1]
    assert {name for _, _, name in numbered} <= set(ids)  # every declared class, used or not
    # an id one origin gives two names numbers neither
    names_of = {}
    for source, origin, class_id, name in declared:
        names_of.setdefault((source, origin, class_id), set()).add(name)
    numbered = [(source, class_id + shift(source), name) for source, origin, class_id, name in declared
                if class_id + shift(source) >= 1 and len(names_of[(source, origin, class_id)]) == 1]
    if numbered:  # the first numbering source's classes keep their (smallest) ids unless the seed holds the name or id
        first = min(source for source, _, _ in numbered)
        for name in {name for source, _, name in numbered if source == first}:
            own = min(c for s, c, n in numbered if s == first and n == name)
            if name not in seed and own not in seed.values():
                assert ids[name] == own
