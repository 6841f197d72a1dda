"""`spatia objects`: a world folder's remembered moving objects (docs/objects.md).

    spatia objects list WORLD [--version N] [--json]   the objects: id, label, state, points, last seen, keys
    spatia objects show WORLD ID [--version N] [--json] one object: its keys, the frames it was seen, its crops
    spatia objects forget WORLD ID [--parent N]       a new objects version without it

WORLD is a world folder (the one holding world.json). `forget` writes to the folder: run it while
no generation runs on the world.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the object package (torch with it) is imported when a command runs, not when the CLI starts
    from spatia.engine.objects.model import ObjectSet, ObjectTrack


def register(subparsers) -> None:
    from spatia.formats.arguments import bounded_int, non_empty, object_id

    objects = subparsers.add_parser("objects", help="a world's remembered moving objects: list, show, forget",
                                    description="The moving objects a world folder remembers (docs/objects.md).")
    sub = objects.add_subparsers(dest="objects_command", required=True)
    listing = sub.add_parser("list", help="the objects: id, label, state, points, last seen, keys")
    listing.add_argument("world", type=non_empty("a world folder"), help="a world folder (holding world.json)")
    listing.add_argument("--version", type=bounded_int(1, 2**62), default=None, help="an objects version (default: the current one)")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    show = sub.add_parser("show", help="one object: its keys, the frames it was seen, its crops")
    show.add_argument("world", type=non_empty("a world folder"), help="a world folder (holding world.json)")
    show.add_argument("id", type=object_id, help="the object's id")
    show.add_argument("--version", type=bounded_int(1, 2**62), default=None, help="an objects version (default: the current one)")
    show.add_argument("--json", action="store_true", help="print JSON")
    forget = sub.add_parser("forget", help="write a new objects version without the object")
    forget.add_argument("world", type=non_empty("a world folder"), help="a world folder (holding world.json)")
    forget.add_argument("id", type=object_id, help="the object's id")
    forget.add_argument("--parent", type=bounded_int(1, 2**62), default=None,
                        help="the objects version the change is based on; refused if it is not the current one "
                             "(default: the current one)")
    objects.set_defaults(func=_cmd_objects)


def _cmd_objects(args) -> int:
    from spatia.cli.main import CliError
    from spatia.engine.objects.store import ObjectStoreError
    from spatia.engine.world import World

    world = World.open(args.world)  # WorldError (exit 2) for a folder that is not a world
    try:
        if args.objects_command == "list":
            return _list(world, args)
        if args.objects_command == "show":
            return _show(world, args)
        return _forget(world, args)
    except ObjectStoreError as err:
        raise CliError(f"{args.world}: the object memory cannot be read: objects/{err}") from None


def _objects(world, version: int | None) -> tuple[int | None, ObjectSet]:
    from spatia.cli.main import CliError

    if version is None:
        return world.objects_version, world.objects()
    versions = world.object_store.versions()
    if version not in versions:
        raise CliError(f"{world.root}: objects version {version} does not exist (versions: {versions or 'none'})")
    return version, world.objects(version)


def _track(world, objects: ObjectSet, version: int | None, object_id: int) -> ObjectTrack:
    from spatia.cli.main import CliError

    if version is None:
        raise CliError(f"{world.root}: the world remembers no objects yet (no objects version); "
                       f"there is no object {object_id}")
    try:
        return objects.get(object_id)
    except KeyError as err:
        raise CliError(f"{world.root}: objects version {version}: {err.args[0]}") from None


def _list(world, args) -> int:
    from spatia.engine.objects.summary import describe

    version, objects = _objects(world, args.version)
    rows = [describe(t, world.fps) for t in objects.objects]
    if args.json:
        print(json.dumps({"version": version, "up": [float(v) for v in objects.up], "objects": rows}, indent=2))
        return 0
    if version is None:
        print(f"{world.root}: no objects yet")
        return 0
    print(f"objects version {version}: {len(rows)} object(s)")
    print(f"{'id':>5}  {'label':20} {'state':7} {'points':>7} {'last seen':>9} {'keys':>5}")
    for row in rows:
        seen = "-" if row["last_seen"] is None else str(row["last_seen"])
        print(f"{row['id']:>5}  {row['label'][:20] or '-':20} {row['state']:7} {row['points']:>7} {seen:>9} "
              f"{len(row['keys']):>5}")
    return 0


def _show(world, args) -> int:
    from spatia.engine.objects.summary import describe

    version, objects = _objects(world, args.version)
    track = _track(world, objects, version, args.id)
    row = describe(track, world.fps)
    if args.json:
        print(json.dumps({"version": version, **row}, indent=2))
        return 0
    print(f"object {row['id']} ({row['label'] or 'no label'}), objects version {version}: {row['state']}, "
          f"{row['points']} points, extent {' x '.join(f'{v:.3f}' for v in row['extent'])} m, "
          f"condition {'on' if row['condition'] else 'off'}, reference {'on' if row['reference'] else 'off'}")
    print(f"keys ({len(row['keys'])}):")
    for key in row["keys"]:
        x, y, z = key["position"]
        print(f"  frame {key['frame']:>6}  position ({x:.3f}, {y:.3f}, {z:.3f})  heading {key['heading']:+.4f}")
    runs = ", ".join(f"{a}-{a + n - 1}" if n > 1 else f"{a}" for a, n in row["seen"])
    print(f"seen in frames: {runs or 'none'} (last seen: {'-' if row['last_seen'] is None else row['last_seen']})")
    print(f"crops ({len(row['crops'])}):")
    for crop in row["crops"]:
        print(f"  frame {crop['frame']:>6}  score {crop['score']:.4g}")
    return 0


def _forget(world, args) -> int:
    from spatia.cli.main import CliError

    current = world.objects_version
    if current is None:
        raise CliError(f"{world.root}: the world remembers no objects yet; there is no object {args.id} to forget")
    if args.parent is not None and args.parent != current:
        raise CliError(f"{world.root}: --parent {args.parent} is not the current objects version ({current}); "
                       "look at the current one and try again")
    objects = world.objects(current)
    _track(world, objects, current, args.id)
    remaining = objects.without([args.id])
    version = world.save_objects(remaining, parent=current, message=f"forgot object {args.id}")
    print(f"objects version {version}: forgot object {args.id} ({len(remaining)} object(s) left)")
    return 0
