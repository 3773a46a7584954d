"""The command line: a thin layer over the library (``batcher.run_batch``).

It parses flags, calls the library, prints the summary and maps the run's
outcome to an exit code. Library errors become exit codes here and nowhere
else. Heavy imports (pandas, httpx) happen only when a command runs, so
``batcher --help`` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batcher import __version__
from batcher.errors import BatcherError, RunAborted, UsageError
from batcher.models import Plan, RunSummary

if TYPE_CHECKING:
    from batcher.config import Settings
    from batcher.simulator import SimulatorConfig

EXIT_OK, EXIT_NOT_ALL_OK, EXIT_USAGE, EXIT_ABORTED = 0, 1, 2, 3

_DESCRIPTION = """\
Open or close Aelyst conversations for every row of a CSV file, as fast as the
API's rate limit allows, and write what happened to each row to a results CSV.

exit codes: 0 every row ok (or skipped as a duplicate or as already done); 1 the
run finished but some rows are not ok; 2 the run could not start (nothing sent);
3 the run was aborted part-way (authentication failed, interrupted, the API unreachable for
longer than --outage-wait, rows refused alike or too often)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.command(args)
    except BatcherError as exc:  # the run could not start: nothing was sent
        print(f"batcher: error: {exc}", file=sys.stderr)
        _could_not_start(args, exc.exit_code, str(exc))
        return exc.exit_code
    except OSError as exc:  # a file batcher was told to use cannot be opened or written
        where = f" {exc.filename!r}" if exc.filename else ""
        message = f"cannot use{where}: {exc.strerror or exc}"
        print(f"batcher: error: {message}", file=sys.stderr)
        _could_not_start(args, EXIT_USAGE, message)
        return EXIT_USAGE
    except KeyboardInterrupt:  # outside the run's own signal handling (start-up, the end)
        print("batcher: interrupted; running the same command again resumes", file=sys.stderr)
        return EXIT_ABORTED
    return code


def _written_files(
    args: argparse.Namespace, *, metrics_file: str = "", state_file: str = ""
) -> tuple[Path | None, dict[str, Path | None]]:
    """The input, and every file this command writes by what it is: the results file (as
    given or by default), its journal, lock and completion mark, --failed-out,
    --summary-json, --log-file, the metrics file and the state file (with SQLite's and
    the lock's side files)."""
    from batcher.retry import default_retry_path  # noqa: PLC0415
    from batcher.runner import default_results_path, dry_run_path, run_outputs  # noqa: PLC0415

    source: Path | None = getattr(args, "input", None) or getattr(args, "results", None)
    out: Path | None = getattr(args, "out", None)
    if out is None and source is not None:
        if hasattr(args, "results"):
            out = default_retry_path(source)
        else:
            out = dry_run_path(source) if args.dry_run else default_results_path(source)
    outputs: dict[str, Path | None] = {}
    if out is not None:
        outputs.update(run_outputs(out, getattr(args, "failed_out", None)))
    outputs["--summary-json"] = getattr(args, "summary_json", None)
    outputs["--log-file"] = getattr(args, "log_file", None)
    metrics = metrics_file or getattr(args, "metrics_file", None)
    outputs["--metrics-file"] = Path(metrics) if metrics else None
    state = state_file or getattr(args, "state", None)
    if state:
        for end in ("", "-wal", "-shm", ".lock"):
            outputs[f"--state{end}"] = Path(f"{state}{end}")
    return source, outputs


