"""The training loop's checkpoint files: their format, their atomic writes in the background, reading them back.

A run folder holds `last.pt` (the latest epoch), `previous.pt` (the one before) and `best.pt` (the best epoch so
far; a hard link to that epoch's file). Each is a `torch.save` of the epoch's whole state (model, optimiser,
scheduler, RNG, history), read with `weights_only=True`.

Format 2 stores every tensor of that state packed: one flat tensor per dtype and device holds them all, and the
state's tree holds a small marker in each tensor's place (`read_checkpoint` puts the tensors back, each with its
own storage, shape and strides). `torch.save` spends most of its time on each tensor's pickled object graph (about
25 objects and one zip record per tensor), so packing halves the serialising the training thread does every
epoch; the bytes are the same data. Format 1 (the plain tree, written before packing) is still read.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import math
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from torch import nn

from comprobust.atomic import atomic_open, fsync_dir
from comprobust.errors import UserError

CHECKPOINT_FORMAT = 2
READABLE_FORMATS = (1, 2)  # 1: the plain tree, before tensors were packed
LAST, PREVIOUS, BEST = "last.pt", "previous.pt", "best.pt"
_TENSOR = "\x00tensor"  # first element of the marker tuple that stands for a packed tensor
_PACKED = "packed_tensors"  # the top-level key of the flat tensors


def encode_checkpoint(state: dict[str, Any]) -> bytes:
    """Serialise an epoch's `state` (format 2) on the calling thread. The bytes are the snapshot: training goes on
    changing the live tensors, and packing copies them into the flat tensors first, so `torch.save` never reads
    the live ones (serialising the live parameters and optimiser buffers made every later training step slower:
    1.4-2.2% in four paired runs). Serialising here leaves the writer thread nothing but system calls, which
    release the GIL: a background `torch.save` held it long enough to slow the training loop's Python."""
    buffer = io.BytesIO()
    torch.save(_pack({**state, "format": CHECKPOINT_FORMAT}), buffer)
    return buffer.getvalue()


@dataclasses.dataclass
class _Flat:
    """The tensors of one dtype and device being packed: the flat tensor's index, its parts so far, their size."""

    index: int
    parts: list[torch.Tensor] = dataclasses.field(default_factory=list)
    size: int = 0


def _pack(state: dict[str, Any]) -> dict[str, Any]:
    """`state` with each tensor replaced by a marker (flat index, offset, shape, strides), plus the flat tensors
    under `_PACKED`."""
    flats: dict[tuple[torch.dtype, torch.device], _Flat] = {}

    def marker(node: Any) -> tuple[Any, ...] | None:
        if not isinstance(node, torch.Tensor):
            return None
        flat = flats.get((node.dtype, node.device))
        if flat is None:
            flat = flats[node.dtype, node.device] = _Flat(len(flats))
        offset = flat.size
        flat.parts.append(node.detach().reshape(-1))
        flat.size += node.numel()
        return (_TENSOR, flat.index, offset, tuple(node.shape), tuple(node.stride()))

    tree = _replaced(state, marker)
    tree[_PACKED] = [torch.cat(flat.parts) for flat in flats.values()]
    return tree


def _unpack(tree: dict[str, Any]) -> dict[str, Any]:
    """The state `_pack` packed: each marker replaced by its tensor (a copy with its own storage and strides)."""
    flats = tree.pop(_PACKED)

    def tensor(node: Any) -> torch.Tensor | None:
        if not (type(node) is tuple and node and isinstance(node[0], str) and node[0] == _TENSOR):
            return None
        _, index, offset, shape, stride = node
        values = flats[index][offset : offset + math.prod(shape)].view(shape)
        return torch.empty_strided(shape, stride, dtype=values.dtype).copy_(values)

    return _replaced(tree, tensor)


