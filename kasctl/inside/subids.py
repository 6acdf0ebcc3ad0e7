"""Sub-id arithmetic: which ids the builder may hand to Isar's nested namespaces.

Pure and stdlib-only, because two places need the same answer: the image's
entrypoint (which writes /etc/subuid and /etc/subgid from the container's own
/proc/self/uid_map) and the host side (`doctor`, and the planner, which knows
the host's users and sub-id ranges that a rootful container must not touch).

Isar's rootless mode reads the FIRST /etc/subuid line whose user field is the
build user's name or uid, maps COUNT-2 ids from 0 upward onto BASE.., and maps
65534 (nobody/nogroup) alone onto BASE+COUNT-2 when the linear part stops
short of it. mmdebstrap --mode=unshare wants the range to hold at least 65536
ids. So the best range is simply the largest run of ids that the container
has mapped, minus root, minus the builder itself, minus anything the host
says is taken.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from kasctl.errors import HostError

#: Ids a nested namespace needs so that 0..65534 (nobody/nogroup) map linearly.
NOBODY = 65534
FULL_RANGE = 65536
#: The largest id the kernel accepts in a map: 2**32 - 1 itself means "invalid".
ID_LIMIT = 4294967295


class _Record:
    """A value: immutable, equal and hashed by its fields, shown as Name(field=value, ...).

    What a frozen dataclass gives, written out, because the image's entrypoint
    imports this module at every container start and `dataclasses` (which
    imports inspect, re and enum) would make up most of its start-up time.
    """

    __slots__: tuple[str, ...] = ()

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def _same_kind(self, other: object) -> _Record | None:
        return other if isinstance(other, _Record) and type(other) is type(self) else None

    def __eq__(self, other: object) -> bool:
        same = self._same_kind(other)
        return NotImplemented if same is None else self._values() == same._values()

    def __hash__(self) -> int:
        return hash((type(self).__name__, *self._values()))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __reduce__(self) -> tuple[type[_Record], tuple[object, ...]]:
        return type(self), self._values()


class _Ordered(_Record):
    """A value ordered by its fields, in order (as `order=True` on a dataclass)."""

    __slots__ = ()

    def __lt__(self, other: object) -> bool:
        same = self._same_kind(other)
        return NotImplemented if same is None else self._values() < same._values()

    def __le__(self, other: object) -> bool:
        same = self._same_kind(other)
        return NotImplemented if same is None else self._values() <= same._values()

    def __gt__(self, other: object) -> bool:
        same = self._same_kind(other)
        return NotImplemented if same is None else self._values() > same._values()

    def __ge__(self, other: object) -> bool:
        same = self._same_kind(other)
        return NotImplemented if same is None else self._values() >= same._values()


class Extent(_Ordered):
    """One row of /proc/PID/uid_map: `inside` ids map onto `outside` ids of the parent."""

    __slots__ = ("inside", "outside", "count")
    inside: int
    outside: int
    count: int

    def __init__(self, inside: int, outside: int, count: int) -> None:
        object.__setattr__(self, "inside", inside)
        object.__setattr__(self, "outside", outside)
        object.__setattr__(self, "count", count)


class Range(_Ordered):
    """A half-open run of ids [start, start + count), as in /etc/subuid."""

    __slots__ = ("start", "count")
    start: int
    count: int

    def __init__(self, start: int, count: int) -> None:
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "count", count)

    @property
    def end(self) -> int:
        return self.start + self.count

    def __contains__(self, ident: object) -> bool:
        return isinstance(ident, int) and self.start <= ident < self.end

    def render(self) -> str:
        return f"{self.start}:{self.count}"


class SubidEntry(_Record):
    """One line of /etc/subuid or /etc/subgid."""

    __slots__ = ("owner", "range", "line")
    owner: str
    range: Range
    line: int

    def __init__(self, owner: str, range: Range, line: int) -> None:
        object.__setattr__(self, "owner", owner)
        object.__setattr__(self, "range", range)
        object.__setattr__(self, "line", line)


def is_number(text: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts '²', which int() refuses."""
    return text.isascii() and text.isdigit()


