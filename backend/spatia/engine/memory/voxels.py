"""Voxel hashing: packed int64 voxel keys, grouping and a sorted key index.

A key packs the integer cell coordinates (19 bits per axis, offset to be non-negative), the
cell's level (3 bits: the cell is voxel_size * 2**level wide) and the surface side bin
(3 bits) into one int64, so "same cell, same side" is one integer comparison and all lookups
are sort + searchsorted, vectorised on CPU or CUDA.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .errors import VoxelRangeError

AXIS_BITS = 19
LEVEL_BITS = 3
SIDE_BITS = 3
LOW_BITS = LEVEL_BITS + SIDE_BITS
MAX_KEY_LEVEL = (1 << LEVEL_BITS) - 1
AXIS_OFFSET = 1 << (AXIS_BITS - 1)
MAX_VOXEL_COORD = AXIS_OFFSET - 1
MIN_VOXEL_COORD = -AXIS_OFFSET

# Side bins: the world axis closest to a surface normal that faces the observing camera.
SIDE_AXES = torch.tensor(
    [[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=torch.float32
)
SIDE_COUNT = len(SIDE_AXES)


def side_bins(vectors: torch.Tensor) -> torch.Tensor:
    """Directions [N,3] -> side bin uint8 [N]: 2*axis + (component < 0) for the dominant axis.

    Opposite vectors always fall in different bins, which is what keeps the two faces of a
    thin wall apart.
    """
    axis = vectors.abs().argmax(dim=1)
    negative = torch.gather(vectors, 1, axis[:, None])[:, 0] < 0
    return (axis * 2 + negative).to(torch.uint8)


def _check_range(lo: int, hi: int) -> None:
    if lo < MIN_VOXEL_COORD or hi > MAX_VOXEL_COORD:
        raise VoxelRangeError(
            f"voxel coordinates span [{lo}, {hi}] but a key addresses [{MIN_VOXEL_COORD}, {MAX_VOXEL_COORD}] "
            "per axis; use a larger voxel size or keep points nearer the origin"
        )


def point_keys(xyz: torch.Tensor, side: torch.Tensor, voxel_size: float, level: torch.Tensor | None = None) -> torch.Tensor:
    """World points [N,3], side bins [N] and cell levels [N] (default 0) -> int64 keys [N].

    At level l, cell i spans [i, i+1) * voxel_size * 2**l along each axis.
    """
    if level is None or not bool(level.any()):
        level = None
        coords = torch.floor(xyz / voxel_size)
    else:
        if int(level.max()) > MAX_KEY_LEVEL:
            raise VoxelRangeError(f"cell level {int(level.max())} is above the largest, {MAX_KEY_LEVEL}")
        cell = torch.exp2(level.to(torch.float32)).mul_(voxel_size)
        coords = torch.floor(xyz / cell[:, None])
    if len(coords):
        lo, hi = torch.aminmax(coords)
        _check_range(int(lo), int(hi))  # checked on the floats: float32 holds every integer of the key range
    coords = coords.to(torch.int64)
    weights = torch.tensor(
        [1 << (2 * AXIS_BITS + LOW_BITS), 1 << (AXIS_BITS + LOW_BITS), 1 << LOW_BITS], device=xyz.device
    )
    # The weighted sum equals the bit-packed (coord + offset) fields; the offsets fold into one constant.
    # CPU has an int64 matrix-vector product; CUDA matmul has no int64 kernel.
    packed = coords @ weights if coords.device.type == "cpu" else (coords * weights).sum(dim=1)
    packed.add_(int(AXIS_OFFSET * weights.sum())).add_(side.to(torch.int64))
    if level is not None:
        packed.add_(level.to(torch.int64) << SIDE_BITS)
    return packed


def key_sides(keys: torch.Tensor) -> torch.Tensor:
    return (keys & ((1 << SIDE_BITS) - 1)).to(torch.uint8)


def key_levels(keys: torch.Tensor) -> torch.Tensor:
    return ((keys >> SIDE_BITS) & MAX_KEY_LEVEL).to(torch.uint8)


def argsort(values: torch.Tensor, *, stable: bool = False) -> torch.Tensor:
    """Indices that sort a 1-D tensor.

    On CPU this goes through numpy, whose SIMD sort is several times faster than torch's
    CPU sort for int64 keys; on CUDA it stays in torch.
    """
    if values.device.type == "cpu":
        order = np.argsort(values.numpy(), kind="stable" if stable else None)
        return torch.from_numpy(order.astype(np.int64, copy=False))
    return torch.argsort(values, stable=stable)


def run_starts(keys: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """Bool [N]: True where a run of equal consecutive keys (and equal labels, if given) begins."""
    starts = torch.ones(len(keys), dtype=torch.bool, device=keys.device)
    torch.ne(keys[1:], keys[:-1], out=starts[1:])
    if labels is not None:
        starts[1:] |= labels[1:] != labels[:-1]
    return starts


@dataclass(frozen=True)
class Groups:
    """Points grouped by equal key: `keys` [U] sorted unique keys, `inverse` [N] group of each point."""

    keys: torch.Tensor
    inverse: torch.Tensor
    first: torch.Tensor  # [U] index (into the input) of the first point of each group in sort order


def group_by_key(keys: torch.Tensor, *, order: torch.Tensor | None = None) -> Groups:
    """Group equal keys. `order` may be a precomputed (e.g. stable, tie-broken) sort order of `keys`."""
    if order is None:
        order = argsort(keys)
    sorted_keys = keys[order]
    starts = run_starts(sorted_keys)
    group_of_sorted = torch.cumsum(starts, 0) - 1
    inverse = torch.empty_like(order)
    inverse[order] = group_of_sorted
    first = starts.nonzero()[:, 0]
    return Groups(keys=sorted_keys[first], inverse=inverse, first=order[first])


@dataclass(frozen=True)
class VoxelIndex:
    """Memory keys in sorted order for one voxel size: `keys[i]` is the key of point `order[i]`."""

    voxel_size: float
    keys: torch.Tensor
    order: torch.Tensor

    @classmethod
    def build(cls, xyz: torch.Tensor, side: torch.Tensor, voxel_size: float,
              level: torch.Tensor | None = None) -> "VoxelIndex":
        keys = point_keys(xyz, side, voxel_size, level)
        order = argsort(keys)
        return cls(voxel_size, keys[order], order)

    def lookup(self, query: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys [Q] -> (index of a memory point holding each key or -1, insertion slot of each key)."""
        slots = torch.searchsorted(self.keys, query)
        if len(self.keys) == 0:
            return torch.full_like(query, -1), slots
        probe = slots.clamp(max=len(self.keys) - 1)
        found = self.keys[probe] == query
        return torch.where(found, self.order[probe], torch.full_like(probe, -1)), slots

    def insert(self, new_keys: torch.Tensor, slots: torch.Tensor, first_index: int) -> "VoxelIndex":
        """The index after appending points with sorted keys `new_keys` (none already present,
        `slots` their searchsorted positions) as indices first_index, first_index+1...: a
        linear-time merge, no re-sort of the memory keys."""
        rows = torch.arange(first_index, first_index + len(new_keys), device=self.keys.device)
        return self._merged(new_keys, slots, rows)

    def moved(self, rows: torch.Tensor, new_keys: torch.Tensor) -> "VoxelIndex":
        """The index after points `rows` [K] (unique) moved to cells `new_keys` [K]: their entries
        taken out and put back at their new keys (a cell a moved point shares with another is
        then found as either), in time linear in the memory plus K log K, no re-sort."""
        if len(rows) == 0:
            return self
        device = self.keys.device
        moving = torch.zeros(len(self.order), dtype=torch.bool, device=device)  # by point (order is a permutation)
        moving[rows] = True
        keep = ~moving[self.order]
        rest = VoxelIndex(self.voxel_size, self.keys[keep], self.order[keep])
        sort = argsort(new_keys)
        keys = new_keys[sort]
        return rest._merged(keys, torch.searchsorted(rest.keys, keys), rows[sort])

    def _merged(self, new_keys: torch.Tensor, slots: torch.Tensor, rows: torch.Tensor) -> "VoxelIndex":
        """Sorted `new_keys` of points `rows` merged in at their searchsorted `slots`."""
        count, added = len(self.keys), len(new_keys)
        if added == 0:
            return self
        device = self.keys.device
        new_slots = slots + torch.arange(added, device=device)
        is_new = torch.zeros(count + added, dtype=torch.bool, device=device)
        is_new[new_slots] = True
        is_old = ~is_new
        # masked_scatter fills the old slots in order: a sequential copy, no scattered writes.
        keys = torch.empty(count + added, dtype=self.keys.dtype, device=device).masked_scatter_(is_old, self.keys)
        order = torch.empty(count + added, dtype=self.order.dtype, device=device).masked_scatter_(is_old, self.order)
        keys[new_slots] = new_keys
        order[new_slots] = rows.to(self.order.dtype)
        return VoxelIndex(self.voxel_size, keys, order)