def _replaced(node: Any, replacement: Callable[[Any], Any]) -> Any:
    """`node` with every part for which `replacement` returns something other than None replaced by that, found
    through dicts, lists and tuples; dicts keep their type and attributes (a state dict's `_metadata`), the
    parts left alone are shared."""
    replaced = replacement(node)
    if replaced is not None:
        return replaced
    if isinstance(node, dict):
        copied = copy.copy(node)
        for key, value in node.items():
            copied[key] = _replaced(value, replacement)
        return copied
    if isinstance(node, list):
        return [_replaced(value, replacement) for value in node]
    if type(node) is tuple:
        return tuple(_replaced(value, replacement) for value in node)
    return node


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The state a checkpoint file holds (any readable format), tensors on the CPU; a corrupt, truncated or
    foreign file is refused with the fix."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated or garbled files
        previous = path.with_name(PREVIOUS)
        hint = f"; the previous good checkpoint is {previous}" if previous.exists() else ""
        raise UserError(
            f"checkpoint {path} is corrupt or truncated ({type(err).__name__}); move it away to retrain or "
            f"resume from an older one{hint}"
        ) from err
    if not isinstance(state, dict) or state.get("format") not in READABLE_FORMATS:
        raise UserError(
            f"checkpoint {path} is not a comprobust checkpoint (formats {', '.join(map(str, READABLE_FORMATS))})"
        )
    return _unpack(state) if _PACKED in state else state


def load_checkpoint(path: Path, identity: dict[str, Any], model: nn.Module) -> dict[str, Any] | None:
    """Read a checkpoint written by `fit`, or None if absent; refuse corrupt files and ones of another run or
    architecture."""
    if not path.exists():
        return None
    state = read_checkpoint(path)
    mismatch = describe_mismatch(state.get("identity", {}), identity)
    if mismatch:
        raise UserError(f"checkpoint {path} belongs to another run ({mismatch}); use a fresh output folder")
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state["model"].items()}
    if expected != found:
        differing = sorted(set(expected.items()) ^ set(found.items()))[:3]
        raise UserError(f"checkpoint {path} holds another architecture (parameters differ: {differing})")
    return state


def describe_mismatch(found: dict[str, Any], expected: dict[str, Any]) -> str:
    """A short description of the keys whose values differ between two identity dicts ('' if equal)."""
    diffs = [
        f"{key}: checkpoint {found.get(key)!r} vs run {expected.get(key)!r}"
        for key in sorted(set(found) | set(expected))
        if found.get(key) != expected.get(key)
    ]
    return "; ".join(diffs[:4])


class CheckpointWriter:
    """Runs checkpoint writes on one background thread, one at a time and in order.

    `submit(function, *args, then=callback)` first finishes the previous write: it re-raises that write's
    error, or calls its `then` on this thread. Leaving the `with` block finishes the last write the same way;
    when the block raised, its error wins over the write's.
    """

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint")
        self._pending: tuple[Future, Callable[[], Any] | None] | None = None

    def submit(
        self, function: Callable[..., None], *args: Any, then: Callable[[], Any] | None = None
    ) -> None:
        self.wait()
        self._pending = (self._executor.submit(function, *args), then)

    def wait(self) -> None:
        """Finish the pending write, then call its `then`."""
        pending, self._pending = self._pending, None
        if pending is not None:
            future, then = pending
            future.result()
            if then is not None:
                then()

    def __enter__(self) -> CheckpointWriter:
        return self

    def __exit__(self, error_type: type | None, *_: object) -> None:
        try:
            if error_type is None:
                self.wait()
            else:
                with contextlib.suppress(Exception):
                    self.wait()
        finally:
            self._executor.shutdown(wait=True)


def write_epoch(folder: Path, data: bytes, improved: bool) -> None:
    """Publish one epoch's checkpoint as last.pt (the one before it kept as previous.pt) and, when the epoch
    improved, as best.pt: one file under both names (hard links), best.pt first, so that a crash in between
    never leaves a last.pt whose best epoch best.pt does not hold."""
    staged = folder / f".{LAST}.new"
    with atomic_open(staged, "wb") as handle:
        handle.write(data)
    if improved:
        _link_over(staged, folder / BEST)
    if (folder / LAST).exists():
        _link_over(folder / LAST, folder / PREVIOUS)
    os.replace(staged, folder / LAST)
    fsync_dir(folder)


def _link_over(source: Path, target: Path) -> None:
    """Make `target` another name of `source`'s file, replacing what `target` named atomically."""
    link = target.with_name(f".{target.name}.link")
    link.unlink(missing_ok=True)
    os.link(source, link)
    os.replace(link, target)
