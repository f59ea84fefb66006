"""``--format pprof``: a gzipped ``profile.proto`` message, written by hand.

The wire format is small enough to write without a dependency: each field is a
key (field number << 3 | wire type) then a varint (type 0) or a length and
bytes (type 2); repeated numbers are packed into one length-delimited field.
Field numbers follow pprof's documented ``perftools.profiles`` schema:

    Profile   1 sample_type  2 sample  3 mapping  4 location  5 function
              6 string_table  9 time_nanos  11 period_type  12 period
              13 comment  14 default_sample_type
    ValueType 1 type  2 unit                      (string-table indices)
    Sample    1 location_id (packed, leaf first)  2 value (packed)
    Mapping   1 id  2 memory_start  3 memory_limit  4 file_offset  5 filename
              6 build_id  7 has_functions  8 has_filenames  9 has_line_numbers
    Location  1 id  2 mapping_id  3 address  4 line
    Line      1 function_id  2 line
    Function  1 id  2 name  3 system_name  4 filename  5 start_line

Strings, functions, locations and mappings are each stored once and referred
to by index or id. Values are integers in the units their sample type names;
for a sampled report they are the estimates (already scaled), and ``period``
is the mean number of bytes between samples, 1/rate, with ``period_type``
space/bytes, as Go's heap profiles state theirs.

Every number is an int64 there, and a reader sums a value type over the samples
in int64 too (``pprof -top``'s totals). A report may count up to 2**64 - 1 and
several reports sum beyond that, so values are saturated, never wrapped: each
sample's value is at most what is left of 2**63 - 1 after the samples before it
of the same type (at least what is left of -2**63, for a diff's negative
changes), so neither a value nor a reader's running total wraps to the other
sign, and a comment then says which types were cut. A ``taken_at`` whose nanoseconds since
1970 do not fit an int64 (after 2262) gives no ``time_nanos``.
"""

from __future__ import annotations

import gzip
import math

from audit.export.model import INUSE_SPACE, VALUE_TYPES, Frame, Profile

INT64_MAX = (1 << 63) - 1
INT64_MIN = -(1 << 63)


def _varint(n: int) -> bytes:
    if 0 <= n < _SMALL_COUNT:
        return _SMALL[n]
    return _varint_of(n)


def _varint_of(n: int) -> bytes:
    if n < 0:
        n += 1 << 64  # int64 negatives are ten-byte two's complement varints
    out = bytearray()
    while True:
        low = n & 0x7F
        n >>= 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


# The varints of 0 .. 2**14 - 1 (one or two bytes), made once: location and string ids,
# line numbers and most counts are below, and a profile writes millions of them.
_SMALL_COUNT = 1 << 14
_SMALL = [_varint_of(n) for n in range(_SMALL_COUNT)]


def _uint(field: int, value: int) -> bytes:
    """A varint field; zero is the proto3 default and is left out."""
    return _varint(field << 3) + _varint(value) if value else b""


