"""Deltas between two memories, keyed by the stable point_id.

A delta from `parent` to `memory` holds the ids removed, the rows added (every field) and
the rows changed: their ids and, for each field that differs in at least one of them, their
new values. Rebuilding keeps the parent's rows in order minus the removed ones, updates the
changed rows in place and appends the added rows. `make_delta` refuses (returns None) a
memory that is not in that order, so a rebuilt memory always equals the saved one exactly.

Tensors are named `removed`, `added.<field>` and `changed.<field>`. A field missing from a
delta written before that field existed is taken from the parent for changed rows and
filled with its default (as `SpatialMemory.from_arrays` does) for added rows.
"""

from __future__ import annotations

import hashlib
from typing import Iterable

import numpy as np
import torch

from .cloud import FIELDS, SpatialMemory
from .errors import MemoryFormatError, MemoryIntegrityError

REMOVED = "removed"
ADDED = "added."
CHANGED = "changed."
_SAME_SIZE_INT = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def content_hash(memory: SpatialMemory, names: Iterable[str] | None = None) -> str:
    """`memory.sha256()` restricted to the fields `names` (in that order), as a file written
    when only those fields existed recorded it; all of FIELDS gives `memory.sha256()` itself."""
    names = list(FIELDS) if names is None else list(names)
    if names == list(FIELDS):
        return memory.sha256()
    digest = hashlib.sha256()
    digest.update(f"spatia.engine.memory voxel_size={memory.voxel_size!r} next_id={memory.next_id}".encode())
    for name in names:
        array = getattr(memory, name).detach().cpu().numpy()
        array = np.ascontiguousarray(array.astype(array.dtype.newbyteorder("<"), copy=False))
        digest.update(f"|{name}:{array.dtype.str}:{list(array.shape)}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _sorted_ids(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(ids sorted, the permutation that sorts them); None for an already increasing array, the
    usual case since ids grow as points are added and every operation keeps the order."""
    if len(ids) < 2 or bool((ids[1:] > ids[:-1]).all()):
        return ids, None
    return torch.sort(ids)


def _find(ids: torch.Tensor, pool: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(found, position): whether each of `ids` is in `pool`, and where (valid where found)."""
    sorted_pool, order = _sorted_ids(pool)
    if len(sorted_pool) == 0:
        return torch.zeros_like(ids, dtype=torch.bool), torch.zeros_like(ids)
    pos = torch.searchsorted(sorted_pool, ids).clamp_(max=len(sorted_pool) - 1)
    return sorted_pool[pos] == ids, pos if order is None else order[pos]


def _bits(values: torch.Tensor) -> torch.Tensor:
    """Floats as integers of the same size, so -0.0 and 0.0 (equal, but hashed apart) differ."""
    return values.view(_SAME_SIZE_INT[values.element_size()]) if values.is_floating_point() else values


def make_delta(parent: SpatialMemory, memory: SpatialMemory) -> dict[str, torch.Tensor] | None:
    """CPU tensors that turn `parent` into `memory`, or None if `memory` does not keep the
    parent's surviving rows first and in order (or changes the voxel size)."""
    if memory.voxel_size != parent.voxel_size:
        return None
    parent = parent.to(memory.device) if parent.device != memory.device else parent
    kept = _find(parent.point_id, memory.point_id)[0]
    count = int(kept.sum())
    if count > len(memory) or not torch.equal(memory.point_id[:count], parent.point_id[kept]):
        return None
    if _find(memory.point_id[count:], parent.point_id)[0].any():  # a duplicate of a kept id
        return None
    survivors = None if count == len(parent) else kept.nonzero().squeeze(1)  # None: nothing removed, nothing copied
    differs = {}
    for name in FIELDS:
        if name == "point_id":
            continue
        old = getattr(parent, name) if survivors is None else getattr(parent, name)[survivors]
        old, new = _bits(old), _bits(getattr(memory, name)[:count])
        rows = old != new
        rows = rows.flatten(1).any(dim=1) if rows.ndim > 1 else rows
        if bool(rows.any()):
            differs[name] = rows
    changed = torch.stack(list(differs.values())).any(dim=0) if differs else torch.zeros(count, dtype=torch.bool)
    changed = changed.to(memory.device)
    tensors = {REMOVED: parent.point_id[~kept], CHANGED + "point_id": memory.point_id[:count][changed]}
    tensors.update({CHANGED + name: getattr(memory, name)[:count][changed] for name in differs})
    tensors.update({ADDED + name: getattr(memory, name)[count:] for name in FIELDS})
    return {name: value.detach().cpu().contiguous() for name, value in tensors.items()}


def delta_nbytes(tensors: dict[str, torch.Tensor]) -> int:
    return sum(value.numel() * value.element_size() for value in tensors.values())


def _check_tensors(tensors: dict[str, torch.Tensor], source: str) -> None:
    rows: dict[str, set[int]] = {ADDED: set(), CHANGED: set()}
    for key, value in tensors.items():
        prefix, _, name = key.partition(".")
        if key == REMOVED:
            prefix, name = REMOVED, "point_id"
        elif prefix + "." not in rows or name not in FIELDS:
            raise MemoryIntegrityError(f"{source}: unknown tensor {key!r} in a delta")
        dtype, trailing = FIELDS[name]
        if value.dtype != dtype or value.ndim != 1 + len(trailing) or tuple(value.shape[1:]) != trailing:
            expected = f"{dtype} {['n', *trailing]}"
            raise MemoryIntegrityError(f"{source}: {key} is {value.dtype} {list(value.shape)}, expected {expected}")
        if prefix != REMOVED:
            rows[prefix + "."].add(len(value))
    for prefix, counts in rows.items():
        if len(counts) > 1:
            raise MemoryIntegrityError(f"{source}: the {prefix[:-1]} tensors have different row counts {sorted(counts)}")
    if REMOVED not in tensors or CHANGED + "point_id" not in tensors:
        raise MemoryIntegrityError(f"{source}: a delta needs the tensors {REMOVED!r} and {CHANGED + 'point_id'!r}")


def apply_delta(parent: SpatialMemory, tensors: dict[str, torch.Tensor], *, voxel_size: float, next_id: int,
                source: str = "delta") -> SpatialMemory:
    """The memory `tensors` (from make_delta) make of `parent`; raises MemoryIntegrityError naming
    `source` if the delta does not fit the parent. The result is not validated point by point:
    check its content hash against the one recorded with the delta."""
    _check_tensors(tensors, source)
    device = parent.device
    removed = tensors[REMOVED].to(device)
    keep = ~_find(parent.point_id, removed)[0]
    kept = int(keep.sum())
    if len(parent) - kept != len(removed):
        raise MemoryIntegrityError(f"{source}: the delta removes ids its parent does not hold")
    try:
        added = SpatialMemory.from_arrays(
            {key[len(ADDED):]: value for key, value in tensors.items() if key.startswith(ADDED)},
            voxel_size=voxel_size, next_id=next_id, device=device,
        )
    except MemoryFormatError as err:
        raise MemoryIntegrityError(f"{source}: the added points are invalid ({err})") from None
    # one new tensor per field (the parent stays intact): surviving rows in order, then the added ones
    survivors = keep.nonzero().squeeze(1) if len(removed) else None  # one index for all fields: faster than masks
    values = {
        name: torch.cat([getattr(parent, name) if survivors is None else getattr(parent, name)[survivors],
                         getattr(added, name)])
        for name in FIELDS
    }
    ids = tensors[CHANGED + "point_id"].to(device)
    if len(ids):
        found, rows = _find(ids, values["point_id"][:kept])
        if not bool(found.all()):
            raise MemoryIntegrityError(f"{source}: the delta changes ids its parent does not hold")
        for name in FIELDS:
            if name != "point_id" and CHANGED + name in tensors:
                values[name][rows] = tensors[CHANGED + name].to(device)
    return SpatialMemory._unchecked(**values, voxel_size=voxel_size, next_id=next_id)
