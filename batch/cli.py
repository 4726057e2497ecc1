"""`python -m batch`: the command line (SPEC.md, "Batch serving"; `make batch`).

Exit codes: 0 when every input was processed, whatever each image's outcome (see the manifest);
1 on a usage or configuration error, with a message; 130 when stopped by Ctrl-C or SIGTERM
before the end (run the same command again to go on).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import uuid
from collections.abc import Sequence
from typing import IO, NoReturn

from avatar import inputs
from avatar.catalogue import ANIMALS, DEFAULT_STYLE, RENDER_STYLES
from avatar.errors import InvalidRequest
from batch import manifest
from batch.errors import BatchError
from batch.job import Options, Stop, run
from batch.locations import location
from batch.shards import Shard

EXIT_USAGE = 1
REMOTE_WORKERS = 8  # concurrent calls to a deployed function: they wait on the network

USAGE_EXAMPLES = """\
examples:
  python -m batch --input photos/ --output avatars/ --animal all
  python -m batch --input gs://drop/selfies --output gs://results/batch --animal fox,cat
  python -m batch --input gs://drop/selfies --output gs://results/batch --animal fox \\
      --function-url https://REGION-PROJECT.cloudfunctions.net/generate-animal-avatar
  python -m batch --output gs://results/batch --merge

OUTPUT gets one result per input and animal (<input name>.<animal>.jpg|png) and manifest.jsonl.
A rerun skips what the manifest has (failures too, unless --retry-failed).
With CLOUD_RUN_TASK_INDEX/CLOUD_RUN_TASK_COUNT set, each task takes its share of the inputs
and writes its own manifest part; --merge combines them.
"""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error exits 1 (the job's code for it), not 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def parser() -> Parser:
    p = Parser(
        prog="python -m batch",
        description="Turn every selfie in a folder or a gs:// prefix into animals.",
        epilog=USAGE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--input", help="a folder or gs://bucket/prefix of images")
    p.add_argument("--output", required=True, help="a folder or gs://bucket/prefix for results")
    p.add_argument("--animal", help="one animal, a comma list, or `all`")
    p.add_argument(
        "--workers",
        type=positive,
        help=f"worker processes (default: the CPU count); with --function-url, concurrent "
        f"calls (default {REMOTE_WORKERS})",
    )
    p.add_argument(
        "--faces",
        choices=("largest", "all"),
        default="largest",
        help="turn only the largest face (default) or every face",
    )
    p.add_argument(
        "--style",
        type=str.lower,
        choices=RENDER_STYLES,
        default=DEFAULT_STYLE,
        help="how the animals are drawn: a character's head in place of the face (character, "
        "the default) or face paint (paint)",
    )
    p.add_argument(
        "--function-url", help="call this deployed function instead of running the pipeline here"
    )
    p.add_argument(
        "--function-auth",
        choices=("auto", "none", "id_token"),
        default="auto",
        help="how to call --function-url: a Google ID token (id_token), nothing (none), or an "
        "ID token for https URLs only (auto, the default)",
    )
    p.add_argument(
        "--retry-failed", action="store_true", help="do again what the manifest has as failed"
    )
    p.add_argument(
        "--user-id",
        type=user_id,
        help="also record each result in this user's history (DATABASE_URL)",
    )
    p.add_argument(
        "--merge",
        action="store_true",
        help="combine OUTPUT's manifest parts into manifest.jsonl, and stop",
    )
    return p


def positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of at least 1")
    return number


def user_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not a user id (a UUID)") from exc


def parse_animals(value: str) -> tuple[str, ...]:
    """`all` (the catalogue's order), or one id or a comma list of distinct ids, checked as the
    function checks its `animals` field."""
    if value.strip().lower() == "all":
        return tuple(a.id for a in ANIMALS)
    try:
        return inputs.parse_animals(value)
    except InvalidRequest as exc:
        raise BatchError(f"--animal: {exc.detail}, or all") from exc


def cpu_count() -> int:
    """The CPUs this process may use (a container's or a Cloud Run task's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def options_from(args: argparse.Namespace) -> Options:
    if not args.input or not args.animal:
        raise BatchError("--input and --animal are needed (only --merge goes without them)")
    remote = bool(args.function_url)
    if remote and not args.function_url.startswith(("https://", "http://")):
        raise BatchError(f"--function-url {args.function_url!r} is not an http(s) URL")
    return Options(
        input=args.input,
        output=args.output,
        animals=parse_animals(args.animal),
        workers=args.workers or (REMOTE_WORKERS if remote else cpu_count()),
        all_faces=args.faces == "all",
        style=args.style,
        function_url=args.function_url,
        function_auth=args.function_auth,
        retry_failed=args.retry_failed,
        user_id=args.user_id,
        shard=Shard.from_env(os.environ),
    )


def main(
    argv: Sequence[str] | None = None, *, out: IO[str] = sys.stdout, err: IO[str] = sys.stderr
) -> int:
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            args = parser().parse_args(argv)
    except SystemExit as exc:  # --help (0), or a usage error (1, its message written)
        return int(exc.code or 0)
    stop = Stop(err)
    try:
        if args.merge:
            output = location(args.output)
            lines, parts = manifest.merge(output)
            where = output.join(manifest.MANIFEST)
            out.write(f"batch: merged {len(parts)} parts: {lines} lines in {where}\n")
            return 0
        with stop.installed():
            code = run(options_from(args), stop, out=out, err=err)
    except BatchError as exc:
        err.write(f"batch: error: {exc}\n")
        return EXIT_USAGE
    if stop.forced:  # threads may still wait on the network: leave without them
        out.flush()
        err.flush()
        os._exit(code)
    return code
