"""`launch.py corruptions list|gallery`: the registered corruptions and a picture of them."""

from __future__ import annotations

import argparse

from comprobust.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("corruptions", help="list the corruptions or draw a gallery of them")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    listing = actions.add_parser("list", help="the registered corruptions and the paper's 167 compositions")
    listing.add_argument("--compositions", action="store_true", help="also print the 167 compositions")
    listing.set_defaults(handler=list_corruptions)

    gallery = actions.add_parser("gallery", help="draw sample images under each corruption into a PNG")
    gallery.add_argument("--out", required=True, help="PNG file to write")
    gallery.add_argument("--digits", type=int, default=3, help="grey 28x28 digits to show (default 3)")
    gallery.add_argument(
        "--photos", type=int, default=3, help="colour 32x32 photo patches to show (default 3)"
    )
    gallery.add_argument(
        "--compositions", nargs="+", help="compositions to show, e.g. Contrast-Rotate90 IN-SW"
    )
    gallery.add_argument("--seed", type=int, default=0, help="noise seed")
    gallery.set_defaults(handler=draw_gallery)


def list_corruptions(args: argparse.Namespace) -> int:
    from comprobust import corruptions
    from comprobust.compositions import paper_compositions

    print(f"{'name':<14}{'abbr':<6}{'lossless':<10}{'severity':<10}parameter")
    for name in corruptions.known_names():
        c = corruptions.get_corruption(name)
        print(
            f"{name:<14}{c.abbreviation:<6}{str(c.lossless):<10}{str(c.severity or '-'):<10}"
            f"{'-' if c.parameter is None else c.parameter}"
        )
    if args.compositions:
        for i, composition in enumerate(paper_compositions()):
            print(f"{i:4d}  {'-'.join(composition)}")
    return 0


def draw_gallery(args: argparse.Namespace) -> int:
    from comprobust import corruptions
    from comprobust.gallery import DEFAULT_COMPOSITIONS, render_gallery
    from comprobust.sample_images import sample_digits, sample_photo_patches

    if not args.out.lower().endswith(".png"):
        raise UserError(f"--out {args.out!r}: the gallery is a PNG; give a file name ending in .png")
    compositions = [corruptions.parse_composition(c) for c in args.compositions or DEFAULT_COMPOSITIONS]
    panels = []
    if args.digits > 0:
        panels.append(("digits", sample_digits(args.digits)))
    if args.photos > 0:
        panels.append(("photos", sample_photo_patches(args.photos)))
    if not panels:
        raise UserError("nothing to draw: --digits and --photos are both 0")
    path = render_gallery(panels, args.out, compositions, seed=args.seed)
    print(f"gallery written to {path}")
    return 0
