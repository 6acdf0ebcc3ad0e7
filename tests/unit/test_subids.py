"""kasctl.inside.subids: the sub-id range the entrypoint gives Isar, and the parsers around it.

The real map shapes come from MACHINE-NOTES ("uid maps seen inside
containers"); the properties are what Isar's rootless mode needs from the
range (isar-rootless-facts.md): inside the container's own map, never root or
the builder, never a host id the planner reserved, and as large as possible,
so that 65534 (nobody/nogroup) maps linearly whenever the map allows it.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given, note
from hypothesis import strategies as st

from kasctl.errors import HostError
from kasctl.inside.subids import (
    FULL_RANGE,
    ID_LIMIT,
    NOBODY,
    Extent,
    Range,
    SubidEntry,
    choose_range,
    isar_maps,
    keep_id_extents,
    merge,
    overlaps,
    parse_id_map,
    parse_subid_file,
    range_for,
    render_id_map,
    subtract,
)

BUILDER = 1001
#: What detect.reserved_ids yields with Debian's login.defs defaults.
HOST_RESERVED = (Range(0, 65536), Range(100000, 600065536))


def kernel_text(*rows: tuple[int, int, int]) -> str:
    """A map as /proc/self/uid_map prints it (right-aligned columns)."""
    return "".join(f"{i:>10} {o:>10} {c:>10}\n" for i, o, c in rows)


# --------------------------------------------------------------------------
# choose_range on the real map shapes
# --------------------------------------------------------------------------

KEEP_ID_165536 = ((0, 1, 1001), (1001, 0, 1), (1002, 1002, 164535))
NO_KEEP_ID_165536 = ((0, 1001, 1), (1, 100000, 165536))
KEEP_ID_65536 = ((0, 1, 1001), (1001, 0, 1), (1002, 1002, 64535))
IDENTITY = ((0, 0, 4294967295),)


@pytest.mark.parametrize(
    ("rows", "avoid", "expected"),
    [
        pytest.param(KEEP_ID_165536, (), Range(1002, 164535), id="rootless-podman-keep-id"),
        # ids 1..1000 are the smaller run below the builder; the larger side wins
        pytest.param(NO_KEEP_ID_165536, (), Range(1002, 164535), id="rootless-docker"),
        # mapped ids are 0..4294967294; minus 0 and 1001
        pytest.param(IDENTITY, (), Range(1002, 4294967295 - 1002), id="identity-no-avoid"),
        pytest.param(
            IDENTITY,
            HOST_RESERVED,
            Range(600165536, 4294967295 - 600165536),
            id="identity-avoiding-host-ids",
        ),
        # nobody cannot map linearly, but a short range still beats none
        pytest.param(KEEP_ID_65536, (), Range(1002, 64535), id="keep-id-default-65536"),
        pytest.param(((0, 1001, 1), (1001, 1002, 1)), (), None, id="only-root-and-builder"),
        pytest.param(((0, 1001, 1),), (), None, id="only-root"),
    ],
)
def test_choose_range_on_real_maps(
    rows: tuple[tuple[int, int, int], ...], avoid: tuple[Range, ...], expected: Range | None
) -> None:
    extents = parse_id_map(kernel_text(*rows))
    assert choose_range(extents, BUILDER, avoid) == expected


def test_choose_range_ties_go_to_the_lowest_start() -> None:
    # ids 1..10 and 12..21 are both ten long
    assert choose_range(parse_id_map("0 5000 22\n"), 11) == Range(1, 10)


def test_default_host_range_cannot_map_nobody_linearly() -> None:
    rng = choose_range(parse_id_map(kernel_text(*KEEP_ID_65536)), BUILDER)
    assert rng is not None
    assert rng.count < FULL_RANGE


def test_rootless_map_avoid_list_uses_outside_ids() -> None:
    """avoid_outside names parent ids: on a rootless map they land elsewhere inside."""
    extents = parse_id_map(kernel_text(*NO_KEEP_ID_165536))
    # parent ids 100000..100999 are inside ids 1..1000, already the smaller run;
    # parent ids 150000.. are inside ids 50001.., which cuts the larger run
    rng = choose_range(extents, BUILDER, [Range(150000, 1)])
    assert rng == Range(50002, 165537 - 50002)


# --------------------------------------------------------------------------
# choose_range properties over generated maps
# --------------------------------------------------------------------------


@st.composite
def id_maps(draw: st.DrawFn, from_zero: bool = False) -> tuple[Extent, ...]:
    """Maps with disjoint (possibly adjacent) inside ranges, counts >= 1, in bounds."""
    gap_max, count_max = draw(st.sampled_from([(20, 60), (70_000, 200_000), (2**31, 2**31)]))
    extents = []
    start = 0 if from_zero else draw(st.integers(0, gap_max))
    for _ in range(draw(st.integers(1, 5))):
        if start >= ID_LIMIT:
            break
        count = draw(st.integers(1, min(count_max, ID_LIMIT - start)))
        outside = draw(st.integers(0, min(ID_LIMIT - count, 4 * (gap_max + count_max))))
        extents.append(Extent(start, outside, count))
        start += count + draw(st.integers(0, gap_max))
    return tuple(draw(st.permutations(extents)))


@st.composite
def id_maps_with_builder(draw: st.DrawFn) -> tuple[tuple[Extent, ...], int, list[Range]]:
    real = [
        parse_id_map(kernel_text(*rows))
        for rows in (KEEP_ID_165536, NO_KEEP_ID_165536, KEEP_ID_65536, IDENTITY)
    ]
    extents = draw(st.one_of(id_maps(), st.sampled_from(real)))
    inside_ids = st.sampled_from(extents).flatmap(
        lambda e: st.integers(e.inside, e.inside + e.count - 1)
    )
    builder = draw(st.one_of(inside_ids, st.integers(0, ID_LIMIT - 1), st.just(BUILDER)))
    outside_ids = st.sampled_from(extents).flatmap(
        lambda e: st.integers(e.outside, e.outside + e.count - 1)
    )
    avoid = draw(
        st.lists(
            st.builds(
                Range,
                st.one_of(outside_ids, st.integers(0, ID_LIMIT - 1)),
                st.integers(0, 300_000),
            ),
            max_size=4,
        )
    )
    return extents, builder, avoid


def inside_images(extents: tuple[Extent, ...], rng: Range) -> list[tuple[int, int]]:
    """Half-open inside intervals whose parent ids fall in `rng` (the definition)."""
    out = []
    for e in extents:
        lo, hi = max(e.outside, rng.start), min(e.outside + e.count, rng.end)
        if lo < hi:
            out.append((e.inside + lo - e.outside, e.inside + hi - e.outside))
    return out


def free_runs(extents: tuple[Extent, ...], builder: int, avoid: list[Range]) -> list[Range]:
    """Maximal runs of mapped ids outside every hole, by coordinate compression."""
    mapped = [(e.inside, e.inside + e.count) for e in extents]
    holes = [(0, 1), (builder, builder + 1)]
    for rng in avoid:
        holes += inside_images(extents, rng)
    points = sorted({p for iv in mapped + holes for p in iv})
    runs: list[list[int]] = []
    for a, b in zip(points, points[1:], strict=False):
        free = any(lo <= a < hi for lo, hi in mapped) and not any(lo <= a < hi for lo, hi in holes)
        if not free:
            continue
        if runs and runs[-1][1] == a:
            runs[-1][1] = b
        else:
            runs.append([a, b])
    return [Range(a, b - a) for a, b in runs]


def covers(intervals: list[tuple[int, int]], start: int, end: int) -> bool:
    pos = start
    for lo, hi in sorted(intervals):
        if pos >= end:
            break
        if lo > pos:
            return False
        pos = max(pos, hi)
    return pos >= end


@given(id_maps_with_builder())
def test_choose_range_properties(case: tuple[tuple[Extent, ...], int, list[Range]]) -> None:
    extents, builder, avoid = case
    rng = choose_range(extents, builder, avoid)
    runs = free_runs(extents, builder, avoid)
    note(f"result={rng} runs={runs}")
    if rng is None:
        assert runs == []
        return
    assert rng.count >= 1
    assert 0 not in rng
    assert builder not in rng
    assert covers([(e.inside, e.inside + e.count) for e in extents], rng.start, rng.end)
    for hole in avoid:
        for lo, hi in inside_images(extents, hole):
            assert hi <= rng.start or lo >= rng.end, f"{rng} overlaps avoided {hole}"
    longest = max(r.count for r in runs)
    assert rng.count == longest
    # ties go to the lowest start
    assert rng.start == min(r.start for r in runs if r.count == longest)


@given(id_maps_with_builder())
def test_choose_range_keeps_nobody_linear_when_possible(
    case: tuple[tuple[Extent, ...], int, list[Range]],
) -> None:
    extents, builder, avoid = case
    runs = free_runs(extents, builder, avoid)
    if any(r.count >= FULL_RANGE for r in runs):
        rng = choose_range(extents, builder, avoid)
        assert rng is not None and rng.count >= FULL_RANGE
        # and Isar's nested map then holds 0..65534
        nested = isar_maps(rng)
        assert covers([(e.inside, e.inside + e.count) for e in nested], 0, NOBODY + 1)


@st.composite
def small_maps(draw: st.DrawFn) -> tuple[tuple[Extent, ...], int, list[Range]]:
    """Maps over ids < 200, small enough to compare against Python sets."""
    cuts = sorted(draw(st.lists(st.integers(0, 150), min_size=2, max_size=10, unique=True)))
    extents = [
        Extent(lo, draw(st.integers(0, 150)), hi - lo)
        for lo, hi in zip(cuts[::2], cuts[1::2], strict=False)
    ]
    builder = draw(st.integers(0, 160))
    avoid = draw(st.lists(st.builds(Range, st.integers(0, 300), st.integers(0, 40)), max_size=4))
    return tuple(extents), builder, avoid


@given(small_maps())
def test_choose_range_against_sets(case: tuple[tuple[Extent, ...], int, list[Range]]) -> None:
    extents, builder, avoid = case
    mapped = {e.inside + k for e in extents for k in range(e.count)}
    banned = {0, builder} | {
        e.inside + (o - e.outside)
        for e in extents
        for a in avoid
        for o in range(a.start, a.end)
        if e.outside <= o < e.outside + e.count
    }
    free = mapped - banned
    longest = 0
    run = 0
    for i in range(0, 400):
        run = run + 1 if i in free else 0
        longest = max(longest, run)

    rng = choose_range(extents, builder, avoid)
    if not free:
        assert rng is None
        return
    assert rng is not None
    ids = set(range(rng.start, rng.end))
    assert ids <= free
    assert rng.count == longest
    # the first of the longest runs
    assert not any(set(range(start, start + longest)) <= free for start in range(rng.start))


# --------------------------------------------------------------------------
# parse_id_map
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            kernel_text(*KEEP_ID_165536),
            (Extent(0, 1, 1001), Extent(1001, 0, 1), Extent(1002, 1002, 164535)),
        ),
        ("0 1001 1\n1 100000 165536\n", (Extent(0, 1001, 1), Extent(1, 100000, 165536))),
        ("         0          0 4294967295\n", (Extent(0, 0, 4294967295),)),
        # rows come back sorted by inside id; blank lines are ignored
        ("1 100000 65536\n\n0 1000 1", (Extent(0, 1000, 1), Extent(1, 100000, 65536))),
    ],
)
def test_parse_id_map_real_texts(text: str, expected: tuple[Extent, ...]) -> None:
    assert parse_id_map(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("\n  \n", id="blank"),
        pytest.param("0 1001\n", id="two-fields"),
        pytest.param("0 1001 1 5\n", id="four-fields"),
        pytest.param("0 x 1\n", id="letters"),
        pytest.param("0 -1 1\n", id="negative"),
        pytest.param("0 1000 0\n", id="count-zero"),
        pytest.param("0 0 4294967296\n", id="count-beyond-limit"),
        pytest.param("4294967295 0 1\n", id="inside-is-invalid-id"),
        pytest.param("0 4294967295 1\n", id="outside-is-invalid-id"),
        pytest.param("1 1 4294967295\n", id="inside-end-beyond-limit"),
        pytest.param("0 1 1\n0 1 1 1\n", id="bad-second-line"),
    ],
)
def test_parse_id_map_rejects_malformed(text: str) -> None:
    with pytest.raises(HostError):
        parse_id_map(text)


@given(
    st.lists(
        st.tuples(
            st.integers(0, ID_LIMIT - 1), st.integers(0, ID_LIMIT - 1), st.integers(1, ID_LIMIT)
        ),
        min_size=1,
        max_size=5,
    )
)
def test_parse_id_map_reads_kernel_format(rows: list[tuple[int, int, int]]) -> None:
    text = kernel_text(*rows)
    in_bounds = all(i + c <= ID_LIMIT and o + c <= ID_LIMIT for i, o, c in rows)
    if in_bounds:
        assert parse_id_map(text) == tuple(sorted(Extent(*r) for r in rows))
    else:
        with pytest.raises(HostError):
            parse_id_map(text)


# The kernel writes ASCII; this is the domain the entrypoint really sees.
ASCII = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=127))
NUMBERISH = st.lists(
    st.one_of(
        st.integers(0, 2**33).map(str),
        st.sampled_from([" ", "\t", "\n", "-", "+", "x", "0x1", "1_000", "²", "٣", "߀", "\u00a0"]),
    ),
    max_size=12,
).map("".join)


def _extents_or_host_error(text: str) -> None:
    try:
        result = parse_id_map(text)
    except HostError:
        return
    assert result and all(isinstance(e, Extent) and e.count >= 1 for e in result)


@given(st.one_of(ASCII, NUMBERISH.filter(str.isascii)))
def test_parse_id_map_fuzz_ascii(text: str) -> None:
    _extents_or_host_error(text)


@given(st.one_of(st.text(), NUMBERISH))
@example("² 0 1")
def test_parse_id_map_fuzz_any_text(text: str) -> None:
    _extents_or_host_error(text)


# --------------------------------------------------------------------------
# /etc/subuid parsing and lookup
# --------------------------------------------------------------------------

SUBUID = """\
# managed by hand
root:10000:65536