def parse_id_map(text: str) -> tuple[Extent, ...]:
    """Parse /proc/PID/uid_map or gid_map text; raise HostError if malformed."""
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 3 or not all(is_number(f) for f in fields):
            raise HostError(
                f"id map line {number} is not three numbers: {line!r}",
                fix="report this map; kasctl reads /proc/self/uid_map and gid_map",
            )
        inside, outside, count = (int(f) for f in fields)
        if count == 0 or inside + count > ID_LIMIT or outside + count > ID_LIMIT:
            raise HostError(f"id map line {number} is out of bounds: {line!r}")
        rows.append(Extent(inside, outside, count))
    if not rows:
        raise HostError("the id map is empty", fix="the container has no user mapping")
    return tuple(sorted(rows))


def parse_subid_file(text: str) -> tuple[SubidEntry, ...]:
    """Parse /etc/subuid or /etc/subgid. Comment and blank lines are skipped."""
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        fields = stripped.split(":")
        if (
            len(fields) != 3
            or not fields[0]
            or not is_number(fields[1])
            or not is_number(fields[2])
        ):
            raise HostError(
                f"line {number} is not NAME:START:COUNT: {line!r}",
                fix="each line must read user:first-id:count, e.g. builder:100000:165536",
            )
        start, count = int(fields[1]), int(fields[2])
        if start + count > ID_LIMIT:
            raise HostError(
                f"line {number} reaches past the largest id, {ID_LIMIT - 1}: {line!r}",
                fix="a range START:COUNT must end below 4294967295 (START + COUNT <= 4294967295)",
            )
        entries.append(SubidEntry(fields[0], Range(start, count), number))
    return tuple(entries)


def range_for(entries: Sequence[SubidEntry], name: str, uid: int) -> Range | None:
    """The range Isar uses: the first line naming the user, by name or decimal uid.

    Never by login name (os.getlogin() fails without a controlling terminal,
    as in CI) and never comparing the string field with an int.
    """
    for entry in entries:
        if entry.owner in (name, str(uid)):
            return entry.range
    return None


def overlaps(entries: Sequence[SubidEntry]) -> list[tuple[SubidEntry, SubidEntry]]:
    """Pairs of lines whose ranges share ids (newuidmap refuses such maps)."""
    found = []
    ordered = sorted((e for e in entries if e.range.count > 0), key=lambda e: e.range)
    for i, first in enumerate(ordered):
        for second in ordered[i + 1 :]:
            if second.range.start >= first.range.end:
                break
            found.append((first, second))
    return found


def merge(ranges: Iterable[Range]) -> list[Range]:
    """Sorted, non-overlapping, non-adjacent ranges covering the same ids."""
    merged: list[Range] = []
    for rng in sorted(r for r in ranges if r.count > 0):
        if merged and rng.start <= merged[-1].end:
            last = merged[-1]
            merged[-1] = Range(last.start, max(last.end, rng.end) - last.start)
        else:
            merged.append(rng)
    return merged


def subtract(ranges: Iterable[Range], holes: Iterable[Range]) -> list[Range]:
    """The ids of `ranges` that are in none of `holes`."""
    result = []
    holes = merge(holes)
    for rng in merge(ranges):
        start = rng.start
        for hole in holes:
            if hole.end <= start or hole.start >= rng.end:
                continue
            if hole.start > start:
                result.append(Range(start, hole.start - start))
            start = max(start, hole.end)
        if start < rng.end:
            result.append(Range(start, rng.end - start))
    return result


def _inside_of(extents: Sequence[Extent], outside: Range) -> list[Range]:
    """The inside ids whose outside ids fall in `outside`."""
    found = []
    for ext in extents:
        lo = max(ext.outside, outside.start)
        hi = min(ext.outside + ext.count, outside.end)
        if lo < hi:
            found.append(Range(ext.inside + lo - ext.outside, hi - lo))
    return found


def choose_range(
    extents: Sequence[Extent],
    builder_id: int,
    avoid_outside: Iterable[Range] = (),
) -> Range | None:
    """The builder's sub-id range inside a container with the map `extents`.

    The largest run of mapped ids that holds neither 0 nor the builder's own
    id, nor any id that the parent namespace knows as `avoid_outside` (on a
    rootful engine the parent is the host, and the host side passes the ids
    of its users, groups and sub-id ranges, so that files Isar creates never
    land on a real host id). Ties go to the lowest start. None when nothing
    is left.
    """
    mapped = [Range(e.inside, e.count) for e in extents]
    holes = [Range(0, 1), Range(builder_id, 1)]
    for rng in avoid_outside:
        holes.extend(_inside_of(extents, rng))
    free = subtract(mapped, holes)
    if not free:
        return None
    return max(free, key=lambda r: (r.count, -r.start))


