"""`launch.py data list|prepare|show`: the registered datasets; reading (and downloading) one; a picture of it\nunder the six elementals."""

from __future__ import annotations

import argparse
from pathlib import Path

from comprobust.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="list, prepare (download) and show datasets")
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION")
    actions.required = True

    listing = actions.add_parser("list", help="the registered datasets")
    listing.set_defaults(handler=_list)

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--dataset", required=True, help="dataset name (see `data list`), e.g. mnist5k")
        sub.add_argument("--root", default="data", help="data folder (default: data)")
        sub.add_argument(
            "--download", action="store_true", help="download the dataset if missing (emnist, cifar10)"
        )
        sub.add_argument(
            "--split-sizes",
            default=None,
            metavar="SPLIT=N,...",
            help="per-class sizes, counts or fractions, e.g. train=300,valid=100 or valid=0.1",
        )

    prepare = actions.add_parser(
        "prepare",
        help="read a dataset (downloading it with --download) and print its "
        "splits; its decoded cache is written on the way",
    )
    common(prepare)
    prepare.set_defaults(handler=_prepare)

    show = actions.add_parser("show", help="a PNG of samples per class under Identity and the six elementals")
    common(show)
    show.add_argument("--out", required=True, help="PNG file to write")
    show.add_argument("--split", default="train", choices=["train", "valid", "test"])
    show.add_argument("--classes", type=int, default=6, help="how many classes (rows)")
    show.add_argument("--per-class", type=int, default=1, help="samples per class")
    show.add_argument("--seed", type=int, default=0)
    show.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    show.set_defaults(handler=_show)


def parse_split_sizes(text: str | None) -> dict | None:
    """'train=300,valid=0.1' -> {'train': 300, 'valid': 0.1}."""
    if not text:
        return None
    sizes: dict = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--split-sizes: {item!r} is not SPLIT=N (e.g. train=300,valid=100)")
        try:
            sizes[key.strip()] = float(value) if "." in value else int(value)
        except ValueError as err:
            raise UserError(f"--split-sizes: {value!r} for {key} is not a number") from err
    return sizes


def _load(args: argparse.Namespace):
    from comprobust.data.dataset import load_dataset

    return load_dataset(
        args.dataset, root=args.root, split_sizes=parse_split_sizes(args.split_sizes), download=args.download
    )


def _list(args: argparse.Namespace) -> int:
    from comprobust.data.registry import dataset_names, get_dataset_spec

    for name in dataset_names():
        spec = get_dataset_spec(name)
        print(f"{name:10s} {spec.description}")
        print(f"{'':10s} files: {spec.how_to_get}")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    _describe(_load(args))
    return 0


def _show(args: argparse.Namespace) -> int:
    from comprobust.data.preview import save_sample_grid

    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise UserError(f"--out {out} must end in .png")
    if out.exists() and not args.force:
        raise UserError(f"{out} exists; pass --force to overwrite it or choose another --out")
    if args.classes < 1 or args.per_class < 1:
        raise UserError("--classes and --per-class must be at least 1")
    data = _load(args)
    save_sample_grid(
        data, out, split=args.split, classes=args.classes, per_class=args.per_class, seed=args.seed
    )
    _describe(data)
    print(f"wrote {out}")
    return 0


def _describe(data) -> None:
    sizes = ", ".join(f"{s} {len(data.split(s))}" for s in ("train", "valid", "test"))
    print(f"{data.name}: {sizes} images; mean {_fmt(data.mean)} std {_fmt(data.std)}")


def _fmt(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.4f}" for v in values) + ")"