def _own_file(args: argparse.Namespace, flag: str, path: Path | None = None) -> Path | None:
    """The file given as ``flag`` (or ``path``) unless it names the input or any other file
    this command writes: a run that could not start must not write over those either."""
    source, outputs = _written_files(args)
    path = path if path is not None else outputs.get(flag)
    if path is None:
        return None
    real = path.resolve()
    others = [source, *(p for name, p in outputs.items() if name != flag)]
    if any(other is not None and other.resolve() == real for other in others):
        return None
    return path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="batcher",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"batcher {__version__}", help="print the version"
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="apply the call to every row of a CSV file",
        description="Apply the open/close call to every row of INPUT and write a results CSV. "
        "The token is read from the environment variable AELYST_API_TOKEN (its name can "
        "be changed in the config file), never from the command line.",
    )
    run.add_argument(
        "input",
        type=Path,
        metavar="INPUT.csv",
        help='the rows to apply: a CSV file, or an .xlsx workbook (pip install "batcher[excel]")',
    )
    run.add_argument(
        "--sheet",
        metavar="NAME",
        help="the workbook's sheet to read (default: the first); only for .xlsx input",
    )
    _add_run_options(run)
    run.set_defaults(command=_run)

    retry = commands.add_parser(
        "retry",
        help="send again the rows of a results file that need another try",
        description="Send again the rows of RESULTS.csv whose outcome is listed and write a "
        "new results file in the same format, with the original row numbers and extra "
        "columns. By default: deferred rows, skipped rows other than duplicates and dry "
        "runs, and failed rows with a cause that may pass (5xx, timeout, network, retries "
        "exhausted, 429, 401); not 400/404 unless --outcomes names failed.",
    )
    retry.add_argument("results", type=Path, metavar="RESULTS.csv", help="a batcher results file")
    retry.add_argument(
        "--outcomes",
        metavar="LIST",
        help="comma-separated outcomes to send again, e.g. failed,deferred,skipped",
    )
    _add_run_options(retry, retry_command=True)
    retry.set_defaults(command=_retry)

    report = commands.add_parser(
        "report",
        help="counts and failures grouped by cause, from a results file",
        description="Read a results file (finished or stopped, a run's or a retry's) and "
        "print the rows per outcome (as the run's summary did) and per last HTTP status, "
        "the rows that are not ok grouped by cause, most frequent first, with their first "
        "row numbers, and what to run next.",
    )
    report.add_argument("results", type=Path, metavar="RESULTS.csv", help="a batcher results file")
    report.add_argument("--json", action="store_true", help="print it as JSON instead")
    report.set_defaults(command=_report)

    state = commands.add_parser(
        "state",
        help="show what a state file (--state) remembers",
        description="Show what a state file holds: how many identifiers it remembers, per "
        "status last asked, and its oldest and newest success. It only reads the file, so "
        "it may run while a job uses it.",
    )
    state.add_argument("state", type=Path, metavar="FILE", help="a state file (--state)")
    state.set_defaults(command=_state)

    sim = commands.add_parser(
        "simulate",
        help="serve the built-in API simulator on 127.0.0.1",
        description="Serve the built-in simulator of the Aelyst endpoint on 127.0.0.1 until "
        "Ctrl-C. It prints its base URL, for --base-url.",
    )
    _add_simulator_options(sim)
    sim.set_defaults(command=_simulate)

    demo = commands.add_parser(
        "demo",
        help="run a sample file against the simulator (no token, no network)",
        description="Start the simulator on a free loopback port, run a sample file against "
        "it, print the summary and the first rows of the results, and say where the results "
        "file is.",
    )
    demo.add_argument(
        "input",
        type=Path,
        nargs="?",
        metavar="INPUT.csv",
        help="the file to run (default: the sample shipped with batcher, samples/demo.csv)",
    )
    demo.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="write the results file into this folder (made if need be) instead of a temporary one",
    )
    demo.add_argument("--no-progress", action="store_true", help="no progress bar")
    demo.set_defaults(command=_demo)
    return parser