def isar_maps(rng: Range) -> list[Extent]:
    """The nested map Isar's rootless mode builds from a range (for doctor's report)."""
    linear = rng.count - 2
    if linear <= 0:
        return []
    maps = [Extent(0, rng.start, linear)]
    if linear <= NOBODY:
        maps.append(Extent(NOBODY, rng.start + linear, 1))
    return maps


def render_avoid(ranges: Iterable[Range]) -> str:
    """Serialise ranges for the entrypoint's environment: `start:count,...`."""
    return ",".join(r.render() for r in merge(ranges))


def parse_avoid(text: str) -> list[Range]:
    """Inverse of render_avoid; raises HostError on anything else."""
    ranges = []
    for part in filter(None, text.split(",")):
        start, sep, count = part.partition(":")
        if not sep or not is_number(start) or not is_number(count):
            raise HostError(f"bad id range {part!r} in KASCTL_SUBID_AVOID")
        ranges.append(Range(int(start), int(count)))
    return ranges


def keep_id_extents(extents: Sequence[Extent], uid: int) -> list[Extent]:
    """A user namespace over `extents` in which `uid` is the parent's root, as podman's keep-id.

    Rootless docker maps the host user to the container's root, which also
    owns the image. Nesting one more namespace with this layout lets the
    builder run as `uid` (not root, no capabilities) while what it writes
    still belongs to the host user: inside ids 0..uid-1 take the parent's ids
    1..uid, `uid` takes the parent's 0, and every id above stays as it is.
    The inside ids this covers are returned as new extents (inside -> parent).
    """
    parent = merge(Range(e.inside, e.count) for e in extents)
    if uid == 0:  # root keeps being root: the identity over what is mapped
        return [Extent(r.start, r.start, r.count) for r in parent]
    if not parent or parent[0].start != 0 or parent[0].count <= uid:
        raise HostError(
            f"cannot keep uid {uid}: the container maps only "
            + ", ".join(r.render() for r in parent),
            fix="give the host user a sub-id range larger than its uid (run `kasctl doctor`)",
        )
    rows = [Extent(0, 1, uid), Extent(uid, 0, 1)]
    first = parent[0]
    if first.end > uid + 1:
        rows.append(Extent(uid + 1, uid + 1, first.end - uid - 1))
    rows += [Extent(r.start, r.start, r.count) for r in parent[1:]]
    return rows


def render_id_map(extents: Sequence[Extent]) -> str:
    """Text for /proc/PID/uid_map (one write, all rows)."""
    return "".join(f"{e.inside} {e.outside} {e.count}\n" for e in extents)


def rootless_builder_range(host_range: Range, uid: int) -> Range | None:
    """The builder's range on a rootless engine, predicted from the host user's sub-ids.

    Rootless podman (keep-id) and rootless docker (with the entrypoint's
    nesting) both give the container ids 0..COUNT with builder at `uid`.
    """
    container = [Extent(0, uid, 1), Extent(1, host_range.start, host_range.count)]
    try:
        extents = keep_id_extents(container, uid)
    except HostError:  # fewer sub-ids than the uid: the engine cannot keep it at all
        return None
    return choose_range(extents, uid)


#: The fewest ids a builder range must have for an Isar rootfs to be unpacked at
#: all: Isar maps COUNT-2 ids linearly from 0 (and 65534 alone when that falls
#: short), and Debian's packages own files with the ids of their system users
#: and groups, which lie below 1000 (SYS_UID_MAX/SYS_GID_MAX 999).
WORKING_RANGE = 1000 + 2


def too_small_to_work(rng: Range | None) -> bool:
    """A builder range with which no Isar rootfs can be built (kasctl warns at run time)."""
    return rng is None or rng.count < WORKING_RANGE


def sufficient_host_count(uid: int) -> int:
    """The host sub-id count that gives builder a full 65536-id range above its uid."""
    return uid + FULL_RANGE
