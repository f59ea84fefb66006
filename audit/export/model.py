"""The neutral profile every exporter writes: stacks of frames with four values.

A :class:`Profile` is what pprof, speedscope, the HTML flame graph and folded
text are rendered from. It is built from loaded reports by
:mod:`audit.export.source`, or from the rows of any table (``diff``, ``bench``)
by :func:`from_rows`. Stacks are stored innermost frame first, as pprof stores
them; the text formats reverse them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

# The sample types, in pprof's names and units (the order of Sample.values).
VALUE_TYPES: tuple[tuple[str, str], ...] = (
    ("inuse_objects", "count"),
    ("inuse_space", "bytes"),
    ("alloc_objects", "count"),
    ("alloc_space", "bytes"),
)
INUSE_OBJECTS, INUSE_SPACE, ALLOC_OBJECTS, ALLOC_SPACE = range(4)

# The values as the flame-graph formats (speedscope, HTML) offer them, the first shown
# first, and the name each is shown by; each format gives them units of its own.
SHOWN_ORDER = ("inuse_space", "inuse_objects", "alloc_space", "alloc_objects")
TITLES = {
    "inuse_space": "outstanding bytes",
    "inuse_objects": "outstanding blocks",
    "alloc_objects": "allocations",
    "alloc_space": "allocated bytes",
}


@dataclass(frozen=True)
class Frame:
    """One frame of a stack.

    ``kind`` is ``"native"`` for a code address in a module, ``"python"`` for a
    Python frame (function, file, line), ``"pool"`` for a pool name and ``"tag"``
    for an origin tag (the frames of a pool report), or ``"row"`` for the key
    of a table row.
    """

    function: str
    file: str | None = None
    line: int | None = None
    module: str | None = None      # the module's path (native frames)
    offset: int | None = None      # return address minus the module's load bias
    build_id: str | None = None
    module_base: int | None = None  # the module's load address in the process, when known
    kind: str = "native"

    def __hash__(self) -> int:
        # Kept once computed: a profile hashes each frame of each stack (equal stacks are
        # merged, frames numbered), and a frame is in many stacks.
        try:
            return self.__dict__["_hash"]  # type: ignore[no-any-return]
        except KeyError:
            value = hash((self.function, self.file, self.line, self.module, self.offset,
                          self.build_id, self.module_base, self.kind))
            object.__setattr__(self, "_hash", value)
            return value

    def label(self, by: str = "site") -> str:
        """The frame's text in folded, speedscope and HTML output."""
        if self.kind == "python" and self.file:
            if by == "function":
                return f"{self.function} ({self.file})"
            if by == "file":
                return self.file
            return f"{self.file}:{self.line} ({self.function})"
        if self.kind != "native":
            return self.function
        if self.offset is None:
            where = ""
        else:
            where = f"{_basename(self.module)}+{self.offset:#x}" if self.module else f"{self.offset:#x}"
        if by == "module":
            return self.module or "??"
        if by == "file":
            return self.file or (f"?? ({_basename(self.module)})" if self.module else "??")
        known = self.function and self.function != "??"
        if by == "function":
            return self.function if known else (f"?? ({where})" if where else "??")
        loc = f"{self.file}:{self.line}" if self.file and self.line else where
        name = self.function if known else "??"
        return f"{name} ({loc})" if loc else name


def _basename(path: str | None) -> str:
    return (path or "").rstrip("/").rsplit("/", 1)[-1]


@dataclass
class Sample:
    stack: tuple[Frame, ...]              # innermost first
    # One per VALUE_TYPES entry: an int for a count (exact at any size: a float keeps only
    # 53 bits, and 2**53 + 1 blocks would be written as 2**53), a float for an estimate.
    values: list[int | float]


