"""Sub-id behaviour the rest of the suite let change unnoticed (found by mutmut, tests/MUTATION.md).

What the entrypoint and doctor rely on: the values (Range, Extent, SubidEntry)
compare, order, hash, print and copy like the frozen dataclasses they stand in
for; the parsers' refusals say which line is wrong and how to fix it; the
keep-id nesting and the rootless prediction give exact maps at their edges.
"""

from __future__ import annotations

import copy
import operator
import pickle
from typing import Any
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kasctl.errors import HostError
from kasctl.inside import subids
from kasctl.inside.subids import (
    ID_LIMIT,
    Extent,
    Range,
    SubidEntry,
    keep_id_extents,
    parse_avoid,
    parse_id_map,
    parse_subid_file,
    render_avoid,
    rootless_builder_range,
)

IDS = st.integers(0, ID_LIMIT)
RANGES = st.builds(Range, IDS, IDS)
EXTENTS = st.builds(Extent, IDS, IDS, IDS)
ENTRIES = st.builds(SubidEntry, st.text(max_size=8), RANGES, st.integers(1, 99))
VALUES = st.one_of(RANGES, EXTENTS, ENTRIES)

# --------------------------------------------------------------------------
# the values: equal, ordered, hashed, shown and copied by their fields
# --------------------------------------------------------------------------


def test_values_of_one_kind_order_by_their_fields_in_order() -> None:
    low, high = Range(1, 9), Range(2, 1)
    assert low < high and low <= high and high > low and high >= low
    assert not (high < low or high <= low or low > high or low >= high)
    same = Range(1, 9)
    assert same == low and same <= low and same >= low
    assert not (same < low or same > low)
    assert sorted([Extent(5, 0, 1), Extent(1, 9, 1), Extent(1, 2, 3)]) == [
        Extent(1, 2, 3),
        Extent(1, 9, 1),
        Extent(5, 0, 1),
    ]


@given(RANGES, RANGES)
def test_range_order_is_the_order_of_start_then_count(a: Range, b: Range) -> None:
    key_a, key_b = (a.start, a.count), (b.start, b.count)
    assert (a < b, a <= b, a > b, a >= b, a == b, a != b) == (
        key_a < key_b,
        key_a <= key_b,
        key_a > key_b,
        key_a >= key_b,
        key_a == key_b,
        key_a != key_b,
    )


@pytest.mark.parametrize(
    "other",
    [Extent(0, 0, 1), (0, 1), 0, None, "0:1"],
    ids=["extent", "tuple", "int", "none", "str"],
)
def test_a_range_is_never_equal_to_nor_ordered_against_another_kind(other: Any) -> None:
    rng = Range(0, 1)
    assert rng != other
    assert other not in [rng]
    for compare in (operator.lt, operator.le, operator.gt, operator.ge):
        with pytest.raises(TypeError):
            compare(rng, other)


def test_comparison_with_a_foreign_type_is_left_to_that_type() -> None:
    # NotImplemented, not False: Python then asks the other side (mock.ANY says yes)
    assert Range(1, 2) == mock.ANY
    assert [Extent(0, 1, 2), SubidEntry("me", Range(1, 2), 3)] == [mock.ANY, mock.ANY]


@given(VALUES)
def test_a_value_is_shown_as_its_constructor_call(value: Range | Extent | SubidEntry) -> None:
    # repr reads back as the same value: what a test failure or --debug line shows is exact
    assert eval(repr(value), vars(subids)) == value


def test_repr_names_the_type_and_each_field() -> None:
    assert repr(Range(100000, 65536)) == "Range(start=100000, count=65536)"
    assert repr(SubidEntry("kasci", Range(1, 2), 4)) == (
        "SubidEntry(owner='kasci', range=Range(start=1, count=2), line=4)"
    )


@given(VALUES)
def test_values_survive_copy_and_pickle(value: Range | Extent | SubidEntry) -> None:
    for again in (copy.copy(value), copy.deepcopy(value), pickle.loads(pickle.dumps(value))):
        assert again == value and type(again) is type(value)


def test_equal_values_hash_alike_and_distinct_ones_spread() -> None:
    assert hash(Range(5, 6)) == hash(Range(5, 6))
    assert len({Range(1, 2), Range(1, 2), Range(2, 1)}) == 2
    # a set or dict of ranges stays a hash table, not a list
    assert len({hash(Range(i, 1)) for i in range(1000)}) > 990


@pytest.mark.parametrize(
    "value",
    [Range(1, 2), Extent(0, 1, 2), SubidEntry("me", Range(1, 2), 1)],
    ids=lambda v: type(v).__name__,
)
def test_values_cannot_be_changed_or_emptied(value: Range | Extent | SubidEntry) -> None:
    name = type(value).__name__
    field = value.__slots__[0]
    before = repr(value)
    with pytest.raises(AttributeError, match=f"^{name} is immutable$"):
        setattr(value, field, 7)
    with pytest.raises(AttributeError, match=f"^{name} is immutable$"):
        delattr(value, field)
    assert repr(value) == before


def test_only_an_int_between_start_and_end_is_in_a_range() -> None:
    rng = Range(10, 5)
    assert 10 in rng and 14 in rng
    assert 9 not in rng and 15 not in rng
    assert "12" not in rng and 12.0 not in rng
    assert Range(10, 5).render() == "10:5"


# --------------------------------------------------------------------------
# parse_id_map: which line, what is wrong, what to do
# --------------------------------------------------------------------------


def test_an_id_map_line_that_is_not_three_numbers_is_named_with_a_fix() -> None:
    with pytest.raises(HostError) as info:
        parse_id_map("0 1001 1\n1 100000 x\n")
    assert info.value.message == "id map line 2 is not three numbers: '1 100000 x'"
    assert info.value.fix == "report this map; kasctl reads /proc/self/uid_map and gid_map"


