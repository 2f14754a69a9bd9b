"""The `.wandb` transaction log's framing (LevelDB log format), read record by record.

A 7-byte header `b":W&B" <u16 LE 0xBEE1> <u8 version 0>`, then 32 KiB blocks. Each block holds records
`<u32 LE crc32(type byte + data)> <u16 LE length> <u8 type> <data>`; type FULL=1 is a whole payload, FIRST=2 /
MIDDLE=3 / LAST=4 are fragments of one payload. A record never crosses a block boundary; fewer than 7 bytes left
in a block are zero padding. Payloads are `wandb.proto.wandb_internal_pb2.Record` protobufs, decoded with
wandb's own classes. A live run's log ends mid-record: reading stops cleanly at the last complete record; a
damaged record before the end raises `CorruptRunFileError` naming the file and the byte offset.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from comprobust.errors import UserError

BLOCK_SIZE = 32 * 1024
HEADER = b":W&B" + struct.pack("<HB", 0xBEE1, 0)
_RECORD_HEADER = struct.Struct("<IHB")
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


class CorruptRunFileError(UserError):
    """A `.wandb` file has a damaged record (bad CRC, impossible length or undecodable payload)."""


def iter_records(path: Path) -> Iterator[tuple[int, Any]]:
    """Yield `(byte offset, wandb_internal_pb2.Record)` for every complete record of a `.wandb` file.

    Stops silently at a truncated tail (a live run); raises `CorruptRunFileError` for damage before the tail.
    Sets no state; `read_run` is the usual entry point.
    """
    for offset, payload in iter_payloads(Path(path), Tail()):
        yield offset, parse_record(path, offset, payload)


class Tail:
    """Set by `iter_payloads` when the log ends mid-record (a live run)."""

    truncated = False


def iter_payloads(path: Path, tail: Tail, from_block: int = 0) -> Iterator[tuple[int, bytes]]:
    """Payloads with their offsets. With `from_block` > 0, start reading at that block and skip the fragments
    of a record that began before it."""
    with open(path, "rb") as handle:
        data = handle.read(len(HEADER))
        if from_block > 0:
            handle.seek(from_block * BLOCK_SIZE)
            data += b"\0" * (from_block * BLOCK_SIZE - len(data))  # offsets stay file offsets
        data += handle.read()
    if len(data) < len(HEADER):
        tail.truncated = len(data) > 0  # the writer has not flushed its whole header yet
        return
    if data[: len(HEADER)] != HEADER:
        raise CorruptRunFileError(
            f"{path}: not a W&B transaction log (header {data[:7]!r}, expected {HEADER!r}); "
            "pass the run's run-<id>.wandb file or its folder"
        )
    view = memoryview(data)
    size = len(data)
    pos = max(len(HEADER), from_block * BLOCK_SIZE)
    parts: list[bytes] = []
    start = pos
    skipping = from_block > 0  # inside a fragmented record that began in an earlier block
    while True:
        room = BLOCK_SIZE - pos % BLOCK_SIZE
        if room < _RECORD_HEADER.size:  # zero padding at the end of a block
            pos += room
            continue
        if pos + _RECORD_HEADER.size > size:
            tail.truncated = pos < size or bool(parts)
            return
        crc, length, kind = _RECORD_HEADER.unpack_from(data, pos)
        if crc == 0 and length == 0 and kind == 0:
            if not any(view[pos:]):  # preallocated / not yet written: the end of the log
                tail.truncated = bool(parts)
                return
            _corrupt(path, pos, "an empty record header followed by data")
        if length > room - _RECORD_HEADER.size:
            _corrupt(path, pos, f"a record length of {length} bytes that crosses the 32 KiB block boundary")
        end = pos + _RECORD_HEADER.size + length
        if end > size:  # the writer is still writing this record
            tail.truncated = True
            return
        chunk = view[pos + _RECORD_HEADER.size : end]
        if zlib.crc32(chunk, zlib.crc32(bytes((kind,)))) != crc:
            _corrupt(path, pos, "a CRC mismatch")
        if skipping and kind in (_MIDDLE, _LAST):
            pos = end
            continue
        skipping = False
        if kind == _FULL:
            if parts:
                _corrupt(path, pos, "a whole record inside an unfinished fragmented one")
            yield pos, bytes(chunk)
        elif kind == _FIRST:
            if parts:
                _corrupt(path, pos, "a new fragmented record inside an unfinished one")
            parts, start = [bytes(chunk)], pos
        elif kind in (_MIDDLE, _LAST):
            if not parts:
                _corrupt(path, pos, "a record fragment without its first part")
            parts.append(bytes(chunk))
            if kind == _LAST:
                yield start, b"".join(parts)
                parts = []
        else:
            _corrupt(path, pos, f"an unknown record type {kind}")
        pos = end


def _corrupt(path: Path, offset: int, what: str) -> None:
    raise CorruptRunFileError(
        f"{path}: corrupt record at byte offset {offset} ({what}); the run log is damaged. "
        "Re-run the stage that wrote it (or delete the run folder) instead of using its results."
    )


def parse_record(path: Path, offset: int, payload: bytes) -> Any:
    from wandb.proto.wandb_internal_pb2 import Record  # type: ignore[attr-defined]  # generated, no stubs

    record = Record()
    try:
        record.ParseFromString(payload)
    except Exception as err:  # google.protobuf.message.DecodeError
        _corrupt(path, offset, f"an undecodable protobuf payload: {err}")
    return record