@dataclass
class Profile:
    """Samples plus what a reader needs to interpret them."""

    samples: list[Sample] = field(default_factory=list)
    # Which of VALUE_TYPES the reports recorded (alloc_space needs bytes ever allocated).
    known: tuple[bool, bool, bool, bool] = (True, True, True, False)
    # Per-byte sampling rate of a sampled report; None when every block was counted.
    sample_rate: float | None = None
    time_nanos: int | None = None
    comments: list[str] = field(default_factory=list)
    name: str = "ringpool"
    by: str = "site"                      # how native frames are labelled in text formats

    def value_types(self) -> list[tuple[int, str, str]]:
        """(index into Sample.values, type, unit) for the recorded value types."""
        return [(i, t, u) for i, (t, u) in enumerate(VALUE_TYPES) if self.known[i]]

    def add(self, stack: Iterable[Frame], values: list[int | float]) -> None:
        self.samples.append(Sample(tuple(stack), [v if type(v) is int else exact(v) for v in values]))

    def numbered(self) -> tuple[list[Frame], list[tuple[int, ...]]]:
        """Each distinct frame once, in the order the samples first name it (stacks in
        order, each innermost first), and each sample's stack as the numbers of its frames
        there. A frame is looked up by value once per object, not once per stack it is
        in: equal stacks have equal numbers, and a number is cheap to hash and compare."""
        distinct: list[Frame] = []
        by_value: dict[Frame, int] = {}
        by_object: dict[int, int] = {}     # id(frame): the samples keep every frame alive
        number = by_object.__getitem__
        stacks: list[tuple[int, ...]] = []
        for sample in self.samples:
            try:
                stacks.append(tuple(map(number, map(id, sample.stack))))
                continue
            except KeyError:
                pass
            numbers = []
            for frame in sample.stack:
                n = by_object.get(id(frame))
                if n is None:
                    n = by_value.get(frame)
                    if n is None:
                        n = by_value[frame] = len(distinct)
                        distinct.append(frame)
                    by_object[id(frame)] = n
                numbers.append(n)
            stacks.append(tuple(numbers))
        return distinct, stacks

    def frame_table(self, key: Callable[[Frame], tuple[Any, ...]],
                    entry: Callable[[tuple[Any, ...]], dict[str, Any]]
                    ) -> tuple[list[dict[str, Any]], list[tuple[int, ...]],
                               Callable[[tuple[int, ...]], list[int]]]:
        """For the formats that list each frame once and give a stack as indexes into
        that list, outermost first (speedscope, the page): frames with equal ``key(frame)``
        are one entry, ``entry(key)``, added when a stack first names it. Returns the list
        (filled as stacks are turned into indexes), each sample's stack as
        :meth:`numbered` gives it, and the function that turns one into indexes; each
        distinct frame's key is made once."""
        distinct, numbered = self.numbered()
        frames: list[dict[str, Any]] = []
        index: dict[tuple[Any, ...], int] = {}
        seen: list[int] = [-1] * len(distinct)     # each distinct frame's index, once known

        def frame_index(n: int) -> int:
            if seen[n] >= 0:
                return seen[n]
            k = key(distinct[n])
            found = index.get(k)
            if found is None:
                found = index[k] = len(frames)
                frames.append(entry(k))
            seen[n] = found
            return found

        def indexes(numbers: tuple[int, ...]) -> list[int]:
            found = list(map(seen.__getitem__, reversed(numbers)))
            return found if -1 not in found else list(map(frame_index, reversed(numbers)))

        return frames, numbered, indexes

    def merged(self) -> "Profile":
        """The same profile with equal stacks summed into one sample (first-seen order)."""
        by_stack: dict[tuple[int, ...], Sample] = {}
        for s, key in zip(self.samples, self.numbered()[1]):
            seen = by_stack.get(key)
            if seen is None:
                by_stack[key] = Sample(s.stack, list(s.values))
            else:
                seen.values = [a + b for a, b in zip(seen.values, s.values)]
        return Profile(list(by_stack.values()), self.known, self.sample_rate, self.time_nanos,
                       list(self.comments), self.name, self.by)


def exact(value: int | float) -> int | float:
    """A float that is a whole number (every float from 2**53 up is) as an int: summed, the
    values stay exact and finite (two estimates of 1.7e308 bytes add up to a number, not to
    infinity, which no format can write)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def from_rows(rows: Iterable[dict[str, Any]], frames: Callable[[dict[str, Any]], list[str]],
              value_key: str, name: str = "ringpool") -> Profile:
    """A profile of any table: a row's frames (outermost first) carry its numeric value
    as the outstanding bytes. Rows without a number in value_key are left out, and so are
    suppressed rows (an interposer diff's), as the leak gate leaves them out."""
    profile = Profile(known=(False, True, False, False), name=name, by="function")
    for row in rows:
        if row.get("suppressed") is True:
            continue
        value = row.get(value_key)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        stack = [Frame(str(f), kind="row") for f in frames(row)]
        profile.add(reversed(stack), [0, value, 0, 0])
    return profile