def _bytes(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _packed(field: int, values: list[int]) -> bytes:
    return _bytes(field, b"".join(map(_varint, values))) if values else b""


class _Strings:
    def __init__(self) -> None:
        self.index: dict[str, int] = {"": 0}
        self.table: list[str] = [""]

    def __call__(self, text: str | None) -> int:
        if not text:
            return 0
        i = self.index.get(text)
        if i is None:
            i = self.index[text] = len(self.table)
            self.table.append(text)
        return i


def encode(profile: Profile) -> bytes:
    """The uncompressed ``Profile`` message."""
    s = _Strings()
    types = profile.value_types()
    out = bytearray()
    for _, name, unit in types:
        out += _bytes(1, _uint(1, s(name)) + _uint(2, s(unit)))

    functions: dict[tuple[str, str, str], int] = {}
    function_msgs: list[bytes] = []
    mappings: dict[str, int] = {}
    mapping_info: list[list[int | str | None | bool]] = []  # start, limit, path, build id, symbolized
    locations: dict[tuple[object, ...], int] = {}
    location_msgs: list[bytes] = []

    def function_id(frame: Frame) -> int:
        system = frame.function if frame.kind in ("native", "python") else f"{frame.kind}:{frame.function}"
        key = (frame.function, system, frame.file or "")
        fid = functions.get(key)
        if fid is None:
            fid = functions[key] = len(functions) + 1
            function_msgs.append(_uint(1, fid) + _uint(2, s(frame.function)) + _uint(3, s(system))
                                 + _uint(4, s(frame.file)))
        return fid

    def mapping_id(frame: Frame, address: int) -> int:
        assert frame.module
        mid = mappings.get(frame.module)
        if mid is None:
            mid = mappings[frame.module] = len(mappings) + 1
            mapping_info.append([frame.module_base or 0, address + 1, frame.module, frame.build_id, False])
        info = mapping_info[mid - 1]
        info[1] = max(int(info[1] or 0), address + 1)
        if frame.function and frame.function != "??":
            info[4] = True
        return mid

    def new_location(frame: Frame) -> int:
        if frame.kind == "native" and frame.offset is not None:
            key: tuple[object, ...] = ("native", frame.module or "", frame.offset)
        else:
            key = (frame.kind, frame.function, frame.file, frame.line)
        lid = locations.get(key)
        if lid is None:
            lid = locations[key] = len(locations) + 1
            msg = _uint(1, lid)
            if key[0] == "native" and frame.offset is not None:
                address = (frame.module_base or 0) + frame.offset
                if frame.module:
                    msg += _uint(2, mapping_id(frame, address))
                msg += _uint(3, address)
            line = _uint(1, function_id(frame)) + _uint(2, frame.line or 0)
            msg += _bytes(4, line)
            location_msgs.append(msg)
        return lid

    # Each distinct frame's location, in the order the samples first name them, and the
    # varint of its id: a stack is packed from its frames' numbers.
    distinct, stacks = profile.numbered()
    location_varints = [_varint(new_location(frame)) for frame in distinct]
    totals = [0] * len(types)
    cut = [False] * len(types)
    for sample, numbers in zip(profile.samples, stacks):
        ids = b"".join(map(location_varints.__getitem__, numbers))
        values = []
        for n, (i, _, _) in enumerate(types):
            v = sample.values[i]
            v = int(v) if isinstance(v, int) else int(round(v))
            lo, hi = INT64_MIN - totals[n], INT64_MAX - totals[n]
            if not lo <= v <= hi:  # a diff's change may be negative: saturated both ways
                v, cut[n] = min(max(v, lo), hi), True
            totals[n] += v
            values.append(v)
        out += _bytes(2, (_bytes(1, ids) if ids else b"") + _packed(2, values))
    for mid, (start, limit, path, build_id, symbolized) in enumerate(mapping_info, 1):
        msg = (_uint(1, mid) + _uint(2, int(start or 0)) + _uint(3, int(limit or 0))
               + _uint(5, s(str(path))) + _uint(6, s(str(build_id) if build_id else None)))
        if symbolized:
            msg += _uint(7, 1) + _uint(8, 1) + _uint(9, 1)
        out += _bytes(3, msg)
    for msg in location_msgs:
        out += _bytes(4, msg)
    for msg in function_msgs:
        out += _bytes(5, msg)

    space = s("space")
    bytes_unit = s("bytes")
    saturated = [name for (_, name, _), c in zip(types, cut) if c]
    notes = list(profile.comments)
    if saturated:
        notes.append("ringpool-audit: " + ", ".join(saturated) + " saturated at the int64 "
                     "range (2**63-1) in total; the report's own counts are larger")
    comments = [s(c) for c in notes]
    default_type = s(VALUE_TYPES[INUSE_SPACE][0])
    tail = bytearray()
    if profile.time_nanos and INT64_MIN <= profile.time_nanos <= INT64_MAX:
        tail += _uint(9, profile.time_nanos)
    tail += _bytes(11, _uint(1, space) + _uint(2, bytes_unit))
    period = 1
    if profile.sample_rate is not None:
        # a rate in (0, 1] whose inverse is past int64 (1e-300, or infinite for 5e-324)
        mean = 1.0 / profile.sample_rate
        period = INT64_MAX if not math.isfinite(mean) or mean >= INT64_MAX else max(1, int(round(mean)))
    tail += _uint(12, period)
    for c in comments:
        tail += _uint(13, c)
    tail += _uint(14, default_type)
    # The string table is complete only now; its position among the fields does not matter.
    for text in s.table:
        out += _bytes(6, text.encode("utf-8"))
    return bytes(out + tail)


class PprofFormatter:
    """Renders a table's profile as gzipped profile.proto bytes."""

    binary = True

    def render(self, table: object) -> bytes:
        from audit.export import profile_of

        return gzip.compress(encode(profile_of(table)), mtime=0)
