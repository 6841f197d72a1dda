"""SpatialMemory: the scene point cloud with stable point ids.

All per-point fields are torch tensors on one device (`memory.device`); renderers may read
`memory.xyz` (float32 [N,3]), `memory.rgb` (uint8 [N,3]) and `memory.voxel_size` directly.
A SpatialMemory is treated as immutable: every operation returns a new one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import torch

from .errors import MemoryFormatError
from .voxels import MAX_KEY_LEVEL, SIDE_COUNT, VoxelIndex

# name -> (dtype, trailing shape); the order is the order of the content hash.
FIELDS: dict[str, tuple[torch.dtype, tuple[int, ...]]] = {
    "xyz": (torch.float32, (3,)),
    "rgb": (torch.uint8, (3,)),
    "conf": (torch.float32, ()),
    "point_id": (torch.int64, ()),
    "first_frame": (torch.int32, ()),
    "last_frame": (torch.int32, ()),
    "side": (torch.uint8, ()),
    "rank": (torch.uint8, ()),
    "level": (torch.uint8, ()),
}
# Fields added after the first snapshot format: absent in a file means every point has the
# default, and a field left at its default everywhere stays out of the content hash, so
# snapshots written before the field existed keep their hash.
OPTIONAL_FIELDS: dict[str, int] = {"side": 4, "rank": 0, "level": 0}
BYTES_PER_POINT = sum(
    torch.empty((), dtype=dtype).element_size() * int(np.prod(shape, dtype=np.int64)) for dtype, shape in FIELDS.values()
)
DEFAULT_SIDE = OPTIONAL_FIELDS["side"]  # +z: the side assumed for points whose viewing side is unknown
# Ranks of observations: what the user gave (the first image, Blender renders, pushed edits)
# outranks what a generator made; a generated observation never moves a user point.
RANK_GENERATED = 0
RANK_USER = 1
MAX_LEVEL = MAX_KEY_LEVEL  # a fusion cell is voxel_size * 2**level
CELLS_PER_FOOTPRINT = 2  # a cell is half the footprint of the pixel a point was seen in


def _as_tensor(value, name: str, device: torch.device | str | None) -> torch.Tensor:
    dtype, trailing = FIELDS[name]
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.ascontiguousarray(value))
    elif not isinstance(value, torch.Tensor):
        value = torch.as_tensor(np.asarray(value))
    if value.dtype != dtype:
        if value.is_floating_point() and not dtype.is_floating_point:
            raise MemoryFormatError(f"{name} must be {dtype}, got floating point {value.dtype}")
        value = value.to(dtype)
    if value.ndim == len(trailing) and value.numel() == 0:
        value = value.reshape((0, *trailing))
    return value.to(device) if device is not None else value


@dataclass(frozen=True, eq=False)
class SpatialMemory:
    """N points of the scene.

    xyz float32 [N,3] world metres; rgb uint8 [N,3]; conf float32 [N] accumulated confidence
    (>= 0); point_id int64 [N] unique and never reused (next_id is the next free one);
    first_frame / last_frame int32 [N] frame index of the first / latest observation;
    side uint8 [N] in 0..5, the world axis (+x,-x,+y,-y,+z,-z) closest to the surface normal
    facing the cameras that saw the point, so the two faces of a thin wall stay apart.
    rank uint8 [N]: RANK_USER for points the user gave, RANK_GENERATED for generated ones.
    level uint8 [N]: the point's fusion cell is voxel_size * 2**level, about one pixel's
    footprint at the distance it was seen from, so far surfaces merge and near detail stays.
    """

    xyz: torch.Tensor
    rgb: torch.Tensor
    conf: torch.Tensor
    point_id: torch.Tensor
    first_frame: torch.Tensor
    last_frame: torch.Tensor
    side: torch.Tensor
    rank: torch.Tensor
    level: torch.Tensor
    voxel_size: float
    next_id: int
    _index: VoxelIndex | None = field(default=None, repr=False)

    def __post_init__(self):
        device = self.xyz.device if isinstance(self.xyz, torch.Tensor) else None
        for name in FIELDS:
            object.__setattr__(self, name, _as_tensor(getattr(self, name), name, device))
        object.__setattr__(self, "voxel_size", float(self.voxel_size))
        object.__setattr__(self, "next_id", int(self.next_id))
        self._check_layout()

    # --- validation ---------------------------------------------------------------------
    def _check_layout(self) -> None:
        count = len(self.xyz) if self.xyz.ndim else -1
        for name, (dtype, trailing) in FIELDS.items():
            value = getattr(self, name)
            expected = (count, *trailing)
            if tuple(value.shape) != expected:
                raise MemoryFormatError(f"{name} must have shape {list(expected)}, got {list(value.shape)}")
            if value.device != self.xyz.device:
                raise MemoryFormatError(f"{name} is on {value.device} but xyz is on {self.xyz.device}")
        if not (np.isfinite(self.voxel_size) and self.voxel_size > 0):
            raise MemoryFormatError(f"voxel_size must be a positive finite number, got {self.voxel_size}")
        if not torch.isfinite(self.xyz).all():
            raise MemoryFormatError("xyz contains NaN or infinite coordinates")
        if not (torch.isfinite(self.conf).all() and (self.conf >= 0).all()):
            raise MemoryFormatError("conf must be finite and non-negative")
        if count and int(self.side.max()) >= SIDE_COUNT:
            raise MemoryFormatError(f"side must be in 0..{SIDE_COUNT - 1}, got {int(self.side.max())}")
        if count and int(self.rank.max()) > RANK_USER:
            raise MemoryFormatError(f"rank must be {RANK_GENERATED} or {RANK_USER}, got {int(self.rank.max())}")
        if count and int(self.level.max()) > MAX_LEVEL:
            raise MemoryFormatError(f"level must be in 0..{MAX_LEVEL}, got {int(self.level.max())}")

    def validate(self) -> "SpatialMemory":
        """Full check, including that ids are unique and below next_id; returns self."""
        self._check_layout()
        if len(self):
            if int(self.point_id.min()) < 0:
                raise MemoryFormatError(f"point_id must be non-negative, got {int(self.point_id.min())}")
            if int(self.point_id.max()) >= self.next_id:
                raise MemoryFormatError(f"point_id {int(self.point_id.max())} is not below next_id {self.next_id}")
            if len(torch.unique(self.point_id)) != len(self):
                raise MemoryFormatError("point_id contains duplicates")
            if (self.first_frame > self.last_frame).any():
                raise MemoryFormatError("first_frame is after last_frame for some points")
        elif self.next_id < 0:
            raise MemoryFormatError(f"next_id must be non-negative, got {self.next_id}")
        return self

    # --- construction -------------------------------------------------------------------
    @classmethod
    def empty(cls, voxel_size: float, device: torch.device | str = "cpu") -> "SpatialMemory":
        zeros = {name: torch.zeros((0, *shape), dtype=dtype, device=device) for name, (dtype, shape) in FIELDS.items()}
        return cls(**zeros, voxel_size=voxel_size, next_id=0)

    @classmethod
    def from_points(
        cls,
        xyz,
        rgb=None,
        conf=None,
        *,
        voxel_size: float,
        frame: int = 0,
        side=None,
        rank: int = RANK_USER,
        first_id: int = 0,
        device: torch.device | str = "cpu",
    ) -> "SpatialMemory":
        """Points as given (no fusion), with fresh ids first_id, first_id+1, ...

        rgb defaults to mid grey, conf to 1, side to +z (unknown); points given this way are
        the user's (rank RANK_USER) unless `rank` says otherwise; level 0.
        """
        xyz = _as_tensor(xyz, "xyz", device)
        if xyz.ndim != 2 or xyz.shape[1] != 3:
            raise MemoryFormatError(f"xyz must have shape [N, 3], got {list(xyz.shape)}")
        n = len(xyz)

        def full(name: str, value) -> torch.Tensor:
            dtype, trailing = FIELDS[name]
            return torch.full((n, *trailing), value, dtype=dtype, device=device)

        return cls(
            xyz=xyz,
            rgb=full("rgb", 128) if rgb is None else _as_tensor(rgb, "rgb", device),
            conf=full("conf", 1.0) if conf is None else _as_tensor(conf, "conf", device),
            point_id=torch.arange(first_id, first_id + n, dtype=torch.int64, device=device),
            first_frame=full("first_frame", frame),
            last_frame=full("last_frame", frame),
            side=full("side", DEFAULT_SIDE) if side is None else _as_tensor(side, "side", device),
            rank=full("rank", rank),
            level=full("level", 0),
            voxel_size=voxel_size,
            next_id=first_id + n,
        ).validate()

    @classmethod
    def from_arrays(cls, arrays: dict, *, voxel_size: float, next_id: int | None = None, device=None) -> "SpatialMemory":
        """All fields given (numpy or torch), ids kept; optional fields (side, rank, level) take
        their defaults when absent."""
        missing = [name for name in FIELDS if name not in arrays and name not in OPTIONAL_FIELDS]
        if missing:
            raise MemoryFormatError(f"missing arrays: {', '.join(missing)}")
        values = {name: _as_tensor(arrays[name], name, device) for name in FIELDS if name in arrays}
        for name, default in OPTIONAL_FIELDS.items():
            if name not in values:
                dtype, _ = FIELDS[name]
                values[name] = torch.full((len(values["xyz"]),), default, dtype=dtype, device=values["xyz"].device)
        if next_id is None:
            next_id = int(values["point_id"].max()) + 1 if len(values["point_id"]) else 0
        return cls(**values, voxel_size=voxel_size, next_id=next_id).validate()

    @classmethod
    def _unchecked(cls, **values) -> "SpatialMemory":
        """Construction without validation, for results of operations whose output is valid by construction."""
        memory = object.__new__(cls)
        values = {"_index": None, **values, "voxel_size": float(values["voxel_size"]), "next_id": int(values["next_id"])}
        for name, value in values.items():
            object.__setattr__(memory, name, value)
        return memory

    def replace(self, **changes) -> "SpatialMemory":
        """A copy with some fields changed; the voxel index survives only if positions, sides and size do."""
        keeps_index = not ({"xyz", "side", "level", "voxel_size"} & changes.keys()) and all(
            len(v) == len(self) for k, v in changes.items() if k in FIELDS
        )
        values = {name: getattr(self, name) for name in FIELDS}
        values.update(voxel_size=self.voxel_size, next_id=self.next_id, _index=self._index if keeps_index else None)
        values.update(changes)
        return SpatialMemory(**values)

    # --- views --------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.xyz)

    @property
    def device(self) -> torch.device:
        return self.xyz.device

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, name).numel() * getattr(self, name).element_size() for name in FIELDS)

    def subset(self, selector) -> "SpatialMemory":
        """Points picked by a bool mask [N] or an index array; ids are kept."""
        selector = torch.as_tensor(selector, device=self.device)
        if selector.dtype == torch.bool and tuple(selector.shape) != (len(self),):
            raise MemoryFormatError(f"mask must have shape [{len(self)}], got {list(selector.shape)}")
        values = {name: getattr(self, name)[selector] for name in FIELDS}
        return SpatialMemory(**values, voxel_size=self.voxel_size, next_id=self.next_id, _index=self._subset_index(selector))

    def _subset_index(self, selector: torch.Tensor) -> VoxelIndex | None:
        """The cached voxel index filtered by a bool mask (positions renumbered), without re-sorting."""
        if self._index is None or selector.dtype != torch.bool:
            return None
        index = self._index
        kept = selector[index.order]
        new_position = torch.cumsum(selector, 0) - 1
        return VoxelIndex(index.voxel_size, index.keys[kept], new_position[index.order[kept]])

    def indices_of(self, ids, *, missing_ok: bool = False) -> torch.Tensor:
        """Positions of the points with the given ids (in the order given); unknown ids raise unless missing_ok."""
        if not isinstance(ids, torch.Tensor):
            ids = np.asarray(ids, dtype=np.int64)
        ids = torch.as_tensor(ids, dtype=torch.int64, device=self.device).reshape(-1)
        order = torch.argsort(self.point_id)
        sorted_ids = self.point_id[order]
        if len(sorted_ids) == 0:
            pos = torch.zeros_like(ids)
            found = torch.zeros_like(ids, dtype=torch.bool)
        else:
            pos = torch.searchsorted(sorted_ids, ids).clamp_(max=len(sorted_ids) - 1)
            found = sorted_ids[pos] == ids
        if not missing_ok and not found.all():
            unknown = ids[~found][:5].tolist()
            raise MemoryFormatError(f"unknown point ids: {unknown}{' ...' if (~found).sum() > 5 else ''}")
        return order[pos[found]]

    def select_ids(self, ids, *, missing_ok: bool = False) -> "SpatialMemory":
        return self.subset(self.indices_of(ids, missing_ok=missing_ok))

    def voxel_index(self, voxel_size: float | None = None) -> VoxelIndex:
        """The sorted cell-key index at `voxel_size` (default: the memory's, with each point's
        level), cached when it is the memory's."""
        size = self.voxel_size if voxel_size is None else float(voxel_size)
        if self._index is not None and self._index.voxel_size == size:
            return self._index
        index = VoxelIndex.build(self.xyz, self.side, size, self.level if size == self.voxel_size else None)
        if size == self.voxel_size:
            object.__setattr__(self, "_index", index)
        return index

    def spacing(self) -> float | torch.Tensor:
        """How far apart the points sample their surfaces, metres, per point: the pixel footprint
        its cell stands for (for splat sizes); one number when every point has the same level."""
        if len(self) == 0 or bool((self.level == self.level[0]).all()):
            level = int(self.level[0]) if len(self) else 0
            return self.voxel_size * CELLS_PER_FOOTPRINT * 2**level
        return torch.exp2(self.level.to(torch.float32)) * (self.voxel_size * CELLS_PER_FOOTPRINT)

    def to(self, device: torch.device | str) -> "SpatialMemory":
        values = {name: getattr(self, name).to(device) for name in FIELDS}
        return SpatialMemory(**values, voxel_size=self.voxel_size, next_id=self.next_id)

    def arrays(self) -> dict[str, np.ndarray]:
        """All per-point fields as CPU numpy arrays."""
        return {name: getattr(self, name).detach().cpu().numpy() for name in FIELDS}

    def sha256(self) -> str:
        """Deterministic hash of the content: voxel size, next_id and every field's dtype, shape and
        bytes (an optional field at its default for every point is left out, see OPTIONAL_FIELDS)."""
        digest = hashlib.sha256()
        digest.update(f"spatia.engine.memory voxel_size={self.voxel_size!r} next_id={self.next_id}".encode())
        for name, array in self.arrays().items():
            if name in OPTIONAL_FIELDS and name != "side" and bool((array == OPTIONAL_FIELDS[name]).all()):
                continue
            array = np.ascontiguousarray(array.astype(array.dtype.newbyteorder("<"), copy=False))
            digest.update(f"|{name}:{array.dtype.str}:{list(array.shape)}|".encode())
            digest.update(array.tobytes())
        return digest.hexdigest()

    def __repr__(self) -> str:
        return (
            f"SpatialMemory(points={len(self)}, voxel_size={self.voxel_size}, next_id={self.next_id}, "
            f"device={self.device}, nbytes={self.nbytes})"
        )