def test_an_id_map_line_out_of_bounds_is_named() -> None:
    with pytest.raises(HostError) as info:
        parse_id_map("\n1 1 4294967295\n")
    assert info.value.message == "id map line 2 is out of bounds: '1 1 4294967295'"


def test_an_empty_id_map_says_the_container_has_no_mapping() -> None:
    for text in ("", "\n \n"):
        with pytest.raises(HostError) as info:
            parse_id_map(text)
        assert info.value.message == "the id map is empty"
        assert info.value.fix == "the container has no user mapping"


def test_an_id_map_may_reach_the_last_valid_id_exactly() -> None:
    assert parse_id_map("4294967294 0 1\n0 4294967294 1\n") == (
        Extent(0, 4294967294, 1),
        Extent(4294967294, 0, 1),
    )


# --------------------------------------------------------------------------
# parse_subid_file: which line, what is wrong, what to do
# --------------------------------------------------------------------------


def test_a_malformed_subid_line_is_named_with_an_example_of_a_good_one() -> None:
    with pytest.raises(HostError) as info:
        parse_subid_file("# mine\nkasci:100000:65536\nkasci:100000\n")
    assert info.value.message == "line 3 is not NAME:START:COUNT: 'kasci:100000'"
    assert info.value.fix == ("each line must read user:first-id:count, e.g. builder:100000:165536")


def test_a_subid_range_may_end_at_the_last_valid_id_but_not_beyond() -> None:
    (entry,) = parse_subid_file("kasci:4294967290:5\n")
    assert entry.range == Range(4294967290, 5) and 4294967294 in entry.range
    with pytest.raises(HostError) as info:
        parse_subid_file("kasci:1:1\nkasci:4294967290:6\n")
    assert info.value.message == (
        "line 2 reaches past the largest id, 4294967294: 'kasci:4294967290:6'"
    )
    assert info.value.fix == (
        "a range START:COUNT must end below 4294967295 (START + COUNT <= 4294967295)"
    )


# --------------------------------------------------------------------------
# KASCTL_SUBID_AVOID: what the host side hands the entrypoint
# --------------------------------------------------------------------------


@given(st.lists(st.builds(Range, st.integers(0, 10**9), st.integers(0, 10**6)), max_size=6))
def test_avoid_list_reads_back_as_the_same_ids(ranges: list[Range]) -> None:
    assert parse_avoid(render_avoid(ranges)) == subids.merge(ranges)


@pytest.mark.parametrize("part", ["x:5", "5:x", "5", ":5", "5:", "1:2:3", "-1:5"])
def test_avoid_list_with_a_bad_part_is_refused_naming_it(part: str) -> None:
    with pytest.raises(HostError) as info:
        parse_avoid(f"0:1,{part},7:1")
    assert info.value.message == f"bad id range {part!r} in KASCTL_SUBID_AVOID"


# --------------------------------------------------------------------------
# keep_id_extents and the rootless prediction, at their edges
# --------------------------------------------------------------------------


def test_keep_id_for_root_is_the_identity_over_what_is_mapped() -> None:
    docker = parse_id_map("0 1001 1\n1 100000 165536\n1000000 5 10\n")
    assert keep_id_extents(docker, 0) == [Extent(0, 0, 165537), Extent(1000000, 1000000, 10)]


def test_keep_id_with_one_id_above_the_builder_maps_it() -> None:
    assert keep_id_extents([Extent(0, 5000, 1003)], 1001) == [
        Extent(0, 1, 1001),
        Extent(1001, 0, 1),
        Extent(1002, 1002, 1),
    ]
    # and none when the builder is the last id of the first run
    assert keep_id_extents([Extent(0, 5000, 1002)], 1001) == [
        Extent(0, 1, 1001),
        Extent(1001, 0, 1),
    ]


def test_keep_id_without_room_names_what_the_container_maps() -> None:
    with pytest.raises(HostError) as info:
        keep_id_extents(parse_id_map("0 1001 1\n5 100000 10\n"), 1001)
    assert info.value.message == "cannot keep uid 1001: the container maps only 0:1, 5:10"
    assert info.value.fix is not None
    assert info.value.fix.startswith("give the host user a sub-id range larger than its uid")
    assert info.value.fix.endswith("(run `kasctl doctor`)")


@pytest.mark.parametrize(
    ("host", "uid", "expected"),
    [
        (Range(100000, 165536), 1001, Range(1002, 164535)),
        (Range(100000, 65536), 1000, Range(1001, 64536)),
        # one id above the builder: the thousand ids below it are the larger run
        (Range(100000, 1002), 1001, Range(1, 1000)),
        (Range(100000, 1001), 1001, Range(1, 1000)),
        (Range(100000, 1000), 1001, None),  # the engine cannot keep the uid at all
        # no sub-ids at all: nothing but the builder and root is mapped
        (Range(100000, 0), 1, None),
        (Range(100000, 0), 0, None),
    ],
)
def test_rootless_builder_range_predicts_the_range_inside(
    host: Range, uid: int, expected: Range | None
) -> None:
    assert rootless_builder_range(host, uid) == expected


def test_a_full_range_needs_the_uid_plus_65536_host_ids() -> None:
    uid = 1001
    count = subids.sufficient_host_count(uid)
    rng = rootless_builder_range(Range(100000, count), uid)
    assert rng is not None and rng.count >= subids.FULL_RANGE
    assert rootless_builder_range(Range(100000, count - 2), uid) == Range(uid + 1, 65534)
