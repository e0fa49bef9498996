"""A fast JSON codec for whole snapshots: :func:`snapshot_to_json` and :func:`snapshot_from_json`.

``Snapshot.model_validate_json`` validates every historical result on every load, and
``Snapshot.model_dump_json`` encodes every one of them again on every store: a caller that
stores a run's snapshot whole and loads it before each step pays O(history) Python work per
step. This codec reads and writes the same wire shape (``@refluxo/core``'s; the keys of the
snapshot object come out in another order, which JSON does not distinguish) but:

* **decodes the context lazily**: the top level is parsed with msgspec, which skips over the
  context object at C speed (checking that it is well-formed JSON) and hands it back as a
  raw slice, building no objects for it. The snapshot's context is a :class:`LazyContext`
  over that slice: a node's results are validated (as ``NodeResult``, exactly as
  ``model_validate_json`` would) when they are first touched, by a step, an executor or an
  expression that reads them;
* **encodes by reuse**: results that came in as JSON and were not replaced go out as the
  very bytes they came in as; only results appended since the snapshot was decoded are
  encoded (by pydantic, as ``model_dump_json`` encodes them).

Keys iterate in JavaScript's order (see :func:`~refluxo.context.js_key_order`): the decoded
object's keys as ``JSON.parse`` would order them, then new nodes. The decoded bytes are
reused as they are, new nodes appended after them: a document written by either engine is
already in that order, and one that is not (integer-like node ids after others, as a hash
ordered Python dict once wrote them) is read in that order by ``JSON.parse`` and by this
module all the same, so checking its text would cost a scan per load for nothing a reader
sees. A new integer-like node id re-encodes the context object in order.
The snapshot's own keys come out in the model's order (``model_dump_json``'s, which is
``@refluxo/core``'s), unknown ones last, so both codecs write the same bytes for a snapshot
they both encoded.

Both codecs read and refuse the same documents: JSON nesting deeper than
:data:`~refluxo.model.MAX_JSON_DEPTH` (:class:`~refluxo.model.SnapshotTooDeep`), a lone
UTF-16 surrogate escape, bytes that are not UTF-8 (``ValueError`` saying so); ``NaN`` and
``Infinity`` are read as pydantic reads them (written back as ``null``, as
``JSON.stringify`` writes them).

Where an invalid historical result is refused: everything outside the context (status,
version, retry state...) is validated by ``snapshot_from_json`` itself, and malformed JSON
anywhere raises there too (:class:`ValueError`). A result that is well-formed JSON but not a
valid ``NodeResult`` (a missing ``timestamp``, say, or an output nested too deep) raises
:class:`InvalidResult` (a ``ValueError`` naming the node, the result's index and what is
wrong) when its node is first read: by ``engine.execute_step`` when the run reaches that
node again, by an executor or expression reading it, by iterating the context, or by
``Snapshot.model_dump*``. A node nobody reads is carried through ``snapshot_to_json``
unchanged (so its bytes stay as they came, as ``@refluxo/core`` keeps them). Call
:meth:`LazyContext.validate` (or load with ``Snapshot.model_validate_json``) to check a
whole history up front, e.g. when accepting a snapshot from an untrusted party.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from itertools import chain
from typing import Any

import immutables
import msgspec
from pydantic import TypeAdapter, ValidationError
from pyrsistent import pvector

from refluxo.context import Context, in_added_order, is_array_index, js_key_order
from refluxo.model import (
    LONE_SURROGATE,
    MAX_JSON_DEPTH,
    MAX_OUTPUT_DEPTH,
    NodeResult,
    Snapshot,
    SnapshotTooDeep,
)
from refluxo.steps import evolve

__all__ = ["InvalidResult", "LazyContext", "snapshot_from_json", "snapshot_to_json"]


class InvalidResult(ValueError):
    """A result in a decoded snapshot's history is not a valid result; the message names
    the node, the result's index and what is wrong with it."""

    def __init__(self, node_id: str, message: str) -> None:
        super().__init__(f"invalid result of node {node_id!r} in the snapshot: {message}")
        self.node_id = node_id


_RESULTS: TypeAdapter[list[NodeResult]] = TypeAdapter(list[NodeResult])
# A node's results are validated inside two more levels (the snapshot and its context, as
# in the whole document) so that pydantic's depth limit counts as it does for the document.
_NESTED_RESULTS: TypeAdapter[tuple[tuple[list[NodeResult]]]] = TypeAdapter(
    tuple[tuple[list[NodeResult]]]
)
_NOT_FINITE = re.compile(rb"NaN|Infinity")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_TOP = msgspec.json.Decoder(dict[str, msgspec.Raw])
_SPLIT = msgspec.json.Decoder(dict[str, msgspec.Raw])
_ENCODE = msgspec.json.Encoder()
_WHITESPACE = b" \t\r\n"
_OPEN = ord("{")