def _add_run_options(run: argparse.ArgumentParser, *, retry_command: bool = False) -> None:
    run.add_argument(
        "--out",
        type=Path,
        metavar="RESULTS.csv",
        help="new results file (default: <results stem>.retry.csv)"
        if retry_command
        else "results file (default: <input stem>.results.csv beside the input)",
    )
    run.add_argument("--config", type=Path, metavar="FILE", help="a TOML config file")
    run.add_argument(
        "--base-url", metavar="URL", help="the API's base URL (default https://api.aelyst.ai/v1)"
    )
    run.add_argument(
        "--concurrency", type=int, metavar="N", help="workers and connections (default 8)"
    )
    run.add_argument(
        "--rate",
        type=float,
        metavar="PER_SECOND",
        help="requests per second never exceeded (default: no ceiling; the pace "
        "is learned from the rate-limit headers)",
    )
    run.add_argument(
        "--max-attempts",
        type=int,
        metavar="N",
        help="tries for a row answered 5xx or losing its connection (default 5)",
    )
    run.add_argument(
        "--requeue-delay",
        type=float,
        metavar="SECONDS",
        help="wait before resending a row answered 449 (default 180)",
    )
    run.add_argument(
        "--max-requeues",
        type=int,
        metavar="N",
        help="449 answers before a row is deferred (default 5)",
    )
    run.add_argument("--encoding", metavar="NAME", help="the input's encoding (default utf-8)")
    run.add_argument(
        "--delimiter",
        metavar="CHAR",
        help="the input's delimiter (default: sniffed among , ; tab |)",
    )
    run.add_argument(
        "--restart",
        action="store_true",
        help="discard what an interrupted run of the same results file recorded, and "
        "send every row again (by default the same command resumes)",
    )
    if not retry_command:
        run.add_argument(
            "--dry-run",
            action="store_true",
            help="read and validate everything, send nothing (results default to "
            "<input stem>.dry-run.csv, so a real run's results are never overwritten)",
        )
        run.add_argument(
            "--failed-out",
            type=Path,
            metavar="FILE",
            help="also write the rows that need another try as a CSV in the input's own "
            "columns, ready for batcher run",
        )
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument(
        "--quiet", action="store_true", help="print only errors and a one-line summary"
    )
    run.add_argument(
        "--max-duration",
        metavar="DURATION",
        help="at this time after the start (e.g. 45m, 2h, 90s) take no new rows, finish "
        "as on SIGTERM and exit 1; the same command resumes",
    )
    run.add_argument(
        "--outage-wait",
        metavar="DURATION",
        help="how long the API may stay unreachable before the run stops as on SIGTERM "
        "(exit 3, resumable; default 10m; 0 stops at once)",
    )
    run.add_argument(
        "--max-retry-after",
        metavar="DURATION",
        help="longest Retry-After (on a 429 or 5xx) the run waits; a longer one stops it "
        "as on SIGTERM (exit 3, resumable; default 10m)",
    )
    run.add_argument(
        "--max-same-errors",
        type=int,
        metavar="N",
        help="stop (exit 3, resumable) when the last N rows answered were all refused "
        "with the same status and message (default 50; 0 = off)",
    )
    run.add_argument(
        "--max-errors",
        metavar="N|P%",
        help="stop (exit 3, resumable) once N rows, or P%% of the rows answered (after "
        "100), are refused or failed (default: off)",
    )
    run.add_argument(
        "--state",
        type=Path,
        metavar="FILE",
        help="an SQLite file, kept from run to run, of the last request that succeeded for "
        "each identifier (created if missing; locked while a run uses it)",
    )
    run.add_argument(
        "--skip-done-within",
        metavar="DURATION",
        help="with --state: do not send a row asking for exactly what last succeeded for "
        "its contact within DURATION (e.g. 7d, 12h); it is skipped as already done",
    )
    run.add_argument(
        "--notify",
        metavar="URL",
        help="when the run ends (any exit code), POST the summary JSON with a 'text' "
        "field holding the one-line summary (a Slack or Mattermost incoming webhook); "
        "https, or http for a loopback host; never changes the exit code",
    )
    run.add_argument(
        "--metrics-file",
        type=Path,
        metavar="FILE",
        help="at the end, write the run's metrics in the Prometheus textfile-collector "
        "format (name it *.prom in node_exporter's textfile directory)",
    )
    run.add_argument(
        "--summary-json",
        type=Path,
        metavar="FILE",
        help="also write counts, times, rates and the exit code as JSON (no row data)",
    )
    run.add_argument(
        "--log-file",
        type=Path,
        metavar="FILE",
        help="append one JSON line per request attempt",
    )
    run.add_argument(
        "--redact",
        action="store_true",
        help="in the --log-file, emails and phone numbers as stable hashes",
    )


def _settings_from(args: argparse.Namespace) -> Any:
    from batcher.config import load_settings, parse_duration  # noqa: PLC0415

    overrides = {
        "base_url": args.base_url,
        "concurrency": args.concurrency,
        "rate": args.rate,
        "max_attempts": args.max_attempts,
        "requeue_delay": args.requeue_delay,
        "max_requeues": args.max_requeues,
        "encoding": args.encoding,
        "delimiter": {"tab": "\t", "\\t": "\t"}.get(args.delimiter, args.delimiter),
        "progress": False if args.no_progress else None,
        "max_duration": parse_duration(args.max_duration) if args.max_duration else None,
        "outage_wait": parse_duration(args.outage_wait) if args.outage_wait else None,
        "max_same_errors": args.max_same_errors,
        "max_retry_after": parse_duration(args.max_retry_after) if args.max_retry_after else None,
        "max_errors": args.max_errors,
        "state_file": None if args.state is None else str(args.state),
        "skip_done_within": (
            parse_duration(args.skip_done_within) if args.skip_done_within else None
        ),
        "notify_url": args.notify,
        "metrics_file": None if args.metrics_file is None else str(args.metrics_file),
    }
    return load_settings(args.config, overrides)


