"""Command line: ``python -m analysis {build,run,plan,pass,merge,fetch,fetch-images,fetch-voc,params,bench}``.

Errors in what the user asked for (an unknown page or parameter, a model or image that cannot be had, a page
whose notebook failed) print one line, ``error: …``, and exit 2. Anything else is a bug and keeps its
traceback; ``--debug`` shows the traceback for every error.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import traceback
from pathlib import Path

from . import params as parameter_sets
from .features import DiskFullError, PrecisionError
from .images import ImageError
from .models import ModelError, UnsafeWeightsError, WeightsMismatchError, WeightsNotFoundError
from .plan import PlanError
from .run import PAGES, ROOT, ParameterError, build_book, parse_value, run_page

#: Errors that are the user's input (or the machine's: a full disk), shown as one line instead of a traceback
#: (``--debug`` shows it anyway). ``CalledProcessError`` is Jupyter Book's build failing: its own output above
#: says why, the traceback only points at ``subprocess.run``.
USER_ERRORS = (ImageError, ModelError, WeightsNotFoundError, WeightsMismatchError, UnsafeWeightsError,
               ParameterError, PrecisionError, PlanError, DiskFullError, FileNotFoundError,
               subprocess.CalledProcessError)
#: The RuntimeError that :func:`analysis.run.run_page` raises for a page whose notebook failed (it names the
#: cell and keeps the executed notebook); any other RuntimeError is a bug.
PAGE_FAILURE = re.compile(r"^page '[^']+' failed in cell ")


class CachedBuildError(RuntimeError):
    """``build --expect-cached`` ran model passes: the cache was not complete."""


def is_user_error(error: BaseException) -> bool:
    return isinstance(error, USER_ERRORS + (CachedBuildError,)) or (
        type(error) is RuntimeError and bool(PAGE_FAILURE.match(str(error))))


def _parameters(pairs: list[list[str]] | None) -> dict:
    return {key: parse_value(value) for key, value in (pairs or [])}


def _add_set(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--set", default=default, choices=["auto", *parameter_sets.SETS],
                        help="parameter set (auto: paper if its weights are available offline, else ci)")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("KEY", "VALUE"),
                        help="override a parameter on every page that takes it, as `build -p` does")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m analysis", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights-dir", default=os.environ.get("REGISTERS_WEIGHTS_DIR"),
                        help="folder of <timm name>.safetensors files (default: $REGISTERS_WEIGHTS_DIR)")
    parser.add_argument("--build-dir", default=str(ROOT / "_build"), help="build tree (default: _build)")
    parser.add_argument("--debug", action="store_true", help="show the traceback of every error")
    commands = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)  # --debug after the command too (default: the global one)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show every traceback")

    def command(name: str, **options) -> argparse.ArgumentParser:
        return commands.add_parser(name, parents=[common], **options)

    build = command("build", help="run every page and build the site into _build/html")
    _add_set(build, "auto")
    build.add_argument("--no-html", action="store_true", help="run the notebooks only")
    build.add_argument("--expect-cached", action="store_true",
                       help="fail when a page ran a model pass (after `pass`/`merge` filled the cache)")

    run = command("run", help="run one page through papermill into the build tree")
    run.add_argument("page", choices=PAGES)
    run.add_argument("--set", default="ci", choices=list(parameter_sets.SETS), help="base parameter set")
    run.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("KEY", "VALUE"),
                     help="override a parameter (JSON values: 12, 0.5, '[\"a\", \"b\"]', null)")
    run.add_argument("--force", action="store_true", help="execute even when nothing changed")

    plan = command("plan", help="list every model pass the book needs, with estimates and totals")
    _add_set(plan, "ci")
    plan.add_argument("--json", action="store_true", help="the plan as JSON (passes, totals, shards, matrix)")
    plan.add_argument("--shards", type=int, default=None, help="split into N shards (default: the fewest that fit)")
    plan.add_argument("--github-output", metavar="FILE",
                      help="append matrix=<json>, shards=<N>, models=<names> and weights_key=<hash of the models> "
                           "to FILE (a GitHub Actions step's $GITHUB_OUTPUT)")

    run_pass = command("pass", help="run passes of the plan (by id, one shard, or all) into a cache")
    _add_set(run_pass, "ci")
    run_pass.add_argument("ids", nargs="*", metavar="ID", help="pass ids from `plan`, parts among them (a split "
                          "pass's own id: all its parts; default: all, or --shard)")
    run_pass.add_argument("--shard", metavar="K/N", help="the K-th of N shards of the plan (balanced by seconds)")
    run_pass.add_argument("--cache", help="cache folder to fill (default: the build's, <build-dir>/cache)")
    run_pass.add_argument("--device", help="override every pass's device (e.g. cuda on a GPU runner)")

    merge = command("merge", help="merge feature-cache folders (content-addressed entries)")
    merge.add_argument("sources", nargs="+", metavar="DIR")
    merge.add_argument("--into", required=True, metavar="DIR")
    merge.add_argument("--move", action="store_true", help="move entries out of the sources instead of copying")

    fetch = command("fetch", help="(connected machine) save a timm model's weights as safetensors")
    fetch.add_argument("model")
    fetch.add_argument("--to", required=True, help="target folder")

    fetch_images = command("fetch-images", help="(connected machine) save a labelled image set")
    fetch_images.add_argument("dataset", choices=["imagenette"])
    fetch_images.add_argument("--to", required=True, help="target folder (one sub-folder per class)")
    fetch_images.add_argument("--split", default="val", choices=["train", "val"])

    fetch_voc = command("fetch-voc", help="(connected machine) save PASCAL VOC 2007 trainval, atomically (Table 3)")
    fetch_voc.add_argument("--to", default=None,
                           help="target folder (default: $REGISTERS_VOC, else data/voc2007); holds VOCdevkit/VOC2007")

    show = command("params", help="print a parameter set")
    show.add_argument("--set", default="ci", choices=list(parameter_sets.SETS))

    commands.add_parser("bench", add_help=False, help="measure the benchmark (see the book's appendix); its options "
                                      "(--quick, --dry-run, --device, --precision, --device-checks) are "
                                      "analysis.bench's own")
    return parser


def _build(args) -> None:
    from .plan import log_length

    cache = Path(args.build_dir).resolve() / "cache"
    before = log_length(cache)
    html = build_book(args.set, args.build_dir, args.weights_dir, _parameters(args.parameter),
                      html=not args.no_html)
    ran = log_length(cache) - before
    if args.expect_cached and ran:
        raise CachedBuildError(f"the build ran {ran} model pass(es) that the cache {cache} lacked (see the last "
                               f"lines of {cache / 'passes.jsonl'}): fill it with `python -m analysis pass` first")
    print(f"[book] done: {html / 'index.html' if not args.no_html else html}"
          + (" (no model pass ran: every page read the cache)" if args.expect_cached else ""))


def _plan(args) -> None:
    from .plan import build_plan, format_plan, weights_key

    plan = build_plan(args.set, _parameters(args.parameter), args.weights_dir, Path(args.build_dir) / "bench")
    shards = args.shards or plan.suggested_shards()
    if args.github_output:
        with open(args.github_output, "a") as handle:
            handle.write(f"matrix={json.dumps(plan.matrix(shards), separators=(',', ':'))}\n")
            handle.write(f"shards={shards}\n")
            handle.write(f"models={' '.join(plan.models())}\n")
            handle.write(f"weights_key={weights_key(plan.models())}\n")
    print(json.dumps(plan.as_json(shards), indent=1, default=str) if args.json else format_plan(plan, shards))


def _pass(args) -> None:
    from .plan import build_plan, run_passes, select

    plan = build_plan(args.set, _parameters(args.parameter), args.weights_dir, Path(args.build_dir) / "bench")
    chosen = select(plan, args.ids, args.shard)
    cache = Path(args.cache or Path(args.build_dir) / "cache")
    where = f"shard {args.shard}" if args.shard else (f"{len(chosen)} of the plan's" if args.ids else "all")
    print(f"[pass] {plan.set_name} set, {where}: {len(chosen)} of {len(plan.passes)} passes into {cache}", flush=True)
    done = run_passes(chosen, cache, args.weights_dir, args.device)
    print(f"[pass] done: {sum(d['ran'] for d in done)} ran, {sum(not d['ran'] for d in done)} were cached")


def _dispatch(args, extra: list[str]) -> int:
    if args.command == "build":
        _build(args)
    elif args.command == "run":
        page_parameters = {**parameter_sets.SETS[args.set][args.page], **_parameters(args.parameter)}
        print(run_page(args.page, page_parameters, Path(args.build_dir), args.weights_dir, force=args.force))
    elif args.command == "plan":
        _plan(args)
    elif args.command == "pass":
        _pass(args)
    elif args.command == "merge":
        from .plan import merge_caches

        counts = merge_caches(args.sources, args.into, move=args.move)
        print(f"[merge] into {args.into}: {counts['copied']} entries copied, {counts['replaced']} replaced by one "
              f"holding more arrays, {counts['kept']} already there; {counts['folders']} other folders and "
              f"{counts['files']} other files copied; {counts['parts']} parts of split passes taken, "
              f"{counts['assembled']} entries joined from complete sets of parts; "
              f"{counts['log_lines']} pass-log lines appended")
    elif args.command == "fetch":
        from .models import save_weights

        print(save_weights(args.model, args.to))
    elif args.command == "fetch-images":
        from .images import save_imagenette

        print(save_imagenette(args.to, args.split))
    elif args.command == "fetch-voc":
        from .voc import VOC_ENV, default_voc_dir, save_voc2007

        print(save_voc2007(args.to or os.environ.get(VOC_ENV) or default_voc_dir()))
    elif args.command == "params":
        print(json.dumps(parameter_sets.SETS[args.set], indent=1))
    elif args.command == "bench":
        from .bench import main as bench_main

        return bench_main(extra + ["--out", str(Path(args.build_dir) / "bench")]
                          + (["--weights-dir", args.weights_dir] if args.weights_dir else []))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "bench":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return _dispatch(args, extra)
    except Exception as error:
        if not is_user_error(error):
            raise  # a bug: its traceback is the report
        if args.debug:
            traceback.print_exc()
        print(f"error: {error}", file=sys.stderr)
        return 2