class _Base:
    """The context object as it was decoded, shared by every context derived from it.

    ``raw`` is a view of the context's bytes inside the document (``document``), never
    copied; the per-node split and the validated results are caches, filled on first use
    (so a step and its successors validate a node at most once).
    """

    __slots__ = ("_absent", "_split", "_text", "document", "raw", "validated")

    def __init__(self, document: bytes, raw: memoryview) -> None:
        self.document = document
        self.raw = raw
        self._split: dict[str, msgspec.Raw] | None = None
        self._absent: set[str] = set()
        self._text: bytes | None = None
        self.validated: dict[str, Any] = {}

    @property
    def split(self) -> dict[str, msgspec.Raw]:
        if self._split is None:
            self._split = _SPLIT.decode(self.raw)
        return self._split

    def has(self, node_id: str) -> bool:
        if self._split is None and _plain(node_id):
            if node_id in self._absent:
                return False
            if self._text is None:
                # A copy of the context alone to search (not the header's strings); empty
                # when it holds an escape that could spell a plain id's character otherwise
                # (a plain id has no quote, backslash or control character, so only "\u"
                # and "\/" can: neither engine writes them in a key).
                # Most contexts hold no backslash at all: one memchr answers for them.
                # The searches go backwards (``rfind``): CPython's reverse search measured
                # about 3x faster than ``in`` on contexts like these, whose keys and
                # values are full of the needles' first and last byte, the quote.
                text = bytes(self.raw)
                escaped = b"\\" in text and (text.rfind(b"\\u") >= 0 or text.rfind(b"\\/") >= 0)
                self._text = b"" if escaped else text
            # Every key is spelled literally, so a plain node id that does not occur as a
            # quoted string is not a key (a search instead of a split).
            if self._text and self._text.rfind(b'"' + node_id.encode() + b'"') < 0:
                self._absent.add(node_id)
                return False
        return node_id in self.split

    def results(self, node_id: str) -> Any:
        found = self.validated.get(node_id)
        if found is None:
            raw = b"[[" + bytes(self.split[node_id]) + b"]]"
            try:
                decoded = _NESTED_RESULTS.validate_json(raw)[0][0]
            except ValidationError as error:
                raise InvalidResult(node_id, _plain_words(error)) from None
            found = self.validated[node_id] = pvector(decoded)
        return found

    def open_end(self) -> tuple[memoryview, bool]:
        """The context's bytes without the closing brace, and whether it has no member."""
        raw = self.raw
        end = len(raw) - 1  # the closing brace
        while raw[end - 1] in _WHITESPACE:
            end -= 1
        return raw[:end], raw[end - 1] == _OPEN


def _plain_words(error: ValidationError) -> str:
    """What is wrong with a node's results, one problem a clause: ``result 0: timestamp:
    field required``, without pydantic's input dump."""
    clauses = []
    for problem in error.errors(include_url=False, include_input=False)[:5]:
        message = str(problem["msg"])
        if problem["type"] == "json_invalid" and "recursion limit" in message:
            clauses.append(
                f"it nests deeper than a snapshot may ({MAX_JSON_DEPTH} levels, so an "
                f"output at most {MAX_OUTPUT_DEPTH})"
            )
            continue
        where = [str(part) for part in problem["loc"][2:]]  # past the two wrapping levels
        if where and where[0].isdigit():
            where[0] = f"result {where[0]}"
        # pydantic's function-after wrapper adds a step to the path: not the user's.
        where = [part for part in where if not part.startswith("function-after")]
        head = ": ".join([".".join(where[:1]), *[".".join(where[1:])]]).strip(": ")
        clauses.append(f"{head}: {message[:1].lower()}{message[1:]}" if head else message)
    more = error.error_count() - len(clauses)
    return "; ".join(clauses) + (f"; and {more} more" if more > 0 else "")


def _plain(key: str) -> bool:
    return key.isascii() and key.isprintable() and '"' not in key and "\\" not in key


