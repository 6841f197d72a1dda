"""The spatial memory: a scene point cloud with stable ids, fusion, pruning, edits and versions.

Imports only torch, numpy, safetensors, trimesh and spatia.cameras; it knows no renderer.
"""

from .cloud import BYTES_PER_POINT, FIELDS, RANK_GENERATED, RANK_USER, SpatialMemory
from .edit import MemoryDiff, as_user_edit, delete_ids, delete_in_box, delete_in_sphere, diff, merge, transform
from .errors import MemoryFormatError, MemoryIntegrityError, VoxelRangeError
from .fusion import DepthPoints, Merges, cell_levels, coarsen, fuse, fuse_points, merge_cells, pin_points, points_from_depth, refine
from .ply import export_ply, import_ply, ply_bytes
from .pruning import apply_budget, budget_score, carve, coarsen_to_budget
from .store import MemoryStore, load_snapshot, parse_snapshot, save_snapshot, snapshot_bytes
from .voxels import SIDE_AXES, side_bins

__all__ = [
    "BYTES_PER_POINT",
    "FIELDS",
    "RANK_GENERATED",
    "RANK_USER",
    "Merges",
    "cell_levels",
    "coarsen_to_budget",
    "merge_cells",
    "pin_points",
    "refine",
    "SIDE_AXES",
    "DepthPoints",
    "MemoryDiff",
    "MemoryFormatError",
    "MemoryIntegrityError",
    "MemoryStore",
    "SpatialMemory",
    "VoxelRangeError",
    "apply_budget",
    "budget_score",
    "carve",
    "coarsen",
    "delete_ids",
    "delete_in_box",
    "delete_in_sphere",
    "as_user_edit",
    "diff",
    "export_ply",
    "fuse",
    "fuse_points",
    "import_ply",
    "load_snapshot",
    "merge",
    "parse_snapshot",
    "ply_bytes",
    "points_from_depth",
    "save_snapshot",
    "side_bins",
    "snapshot_bytes",
    "transform",
]
