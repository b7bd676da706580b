"""``robustode data convert``: released .npz parts -> a memory-mappable directory with a manifest."""

from __future__ import annotations

from .parser import _command


def data(sub) -> None:
    p = _command(sub, "data", "prepare extra training data (generated images)",
                 "Prepare extra training data for `robustode train --extra-data`.\n\n"
                 "  robustode data convert 20m_part1.npz 20m_part2.npz gen20m/")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    c = _command(actions, "convert", "write .npz parts as one memory-mappable directory",
                 "Stream .npz parts (arrays image, uint8 N x H x W x C, and label) into OUT/images.npy,\n"
                 "OUT/labels.npy and OUT/manifest.json (count, shape, class histogram, size and SHA-256 of\n"
                 "each file). The images pass through in blocks: the set is never held in memory.\n\n"
                 "  robustode data convert 1m.npz gen1m/")
    c.add_argument("paths", nargs="+", metavar="PATH", help=".npz parts, in order, then OUT (a new directory)")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(run=cmd_convert)


def cmd_convert(args) -> int:
    from ..data.convert import convert
    from ..errors import ConfigError

    if len(args.paths) < 2:
        raise ConfigError("give one or more .npz parts, then the output directory")
    *parts, out = args.paths
    manifest = convert(parts, out, quiet=args.quiet)
    print(f"wrote {out}: {manifest['count']} images {'x'.join(map(str, manifest['shape']))}, "
          f"{len(manifest['histogram'])} classes, digest {manifest['digest'][:16]}")
    return 0