class LazyContext(Context):
    """A context decoded from JSON whose results are validated when first read.

    Behaves as :class:`~refluxo.context.MemoryContext` does (persistent: ``appended``
    returns a new context and shares everything); :func:`snapshot_to_json` writes the
    results it never decoded back as their original bytes.
    """

    __slots__ = ("_base", "_new", "_overlay")

    def __init__(
        self,
        base: _Base,
        overlay: immutables.Map[str, Any] | None = None,
        new: immutables.Map[str, int] | None = None,
    ) -> None:
        self._base = base
        # Every node whose results changed since decoding: its whole history.
        self._overlay: immutables.Map[str, Any] = (
            overlay if overlay is not None else immutables.Map()
        )
        # The nodes that were not in the decoded context, and when each was added (see
        # MemoryContext: a map, so that adding a node copies nothing).
        self._new: immutables.Map[str, int] = new if new is not None else immutables.Map()

    def appended(self, node_id: str, result: NodeResult) -> LazyContext:
        history = self._overlay.get(node_id)
        new = self._new
        if history is None:
            if self._base.has(node_id):
                history = self._base.results(node_id)
            else:
                history = pvector()
                new = new.set(node_id, len(new))
        return LazyContext(self._base, self._overlay.set(node_id, history.append(result)), new)

    def __getitem__(self, node_id: str) -> Sequence[NodeResult]:
        history = self._overlay.get(node_id)
        if history is not None:
            found: Sequence[NodeResult] = history
            return found
        if not self._base.has(node_id):
            raise KeyError(node_id)
        base: Sequence[NodeResult] = self._base.results(node_id)
        return base

    def __contains__(self, node_id: object) -> bool:
        if not isinstance(node_id, str):
            return False
        return node_id in self._overlay or self._base.has(node_id)

    def __iter__(self) -> Iterator[str]:
        return iter(js_key_order(chain(self._base.split, in_added_order(self._new))))

    def __len__(self) -> int:
        return len(self._base.split) + len(self._new)

    def __repr__(self) -> str:
        # The node ids only: showing results would validate them, and a snapshot holding an
        # invalid one must still be printable (in a log line, a debugger).
        nodes = list(self)
        more = f" and {len(nodes) - 5} more" if len(nodes) > 5 else ""
        return f"LazyContext(nodes={nodes[:5]!r}{more})"

    def __copy__(self) -> LazyContext:
        return self  # immutable

    def __deepcopy__(self, memo: dict[int, Any]) -> LazyContext:
        return self

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        return _lazy_context, (self.to_json(),)

    def validate(self) -> LazyContext:
        """Validate every result now (raises :class:`InvalidResult`); returns self."""
        for node_id in self._base.split:
            self._base.results(node_id)
        return self

    def to_json(self) -> bytes:
        """The context object as JSON, reusing the bytes of every result decoded unchanged."""
        return b"".join(self._json_parts())

    def _json_parts(self) -> list[bytes | memoryview]:
        base = self._base
        # A decoded context's bytes are reused as they are: whatever the order of its
        # integer-like keys in the text, JSON.parse and this module read them in
        # JavaScript's order (first, ascending). A new integer-like node re-encodes the
        # object so that fresh text stays in that order too.
        in_order = not any(is_array_index(key) for key in self._new)
        if not in_order:
            return [self._encode_in_order()]
        if not self._overlay:
            return [base.raw]
        parts: list[bytes | memoryview] = []
        for node_id in in_added_order(self._new):
            parts += (b",", _key(node_id), _encode(self._overlay[node_id]))
        if len(self._overlay) == len(self._new):
            # Only new nodes: the decoded bytes, then the new members.
            head, empty = base.open_end()
            parts[0] = head if empty else b","
            if not empty:
                parts.insert(0, head)
            parts.append(b"}")
            return parts
        # Some decoded nodes gained results: each is its old bytes plus the new results.
        merged = self._decoded_members()
        out = _ENCODE.encode(merged)
        if not parts:
            return [out]
        if not merged:
            parts[0] = b"{"
            return [*parts, b"}"]
        return [memoryview(out)[:-1], *parts, b"}"]

    def _decoded_members(self) -> dict[str, msgspec.Raw]:
        """The decoded nodes' members: their old bytes, plus any results added since."""
        base = self._base
        merged: dict[str, msgspec.Raw] = dict(base.split)
        for node_id, raw_results in base.split.items():
            history = self._overlay.get(node_id)
            if history is not None:
                kept = len(base.results(node_id))
                merged[node_id] = msgspec.Raw(_extend(bytes(raw_results), kept, history[kept:]))
        return merged

    def _encode_in_order(self) -> bytes:
        """The whole context object re-encoded in JavaScript's key order (decoded results
        still written as their bytes)."""
        members = self._decoded_members()
        for node_id in in_added_order(self._new):
            members[node_id] = msgspec.Raw(_encode(self._overlay[node_id]))
        return _ENCODE.encode({key: members[key] for key in js_key_order(members)})


