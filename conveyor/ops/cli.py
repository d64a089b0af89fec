"""The operator's command line, ``python -m actors stats|dlq|state``: queue stats, the dead-letter queue, the state.

    python -m actors stats [--json]
    python -m actors dlq list [STEP] [--limit N] [--json]
    python -m actors dlq show STEP MESSAGE_ID [--json]
    python -m actors dlq replay STEP (MESSAGE_ID | --all) [--json]
    python -m actors dlq purge STEP --yes [--json]
    python -m actors state groups [--json]
    python -m actors state list GROUP [--limit N] [--json]
    python -m actors state get GROUP KEY
    python -m actors traces [--status S] [--flow F] [--step S] [--since T] [--until T]
                            [--min-duration MS] [--message-id ID] [--text TEXT] [--page N] [--json]
    python -m actors trace TRACE_ID [--json]

``stats`` and ``dlq`` work on RabbitMQ only; ``state``, ``traces`` and ``trace`` only read the
state and trace stores. ``--since``/``--until`` take an ISO time or a time ago (``15m``, ``2h``,
``7d``), as the console's filters do. Reads config.toml (or CONVEYOR_CONFIG) like the workers do.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..errors import ConveyorError
from ..runtime import Runtime, boot
from ..tracing.filters import BadFilter, trace_query
from .dlq import DeadLetterQueue
from .queue_stats import queue_stats
from .text import dead_message_text, dead_messages_table, purge_line, replay_line, stats_table
from .trace_text import trace_timeline, traces_table


def main(argv: list[str] | None = None) -> None:
    """Parse ``argv`` (the process's by default), run the command on the booted runtime, print its answer."""
    args = _parser().parse_args(argv)
    try:
        print(_run(boot(), args))
    except ConveyorError as exc:
        sys.exit(f"conveyor: {exc}")


def _run(runtime: Runtime, args: argparse.Namespace) -> str:
    if args.command == "state":
        return _state(runtime, args)
    if args.command in ("traces", "trace"):
        return _traces(runtime, args)
    if args.command == "stats":
        stats = queue_stats(runtime)
        return _json({"steps": [s.to_json() for s in stats]}) if args.json else stats_table(stats)

    dlq = DeadLetterQueue(runtime)
    if args.action == "list":
        listings = [dlq.listing(args.step, limit=args.limit)] if args.step else dlq.overview(limit=args.limit)
        if args.json:
            return _json({"steps": [listing.to_json() for listing in listings]})
        shown = [message for listing in listings for message in listing.messages]
        total = sum(listing.count for listing in listings)
        more = f"\n({total - len(shown)} more not shown; raise --limit)" if total > len(shown) else ""
        return dead_messages_table(shown) + more
    if args.action == "show":
        message = dlq.get(args.step, args.message_id)
        return _json(message.to_json()) if args.json else dead_message_text(message)
    if args.action == "replay":
        replays = dlq.replay_all(args.step) if args.all else [dlq.replay(args.step, args.message_id)]
        if args.json:
            return _json({"replayed": [r.to_json() for r in replays]})
        return "\n".join(replay_line(r) for r in replays) or f"No dead messages to replay in {args.step}."
    purge = dlq.purge(args.step)
    return _json(purge.to_json()) if args.json else purge_line(purge)


def _state(runtime: Runtime, args: argparse.Namespace) -> str:
    """Read the state store, never write it: what the handlers keep, as they keep it."""
    state = runtime.state
    if args.action == "groups":
        groups = state.groups()
        if args.json:
            return _json({"groups": [{"group": group, "keys": count} for group, count in groups]})
        width = max((len(group) for group, _ in groups), default=5)
        return "\n".join([f"{'GROUP':<{width}}  KEYS", *(f"{group:<{width}}  {count}" for group, count in groups)])
    if args.action == "list":
        items = state.items(args.group)[: args.limit]
        if args.json:
            return _json({"group": args.group, "items": [{"key": key, "value": value} for key, value in items]})
        if not items:
            return f"No keys in group {args.group!r}."
        return "\n".join(f"{key}  {_one_line(value)}" for key, value in items)
    value = state.get(args.group, args.key)
    if value is None:
        raise ConveyorError(f"no key {args.key!r} in state group {args.group!r} (see `state list {args.group}`)")
    return _json(value)


def _traces(runtime: Runtime, args: argparse.Namespace) -> str:
    """Read the trace store: recent traces with the console's filters, or one trace's timeline."""
    store = runtime.traces()
    if store is None:
        raise ConveyorError("tracing is off: set [tracing] enabled = true in config.toml (or CONVEYOR_TRACING=1)")
    if args.command == "trace":
        detail = store.trace(args.trace_id)
        if detail is None:
            raise ConveyorError(f"no trace {args.trace_id!r} in the trace store (see `python -m actors traces`)")
        return _json(detail.to_json()) if args.json else trace_timeline(detail)
    fields = ("status", "flow", "step", "since", "until", "min_duration", "message_id", "text", "page")
    params = {name: str(value) for name in fields if (value := getattr(args, name)) is not None}
    try:
        query = trace_query(params)
    except BadFilter as exc:
        raise ConveyorError(f"--{exc.field.replace('_', '-')}: {exc}") from None
    page = store.traces(query)
    return _json(page.to_json()) if args.json else traces_table(page)


def _one_line(value: Any, width: int = 160) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m actors", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{stats,dlq,state,traces,trace}")
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="print JSON instead of text")

    commands.add_parser("stats", parents=[as_json], help="messages ready, unacked, delayed and dead, per step")

    dlq = commands.add_parser("dlq", help="inspect, replay and purge dead messages").add_subparsers(
        dest="action", required=True, metavar="{list,show,replay,purge}"
    )
    listing = dlq.add_parser("list", parents=[as_json], help="dead messages with their errors")
    listing.add_argument("step", nargs="?", help="only this step's (default: every step's)")
    listing.add_argument("--limit", type=_positive, default=100, help="messages per step (default 100)")

    show = dlq.add_parser("show", parents=[as_json], help="one dead message in full")
    show.add_argument("step")
    show.add_argument("message_id")

    replay = dlq.add_parser("replay", parents=[as_json], help="send dead messages back to their step")
    replay.add_argument("step")
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("message_id", nargs="?", help="the message to replay")
    which.add_argument("--all", action="store_true", help="replay every dead message of the step")

    purge = dlq.add_parser("purge", parents=[as_json], help="delete a step's dead messages for good")
    purge.add_argument("step")
    purge.add_argument("--yes", action="store_true", required=True, help="confirm: the messages cannot be recovered")

    state = commands.add_parser("state", help="read the state store (groups, keys and values)").add_subparsers(
        dest="action", required=True, metavar="{groups,list,get}"
    )
    state.add_parser("groups", parents=[as_json], help="every group, with how many keys it holds")
    keys = state.add_parser("list", parents=[as_json], help="a group's keys and values, oldest first")
    keys.add_argument("group")
    keys.add_argument("--limit", type=_positive, default=100, help="keys at most (default 100)")
    get = state.add_parser("get", help="one value, as JSON")
    get.add_argument("group")
    get.add_argument("key")

    traces = commands.add_parser("traces", parents=[as_json], help="recent traces, newest first, filtered")
    traces.add_argument("--status", help="ok, retried or failed")
    traces.add_argument("--flow")
    traces.add_argument("--step", help="traces with a span of this step")
    traces.add_argument("--since", help="an ISO time, or a time ago: 15m, 2h, 7d")
    traces.add_argument("--until", help="an ISO time, or a time ago")
    traces.add_argument("--min-duration", dest="min_duration", help="milliseconds, at least")
    traces.add_argument("--message-id", dest="message_id", help="the trace holding this message")
    traces.add_argument("--text", help="a substring of a payload, an error or a span's name")
    traces.add_argument("--page", help="page number, from 1 (50 traces a page)")
    trace = commands.add_parser("trace", parents=[as_json], help="one trace's timeline, with its log lines")
    trace.add_argument("trace_id", help="the id the gateway answered in x-request-id")
    return parser


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, got {text!r}")
    return int(text)


def _json(value: Any) -> str:
    return json.dumps(value, indent=2)