def _run(args: argparse.Namespace) -> int:
    from batcher import run_batch  # noqa: PLC0415

    def run(**options: Any) -> RunSummary:
        return run_batch(
            args.input,
            out=args.out,
            settings=settings,
            dry_run=args.dry_run,
            restart=args.restart,
            failed_out=args.failed_out,
            sheet=args.sheet,
            **options,
        )

    from batcher.runner import default_results_path, dry_run_path  # noqa: PLC0415

    settings = _settings_from(args)
    out = args.out or (
        dry_run_path(args.input) if args.dry_run else default_results_path(args.input)
    )
    return _execute(
        args, settings, run, args.input, out, failed_out=args.failed_out, dry_run=args.dry_run
    )


def _retry(args: argparse.Namespace) -> int:
    from batcher import retry_batch  # noqa: PLC0415
    from batcher.retry import parse_outcomes  # noqa: PLC0415

    def run(**options: Any) -> RunSummary:
        return retry_batch(
            args.results,
            out=args.out,
            outcomes=outcomes,
            settings=settings,
            restart=args.restart,
            **options,
        )

    from batcher.retry import default_retry_path  # noqa: PLC0415

    settings = _settings_from(args)
    outcomes = parse_outcomes(args.outcomes) if args.outcomes else None
    out = args.out or default_retry_path(args.results)
    return _execute(args, settings, run, args.results, out)


def _execute(
    args: argparse.Namespace,
    settings: Settings,
    run: Callable[..., RunSummary],
    input_path: Path,
    out: Path,
    *,
    failed_out: Path | None = None,
    dry_run: bool = False,
) -> int:
    """Run through the library with the CLI's progress, plan and log; report and exit."""
    from batcher.attemptlog import JsonAttemptLog, NullAttemptLog  # noqa: PLC0415
    from batcher.paths import check_outputs  # noqa: PLC0415
    from batcher.progress import make_progress  # noqa: PLC0415
    from batcher.report import one_line, plan_lines, summary_json  # noqa: PLC0415

    def show_plan(plan: Plan) -> None:
        lines = plan_lines(plan, settings.max_duration)
        for line in lines if not args.quiet else ():
            print(line, file=sys.stderr)

    # Before anything is opened or sent: no output may clobber the input or another output.
    _, outputs = _written_files(
        args, metrics_file=settings.metrics_file, state_file=settings.state_file
    )
    check_outputs(input_path, outputs)
    log = (
        JsonAttemptLog(args.log_file, redact_identifiers=args.redact)
        if args.log_file
        else NullAttemptLog()
    )
    summary: RunSummary | None
    failure = ""
    try:
        summary = run(
            progress=make_progress(settings.progress, quiet=args.quiet),
            handle_signals=True,
            attempt_log=log,
            on_plan=show_plan,
        )
        code = exit_code(summary)
    except RunAborted as exc:
        print(f"batcher: error: {exc}", file=sys.stderr)
        summary = exc.summary if isinstance(exc.summary, RunSummary) else None
        code = exc.exit_code
        failure = str(exc)
    finally:
        log.close()
    data: dict[str, object] = {"exit_code": code, "error": failure}
    text = f"batcher: stopped (exit {code}): {failure}"
    if summary is not None:
        if summary.complete_already:
            from batcher.policy import worth_retrying  # noqa: PLC0415

            again = sum(n for reason, n in summary.reasons.items() if worth_retrying(reason))
            hint = (
                f"; {again} rows are worth another try: batcher retry {summary.results_path}"
                if again
                else ""
            )
            print(
                f"batcher: {summary.results_path} is already complete for this input: nothing "
                f"sent (--restart sends every row again){hint}",
                file=sys.stderr,
            )
        _print_summary(summary, quiet=args.quiet)
        if summary.stopped and not dry_run:
            print(f"to resume: {shlex.join(['batcher', *sys.argv[1:]])}", file=sys.stderr)
        data = summary_json(
            summary, exit_code=code, input_path=input_path, results_path=Path(summary.results_path)
        )
        text = one_line(summary)
    args.reported = True  # a later error must not report this run a second time
    _report_end(
        args,
        metrics_file=settings.metrics_file,
        notify_url=settings.notify_url,
        summary=summary,
        code=code,
        data=data,
        text=text,
    )
    if dry_run and summary is not None:
        for method, url, body in summary.sample_requests:
            print(f"{method} {url}\n  {body}")
    return code


