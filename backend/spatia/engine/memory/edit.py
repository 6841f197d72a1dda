"""User edits of the memory (delete, move, merge) and the difference between two versions.

Every edit keeps the ids of the points it leaves in place, so versions can be diffed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .cloud import RANK_USER, SpatialMemory
from .errors import MemoryFormatError
from .voxels import SIDE_AXES, side_bins


def _matrix(matrix, name: str) -> torch.Tensor:
    m = torch.as_tensor(np.asarray(matrix, dtype=np.float64) if not isinstance(matrix, torch.Tensor) else matrix)
    m = m.to(torch.float64)
    if tuple(m.shape) != (4, 4):
        raise MemoryFormatError(f"{name} must be a 4x4 matrix, got shape {list(m.shape)}")
    if not torch.isfinite(m).all():
        raise MemoryFormatError(f"{name} is not finite")
    if not torch.allclose(m[3], torch.tensor([0, 0, 0, 1.0], dtype=torch.float64)):
        raise MemoryFormatError(f"{name} bottom row must be [0, 0, 0, 1], got {m[3].tolist()}")
    return m


def _vector3(value, name: str) -> torch.Tensor:
    v = torch.as_tensor(np.asarray(value, dtype=np.float64).reshape(-1))
    if v.shape != (3,) or not torch.isfinite(v).all():
        raise MemoryFormatError(f"{name} must be 3 finite numbers, got {np.asarray(value).tolist()}")
    return v


def delete_ids(memory: SpatialMemory, ids, *, missing_ok: bool = True) -> SpatialMemory:
    """The memory without the points of the given ids (unknown ids are ignored unless missing_ok=False)."""
    positions = memory.indices_of(ids, missing_ok=missing_ok)
    keep = torch.ones(len(memory), dtype=torch.bool, device=memory.device)
    keep[positions] = False
    return memory.subset(keep)


def delete_in_box(memory: SpatialMemory, box_min, box_max, *, box_to_world=None) -> SpatialMemory:
    """Delete points inside the box [box_min, box_max] (inclusive), given in box coordinates.

    `box_to_world` (4x4, default identity) places the box in the world, e.g. a rotated or
    scaled Blender cube's matrix_world with box_min=(-1,-1,-1), box_max=(1,1,1).
    """
    lo, hi = _vector3(box_min, "box_min"), _vector3(box_max, "box_max")
    if (lo > hi).any():
        raise MemoryFormatError(f"box_min {lo.tolist()} exceeds box_max {hi.tolist()}")
    points = memory.xyz.to(torch.float64)
    if box_to_world is not None:
        m = _matrix(box_to_world, "box_to_world")
        if abs(torch.linalg.det(m[:3, :3])) < 1e-12:
            raise MemoryFormatError("box_to_world is singular")
        inv = torch.linalg.inv(m).to(memory.device)
        points = points @ inv[:3, :3].T + inv[:3, 3]
    lo, hi = lo.to(memory.device), hi.to(memory.device)
    inside = ((points >= lo) & (points <= hi)).all(dim=1)
    return memory.subset(~inside)


def delete_in_sphere(memory: SpatialMemory, center, radius: float) -> SpatialMemory:
    """Delete points within `radius` (inclusive) of `center`."""
    if not (np.isfinite(radius) and radius >= 0):
        raise MemoryFormatError(f"radius must be finite and non-negative, got {radius}")
    c = _vector3(center, "center").to(memory.device)
    inside = ((memory.xyz.to(torch.float64) - c) ** 2).sum(dim=1) <= float(radius) ** 2
    return memory.subset(~inside)


def transform(memory: SpatialMemory, ids, matrix) -> SpatialMemory:
    """Apply a 4x4 world transform to the points of the given ids (all points when ids is None).

    Side bins turn with the rotation, so a moved wall keeps fusing with the right side.
    """
    m = _matrix(matrix, "matrix").to(memory.device)
    positions = torch.arange(len(memory), device=memory.device) if ids is None else memory.indices_of(ids)
    xyz = memory.xyz.clone()
    moved = memory.xyz[positions].to(torch.float64) @ m[:3, :3].T + m[:3, 3]
    xyz[positions] = moved.to(torch.float32)
    # Normals transform with the inverse transpose; only the dominant axis of the result matters.
    normal_matrix = torch.linalg.inv(m[:3, :3]).T.to(torch.float32)
    side = memory.side.clone()
    turned = SIDE_AXES.to(memory.device)[memory.side[positions].long()] @ normal_matrix.T
    side[positions] = side_bins(turned)
    rank = memory.rank.clone()
    rank[positions] = RANK_USER  # placed by the user: generated frames may no longer move them
    return memory.replace(xyz=xyz, side=side, rank=rank)


def merge(memory: SpatialMemory, other: SpatialMemory) -> SpatialMemory:
    """All points of both; `other`'s points get fresh ids in `memory` (no fusion, memory's voxel size)."""
    other = other.to(memory.device)
    fresh = torch.arange(memory.next_id, memory.next_id + len(other), dtype=torch.int64, device=memory.device)
    return SpatialMemory(
        xyz=torch.cat([memory.xyz, other.xyz]),
        rgb=torch.cat([memory.rgb, other.rgb]),
        conf=torch.cat([memory.conf, other.conf]),
        point_id=torch.cat([memory.point_id, fresh]),
        first_frame=torch.cat([memory.first_frame, other.first_frame]),
        last_frame=torch.cat([memory.last_frame, other.last_frame]),
        side=torch.cat([memory.side, other.side]),
        rank=torch.cat([memory.rank, other.rank]),
        level=torch.cat([memory.level, other.level]),
        voxel_size=memory.voxel_size,
        next_id=memory.next_id + len(other),
    )


@dataclass(frozen=True)
class MemoryDiff:
    """Ids (sorted int64 numpy arrays) deleted, moved and added between two versions."""

    deleted: np.ndarray
    moved: np.ndarray
    added: np.ndarray

    @property
    def unchanged(self) -> bool:
        return not (len(self.deleted) or len(self.moved) or len(self.added))


def diff(old: SpatialMemory, new: SpatialMemory, *, tolerance: float = 1e-6) -> MemoryDiff:
    """Which ids `new` no longer has, has at a position more than `tolerance` metres away, or adds."""
    old_ids, new_ids = old.point_id.cpu().numpy(), new.point_id.cpu().numpy()
    common, in_old, in_new = np.intersect1d(old_ids, new_ids, assume_unique=True, return_indices=True)
    shift = np.linalg.norm(
        new.xyz.cpu().numpy()[in_new].astype(np.float64) - old.xyz.cpu().numpy()[in_old].astype(np.float64), axis=1
    )
    return MemoryDiff(
        deleted=np.setdiff1d(old_ids, new_ids, assume_unique=True),
        moved=common[shift > tolerance],
        added=np.setdiff1d(new_ids, old_ids, assume_unique=True),
    )


def as_user_edit(parent: SpatialMemory, memory: SpatialMemory) -> SpatialMemory:
    """`memory` (an edit of `parent`) with what the edit added or moved ranked as the user's, so
    that generated frames will not move it."""
    if not len(memory):
        return memory
    changed = diff(parent, memory)
    touched = np.concatenate([changed.moved, changed.added])
    if not len(touched):
        return memory
    rank = memory.rank.clone()
    rank[memory.indices_of(touched)] = RANK_USER
    return memory.replace(rank=rank)
