"""Command line: ``python -m analysis {build,run,fetch,params,bench}``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import params as parameter_sets
from .images import ImageError
from .models import ModelError, UnsafeWeightsError, WeightsMismatchError, WeightsNotFoundError
from .run import PAGES, ROOT, ParameterError, build_book, parse_value, run_page

#: Errors that are the user's input, shown as one line instead of a traceback.
USER_ERRORS = (ImageError, ModelError, WeightsNotFoundError, WeightsMismatchError, UnsafeWeightsError,
               ParameterError, ValueError, FileNotFoundError, RuntimeError)


def _parameters(pairs: list[list[str]] | None) -> dict:
    return {key: parse_value(value) for key, value in (pairs or [])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis", description=__doc__)
    parser.add_argument("--weights-dir", default=os.environ.get("REGISTERS_WEIGHTS_DIR"),
                        help="folder of <timm name>.safetensors files (default: $REGISTERS_WEIGHTS_DIR)")
    parser.add_argument("--build-dir", default=str(ROOT / "_build"), help="build tree (default: _build)")
    commands = parser.add_subparsers(dest="command", required=True)

    build = commands.add_parser("build", help="run every page and build the site into _build/html")
    build.add_argument("--set", default="auto", choices=["auto", *parameter_sets.SETS],
                       help="parameter set (auto: paper if its weights are available offline, else ci)")
    build.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("KEY", "VALUE"),
                       help="override a parameter on every page that takes it")
    build.add_argument("--no-html", action="store_true", help="run the notebooks only")

    run = commands.add_parser("run", help="run one page through papermill into the build tree")
    run.add_argument("page", choices=PAGES)
    run.add_argument("--set", default="ci", choices=list(parameter_sets.SETS), help="base parameter set")
    run.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("KEY", "VALUE"),
                     help="override a parameter (JSON values: 12, 0.5, '[\"a\", \"b\"]', null)")
    run.add_argument("--force", action="store_true", help="execute even when nothing changed")

    fetch = commands.add_parser("fetch", help="(connected machine) save a timm model's weights as safetensors")
    fetch.add_argument("model")
    fetch.add_argument("--to", required=True, help="target folder")

    fetch_images = commands.add_parser("fetch-images", help="(connected machine) save a labelled image set")
    fetch_images.add_argument("dataset", choices=["imagenette"])
    fetch_images.add_argument("--to", required=True, help="target folder (one sub-folder per class)")
    fetch_images.add_argument("--split", default="val", choices=["train", "val"])

    show = commands.add_parser("params", help="print a parameter set")
    show.add_argument("--set", default="ci", choices=list(parameter_sets.SETS))

    commands.add_parser("bench", add_help=False, help="measure the benchmark (see the book's appendix); its options "
                                      "(--quick, --dry-run, --device, --precision) are analysis.bench's own")

    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "bench":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.command == "build":
            html = build_book(args.set, args.build_dir, args.weights_dir, _parameters(args.parameter),
                              html=not args.no_html)
            print(f"[book] done: {html / 'index.html' if not args.no_html else html}")
        elif args.command == "run":
            page_parameters = {**parameter_sets.SETS[args.set][args.page], **_parameters(args.parameter)}
            output = run_page(args.page, page_parameters, Path(args.build_dir), args.weights_dir, force=args.force)
            print(output)
        elif args.command == "fetch":
            from .models import save_weights

            print(save_weights(args.model, args.to))
        elif args.command == "fetch-images":
            from .images import save_imagenette

            print(save_imagenette(args.to, args.split))
        elif args.command == "params":
            print(json.dumps(parameter_sets.SETS[args.set], indent=1))
        elif args.command == "bench":
            from .bench import main as bench_main

            return bench_main(extra + ["--out", str(Path(args.build_dir) / "bench")]
                              + (["--weights-dir", args.weights_dir] if args.weights_dir else []))
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