def _report_end(
    args: argparse.Namespace,
    *,
    metrics_file: str,
    notify_url: str,
    summary: RunSummary | None,
    code: int,
    data: dict[str, object],
    text: str,
) -> None:
    """The end of a run, for whoever was not watching: the metrics file, the notification,
    the summary JSON (which records how the notification went). None changes the exit code."""
    import time  # noqa: PLC0415

    from batcher.report import write_json  # noqa: PLC0415

    if metrics_file and _own_file(args, "--metrics-file", Path(metrics_file)) is None:
        metrics_file = ""  # it names the input or another output: never written over
    if metrics_file:
        from batcher.metrics import write_metrics  # noqa: PLC0415

        try:
            write_metrics(Path(metrics_file), summary, exit_code=code, end_time=time.time())
        except OSError as exc:
            print(f"batcher: error: cannot write the metrics file: {exc}", file=sys.stderr)
    if notify_url:
        from batcher.notify import notify  # noqa: PLC0415

        delivery = notify(notify_url, data, text)
        if not delivery.delivered:
            print(f"batcher: warning: the notification failed: {delivery.error}", file=sys.stderr)
        data = {**data, "notify": delivery.as_json()}
    summary_path = _own_file(args, "--summary-json")
    if summary_path is not None and summary_path.parent.is_dir():
        try:
            write_json(summary_path, data)
        except OSError as exc:
            print(
                f"batcher: error: cannot write --summary-json {str(summary_path)!r}: "
                f"{exc.strerror or exc}",
                file=sys.stderr,
            )


def _could_not_start(args: argparse.Namespace, code: int, message: str) -> None:
    """A run that could not start still writes its summary JSON and metrics and notifies,
    as far as the flags and the config file can be read."""
    if not hasattr(args, "summary_json") or getattr(args, "reported", False):
        return  # not a run command, or the run already reported itself
    from batcher.config import check_url, load_settings  # noqa: PLC0415

    metrics_file = "" if args.metrics_file is None else str(args.metrics_file)
    notify_url = args.notify or ""
    if args.config is not None and not (metrics_file and notify_url):
        try:
            configured = load_settings(args.config, {})
        except BatcherError:
            pass
        else:
            metrics_file = metrics_file or configured.metrics_file
            notify_url = notify_url or configured.notify_url
    try:
        if notify_url:
            check_url(notify_url, "notify URL", show=False)
    except UsageError:
        notify_url = ""  # the error printed says what is wrong with it
    if metrics_file and not Path(metrics_file).parent.is_dir():
        metrics_file = ""
    data: dict[str, object] = {"exit_code": code, "error": message}
    text = f"batcher: could not start (exit {code}): {message}"
    _report_end(
        args,
        metrics_file=metrics_file,
        notify_url=notify_url,
        summary=None,
        code=code,
        data=data,
        text=text,
    )


def exit_code(summary: RunSummary) -> int:
    """0 when every row is ok (duplicates and dry-run rows aside), else 1."""
    return EXIT_OK if summary.all_ok else EXIT_NOT_ALL_OK


def _print_summary(summary: RunSummary, *, quiet: bool = False) -> None:
    from batcher.report import one_line, summary_lines  # noqa: PLC0415

    lines = [one_line(summary)] if quiet else summary_lines(summary)
    print("\n".join(lines), file=sys.stderr)