kasci:100000:165536
1001:300000:65536
kasci:500000:65536
   other:700000:65536
"""


@pytest.mark.parametrize(
    ("name", "uid", "expected"),
    [
        pytest.param("kasci", 1001, Range(100000, 165536), id="by-name-first-match"),
        pytest.param("nobody-here", 1001, Range(300000, 65536), id="by-decimal-uid"),
        pytest.param("other", 4242, Range(700000, 65536), id="leading-blanks-stripped"),
        pytest.param("root", 0, Range(10000, 65536), id="root"),
        pytest.param("ghost", 4242, None, id="absent"),
        # the comment line is not a user called '# managed by hand'
        pytest.param("# managed by hand", 9, None, id="comment-is-no-entry"),
    ],
)
def test_range_for(name: str, uid: int, expected: Range | None) -> None:
    assert range_for(parse_subid_file(SUBUID), name, uid) == expected


def test_range_for_uid_line_before_name_line_wins() -> None:
    entries = parse_subid_file("1001:300000:65536\nkasci:100000:165536\n")
    assert range_for(entries, "kasci", 1001) == Range(300000, 65536)


def test_parse_subid_file_keeps_line_numbers() -> None:
    entries = parse_subid_file(SUBUID)
    assert [(e.owner, e.line) for e in entries] == [
        ("root", 2),
        ("kasci", 4),
        ("1001", 5),
        ("kasci", 6),
        ("other", 7),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "kasci:100000\n",
        "kasci:100000:65536:1\n",
        ":100000:65536\n",
        "kasci:x:65536\n",
        "kasci:100000:-1\n",
        "kasci 100000 65536\n",
    ],
)
def test_parse_subid_file_rejects_malformed(text: str) -> None:
    with pytest.raises(HostError) as info:
        parse_subid_file(text)
    assert info.value.fix


def test_parse_subid_file_empty_is_no_entries() -> None:
    assert parse_subid_file("") == ()
    assert parse_subid_file("# only a comment\n\n") == ()


def _entries_or_host_error(text: str) -> None:
    try:
        entries = parse_subid_file(text)
    except HostError:
        return
    assert all(isinstance(e, SubidEntry) and e.owner for e in entries)


SUBIDISH = st.lists(
    st.one_of(
        st.sampled_from(["kasci", "1001", ":", "#", "\n", " ", "x", "-1", "²", "١"]),
        st.integers(0, 2**40).map(str),
    ),
    max_size=15,
).map("".join)


@given(st.one_of(ASCII, SUBIDISH.filter(str.isascii)))
def test_parse_subid_file_fuzz_ascii(text: str) -> None:
    _entries_or_host_error(text)


@given(st.one_of(st.text(), SUBIDISH))
@example("kasci:²:65536")
def test_parse_subid_file_fuzz_any_text(text: str) -> None:
    _entries_or_host_error(text)


# --------------------------------------------------------------------------
# overlaps, merge, subtract
# --------------------------------------------------------------------------


def _ids(ranges: list[Range] | tuple[Range, ...]) -> set[int]:
    return {i for r in ranges for i in range(r.start, r.end)}


def test_overlaps_finds_overlapping_and_not_adjacent() -> None:
    entries = parse_subid_file("a:100000:65536\nb:165536:65536\nc:200000:10\nd:500000:1\n")
    pairs = [(x.owner, y.owner) for x, y in overlaps(entries)]
    # a and b are adjacent (b starts where a ends): newuidmap accepts that
    assert pairs == [("b", "c")]


@given(st.lists(st.builds(Range, st.integers(0, 60), st.integers(1, 15)), max_size=6))
def test_overlaps_matches_shared_ids(ranges: list[Range]) -> None:
    entries = [SubidEntry(f"u{n}", r, n) for n, r in enumerate(ranges)]
    found = {frozenset((x.line, y.line)) for x, y in overlaps(entries)}
    expected = {
        frozenset((x.line, y.line))
        for i, x in enumerate(entries)
        for y in entries[i + 1 :]
        if _ids([x.range]) & _ids([y.range])
    }
    assert found == expected
    assert len(overlaps(entries)) == len(expected)


def test_overlaps_ignores_empty_ranges() -> None:
    assert overlaps(parse_subid_file("a:3:10\nb:5:0\n")) == []


SMALL_RANGES = st.lists(st.builds(Range, st.integers(0, 80), st.integers(0, 20)), max_size=6)


@given(SMALL_RANGES)
def test_merge_properties(ranges: list[Range]) -> None:
    merged = merge(ranges)
    assert _ids(merged) == _ids(ranges)
    assert all(r.count > 0 for r in merged)
    for a, b in zip(merged, merged[1:], strict=False):
        assert a.end < b.start  # sorted, disjoint and not even adjacent


@given(SMALL_RANGES, SMALL_RANGES)
def test_subtract_properties(ranges: list[Range], holes: list[Range]) -> None:
    result = subtract(ranges, holes)
    assert _ids(result) == _ids(ranges) - _ids(holes)
    assert all(r.count > 0 for r in result)
    for a, b in zip(result, result[1:], strict=False):
        assert a.end <= b.start


# --------------------------------------------------------------------------
# isar_maps: the nested map Isar's rootless mode builds from the range
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rng", "expected"),
    [
        (Range(100000, 65536), [Extent(0, 100000, 65534), Extent(65534, 165534, 1)]),
        (Range(100000, 165536), [Extent(0, 100000, 165534)]),
        (Range(100000, 65537), [Extent(0, 100000, 65535)]),
        (Range(100000, 2), []),
    ],
)
def test_isar_maps(rng: Range, expected: list[Extent]) -> None:
    assert isar_maps(rng) == expected


@given(st.builds(Range, st.integers(0, 10**9), st.integers(3, 10**6)))
def test_isar_maps_stay_inside_the_range_and_map_nobody(rng: Range) -> None:
    maps = isar_maps(rng)
    for e in maps:
        assert rng.start <= e.outside and e.outside + e.count <= rng.end
    parent = sorted((e.outside, e.outside + e.count) for e in maps)
    for (_, end), (start, _) in zip(parent, parent[1:], strict=False):
        assert end <= start  # no parent id used twice
    assert covers([(e.inside, e.inside + e.count) for e in maps], 0, min(rng.count - 2, NOBODY))
    assert any(NOBODY in Range(e.inside, e.count) for e in maps)


# --------------------------------------------------------------------------
# keep_id_extents: the namespace the entrypoint nests on rootless docker
# --------------------------------------------------------------------------


def test_keep_id_over_rootless_docker_is_podmans_keep_id() -> None:
    """Nesting over rootless docker's map gives the map podman's keep-id shows."""
    docker = parse_id_map(kernel_text(*NO_KEEP_ID_165536))
    nested = keep_id_extents(docker, BUILDER)
    assert parse_id_map(render_id_map(nested)) == parse_id_map(kernel_text(*KEEP_ID_165536))
    assert choose_range(nested, BUILDER) == Range(1002, 164535)


@pytest.mark.parametrize(
    ("rows", "uid"),
    [
        pytest.param(((1, 100000, 65536),), 1001, id="no-root-in-map"),
        pytest.param(((0, 1001, 1),), 1001, id="only-root"),
        pytest.param(((0, 1001, 1), (1, 100000, 1000)), 1001, id="uid-beyond-first-run"),
    ],
)
def test_keep_id_extents_refuses_maps_without_room(
    rows: tuple[tuple[int, int, int], ...], uid: int
) -> None:
    with pytest.raises(HostError) as info:
        keep_id_extents(parse_id_map(kernel_text(*rows)), uid)
    assert info.value.fix


def _merged(intervals: list[tuple[int, int]]) -> list[Range]:
    return merge(Range(lo, hi - lo) for lo, hi in intervals)


@st.composite
def keep_id_cases(draw: st.DrawFn) -> tuple[tuple[Extent, ...], int]:
    extents = draw(id_maps(from_zero=True))
    first = merge(Range(e.inside, e.count) for e in extents)[0]
    # the entrypoint only nests for a non-root builder (USER_ID != 0)
    if first.end == 1:
        return extents, 1
    uid = draw(st.one_of(st.integers(1, first.end - 1), st.sampled_from([1, first.end - 1])))
    return extents, uid


@given(keep_id_cases())
def test_keep_id_extents_is_a_valid_permutation_of_the_parent_ids(
    case: tuple[tuple[Extent, ...], int],
) -> None:
    extents, uid = case
    parent = merge(Range(e.inside, e.count) for e in extents)
    if parent[0].end <= uid:
        with pytest.raises(HostError):
            keep_id_extents(extents, uid)
        return
    nested = keep_id_extents(extents, uid)
    assert all(e.count >= 1 for e in nested)
    inside = [(e.inside, e.inside + e.count) for e in nested]
    outside = [(e.outside, e.outside + e.count) for e in nested]
    # the kernel wants both sides disjoint; together they cover exactly the parent's ids
    for side in (inside, outside):
        ordered = sorted(side)
        assert all(a[1] <= b[0] for a, b in zip(ordered, ordered[1:], strict=False))
        assert _merged(side) == parent
    # builder's uid is the parent's root, root takes the parent's id 1
    assert any(
        e.inside <= uid < e.inside + e.count and e.outside + uid - e.inside == 0 for e in nested
    )
    assert any(e.inside == 0 and e.outside == 1 for e in nested)
    # what the entrypoint writes reads back as the same map
    assert parse_id_map(render_id_map(nested)) == tuple(sorted(nested))


def test_keep_id_extents_for_id_zero_is_a_valid_map() -> None:
    nested = keep_id_extents(parse_id_map(kernel_text(*NO_KEEP_ID_165536)), 0)
    assert all(e.count >= 1 for e in nested)


def test_too_small_to_work_is_the_edge_of_debians_system_ids() -> None:
    """Isar maps COUNT-2 ids from 0: 1002 ids still cover the system ids 0..999."""
    from kasctl.inside.subids import too_small_to_work

    assert too_small_to_work(None)
    assert too_small_to_work(Range(100000, 1001))
    assert not too_small_to_work(Range(100000, 1002))
    assert not too_small_to_work(Range(100000, 65534))