def _lazy_context(data: bytes) -> LazyContext:
    """A context from its own JSON (what ``LazyContext.__reduce__`` pickles)."""
    return LazyContext(_Base(data, memoryview(data)))


def _key(node_id: str) -> bytes:
    return _ENCODE.encode(node_id) + b":"


def _encode(results: Sequence[NodeResult]) -> bytes:
    return _RESULTS.dump_json(list(results))


def _extend(raw_results: bytes, kept: int, added: Sequence[NodeResult]) -> bytes:
    if not added:
        return raw_results
    tail = _encode(added)  # "[...]"
    if kept == 0:
        return tail
    return raw_results.rstrip(_WHITESPACE)[:-1] + b"," + tail[1:]


def _context_parts(context: Context) -> list[bytes | memoryview]:
    if isinstance(context, LazyContext):
        return context._json_parts()
    if not context:
        return [b"{}"]
    return [b"{", b",".join(_key(k) + _encode(v) for k, v in context.items()), b"}"]


def snapshot_to_json(snapshot: Snapshot) -> bytes:
    """``snapshot`` as wire JSON (UTF-8 bytes), equal as JSON to ``model_dump_json()``
    (the same keys in the same order).

    Results decoded by :func:`snapshot_from_json` and not replaced since are written back
    as the bytes they were read from; only results appended since are encoded.
    """
    head = snapshot.model_dump_json(exclude={"context"}).encode()
    # The context goes where the model (and @refluxo/core) writes it: before "version",
    # which is always written. A string value cannot hold ',"version":' (its quotes would
    # be escaped), so the first one is the key.
    cut = head.index(b',"version":')
    return b"".join([head[:cut], b',"context":', *_context_parts(snapshot.context), head[cut:]])


def snapshot_from_json(data: bytes | bytearray | memoryview | str) -> Snapshot:
    """Read a wire snapshot (from this codec, ``model_dump_json`` or ``@refluxo/core``).

    Everything but the context is validated here, as ``Snapshot.model_validate_json``
    validates it; the context's results are validated when first read (see the module's
    docstring for where an invalid one is refused). Raises :class:`ValueError`
    (``msgspec.DecodeError`` or pydantic's ``ValidationError``, both subclasses) on
    malformed JSON or an invalid snapshot.
    """
    if isinstance(data, str):
        try:
            data = data.encode()
        except UnicodeEncodeError:
            raise ValueError(LONE_SURROGATE) from None
    elif not isinstance(data, bytes):
        data = bytes(data)
    if not data.isascii():
        # msgspec skips over the context without decoding its strings: check here what
        # pydantic's parser checks, so that both codecs refuse the same documents.
        try:
            data.decode()
        except UnicodeDecodeError as error:
            raise ValueError(f"snapshot JSON is not valid UTF-8 (at byte {error.start})") from None
    try:
        top = _TOP.decode(data)
    except RecursionError:
        raise SnapshotTooDeep(f"snapshot JSON nests deeper than {MAX_JSON_DEPTH} levels") from None
    except msgspec.DecodeError:
        if _NOT_FINITE.search(data):
            # NaN and Infinity are not JSON (JSON.parse refuses them), but pydantic's reader
            # takes them, and Python's json.dumps writes them: read as the model reads them
            # (written back as null, as JSON.stringify writes them).
            return Snapshot.model_validate_json(data)
        if _SURROGATE_ESCAPE.search(data):
            raise ValueError(LONE_SURROGATE) from None
        raise
    raw_context = top.pop("context", None)
    # An explicit empty context: the model's default would be deep-copied.
    members = [_key(k) + bytes(v) for k, v in top.items()]
    header = b"{" + b",".join([*members, b'"context":{}']) + b"}"
    snapshot = Snapshot.model_validate_json(header)
    if raw_context is None:
        return snapshot
    raw = memoryview(raw_context)
    if raw[0] != _OPEN:
        # Not an object: let the model say why, in its own words.
        Snapshot.model_validate_json(b'{"context":' + bytes(raw) + b"," + header[1:])
        raise ValueError("context must be an object")  # pragma: no cover
    return evolve(snapshot, {"context": LazyContext(_Base(data, raw))})