def _add_simulator_options(sim: argparse.ArgumentParser) -> None:
    sim.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    sim.add_argument(
        "--token-env",
        metavar="VAR",
        help="accept only the token in this environment variable "
        "(default: any non-empty bearer token)",
    )
    sim.add_argument(
        "--shared-limit", type=int, metavar="N", help="requests per window across all paths"
    )
    sim.add_argument(
        "--path-limit", type=int, metavar="N", help="requests per window per unique path"
    )
    sim.add_argument(
        "--window", type=float, default=1.0, metavar="SECONDS", help="rate-limit window length"
    )
    sim.add_argument(
        "--window-kind",
        choices=("fixed", "sliding"),
        default="fixed",
        help="fixed windows (floor(now / window)) or sliding ones (each request counts for "
        "a window from its arrival)",
    )
    sim.add_argument(
        "--rate-headers",
        choices=("normal", "none", "zero", "garbage"),
        default="normal",
        help="X-RateLimit headers: true ones (normal), none, Limit 0 (zero), or not numbers",
    )
    sim.add_argument(
        "--queue-share",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share of contacts answered 449",
    )
    sim.add_argument(
        "--queue-hold",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="how long such a contact keeps answering 449",
    )
    sim.add_argument(
        "--error-rate",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share of requests answered 500",
    )
    sim.add_argument(
        "--drop-rate",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share of requests whose connection is dropped",
    )
    sim.add_argument(
        "--latency", type=float, default=0.0, metavar="SECONDS", help="delay before each answer"
    )
    sim.add_argument(
        "--require-category", action="store_true", help="a close without a category is answered 400"
    )
    sim.add_argument(
        "--revoke-after",
        type=int,
        metavar="N",
        help="answer 401 to everything after N accepted requests",
    )
    sim.add_argument(
        "--down-after",
        type=int,
        metavar="N",
        help="after N requests the API goes down: connections are reset (0: down from the start)",
    )
    sim.add_argument(
        "--down-for",
        type=float,
        default=math.inf,
        metavar="SECONDS",
        help="how long the API stays down after --down-after (default: for good)",
    )
    sim.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    sim.add_argument("--log", metavar="FILE", help="append one JSON line per request")


def _report(args: argparse.Namespace) -> int:
    import json  # noqa: PLC0415

    from batcher.digest import digest  # noqa: PLC0415

    found = digest(args.results)
    if args.json:
        print(json.dumps(found.as_json(), indent=2, ensure_ascii=False))
    else:
        print("\n".join(found.lines()))
    return EXIT_OK


def _state(args: argparse.Namespace) -> int:
    from batcher.state import StateFile, show_time  # noqa: PLC0415

    state = StateFile(args.state, readonly=True)
    try:
        stats = state.stats()
    finally:
        state.close()
    if not stats.rows or stats.oldest is None or stats.newest is None:
        print(f"{args.state}: no success recorded yet")
        return EXIT_OK
    per_status = ", ".join(f"{status} {n}" for status, n in stats.statuses.items())
    print(f"{args.state}: {stats.rows} identifiers ({per_status})")
    print(f"  oldest success: {show_time(stats.oldest)}")
    print(f"  newest success: {show_time(stats.newest)}")
    return EXIT_OK


def _simulator_config(args: argparse.Namespace) -> SimulatorConfig:
    import os  # noqa: PLC0415

    from batcher.simulator import SimulatorConfig  # noqa: PLC0415

    token = None
    if args.token_env:
        token = os.environ.get(args.token_env) or None
        if token is None:
            raise UsageError(f"--token-env: the environment variable {args.token_env} is not set")
    try:
        return SimulatorConfig(
            token=token,
            revoke_after=args.revoke_after,
            shared_limit=args.shared_limit,
            path_limit=args.path_limit,
            window=args.window,
            window_kind=args.window_kind,
            rate_headers=args.rate_headers,
            queue_share=args.queue_share,
            queue_hold=args.queue_hold,
            error_rate=args.error_rate,
            drop_rate=args.drop_rate,
            latency=args.latency,
            require_category=args.require_category,
            seed=args.seed,
            down_after=args.down_after,
            down_for=args.down_for,
            log_path=args.log,
        )
    except ValueError as exc:
        raise UsageError(f"simulate: {exc}") from exc


def _simulate(args: argparse.Namespace) -> int:
    from batcher.simulator import serve_forever  # noqa: PLC0415

    config = _simulator_config(args)

    def ready(base_url: str) -> None:
        print(f"simulator listening on {base_url}", flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        serve_forever(config, port=args.port, on_ready=ready)
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    from batcher.demo import results_table, run_demo  # noqa: PLC0415

    summary = run_demo(args.input, progress=not args.no_progress, keep=args.keep)
    _print_summary(summary)
    print(results_table(Path(summary.results_path)))
    print(f"demo: results written to {summary.results_path}")
    return EXIT_OK
