"""``copilot``: the command line. It talks to the services over gRPC like any other client."""

from __future__ import annotations

import argparse
import getpass
import itertools
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from copilot.common.v1 import common_pb2
from copilot.generation.v1 import generation_pb2, generation_pb2_grpc
from copilot.grpc_client import bearer, open_channel
from copilot.grpc_server import MAX_MESSAGE_BYTES, RETRY_AFTER_METADATA
from copilot.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from copilot.launcher import LauncherSettings, Stack, component_ready, down, pid_alive, up
from copilot.monitor.v1 import monitor_pb2, monitor_pb2_grpc
from copilot.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc

console = Console()
err = Console(stderr=True)

SEVERITY = {1: "low", 2: "medium", 3: "high"}
_DOUBTFUL = (generation_pb2.SUPPORT_VERDICT_UNSUPPORTED, generation_pb2.SUPPORT_VERDICT_INVALID)
#: Documents `copilot ingest` keeps in flight: enough to give each core of a small ingest service a document
#: of its own (the PostgreSQL manual ingested 1.5x faster with two than with one on two cores).
DEFAULT_PARALLEL_INGESTS = 4
#: More would only queue behind the ingest service's worker threads (8 by default).
MAX_PARALLEL_INGESTS = 32


class CliError(Exception):
    """Shown to the user as ``error: ...`` with exit code 2."""


def _stack(settings: LauncherSettings) -> Stack:
    stack = Stack.load(settings.home.resolve())
    if stack is None or not all(pid_alive(c.pid) for c in stack.components):
        raise CliError("the copilot stack is not running; start it with `copilot up`")
    return stack


def _users(stack: Stack) -> list[dict[str, Any]]:
    return list(json.loads(Path(stack.users_file).read_text()))


def _token(stack: Stack, username: str, password: str | None) -> str:
    from keycloak import KeycloakOpenID
    from keycloak.exceptions import KeycloakAuthenticationError, KeycloakConnectionError

    if password is None:
        # Local runs: the sample users' passwords live in the dev users file; a real realm prompts.
        known = {u["username"]: u["password"] for u in _users(stack)}
        password = known.get(username) or getpass.getpass(f"password for {username}: ")
    server_url, realm = stack.issuer.split("/realms/", 1)
    oidc = KeycloakOpenID(server_url=server_url + "/", realm_name=realm, client_id="copilot-cli")
    try:
        return str(oidc.token(username, password)["access_token"])
    except KeycloakAuthenticationError as exc:
        raise CliError(f"cannot sign in as {username!r}: unknown user or wrong password") from exc
    except KeycloakConnectionError as exc:
        raise CliError(f"identity provider at {stack.issuer} is not reachable") from exc


def _rpc_error(exc: grpc.RpcError, service: str, target: str) -> CliError:
    code, details = exc.code(), exc.details()  # type: ignore[attr-defined]
    if code == grpc.StatusCode.UNAVAILABLE:
        return CliError(
            f"{service} at {target} is unavailable ({details}); is the stack up? (`copilot status`)"
        )
    return CliError(f"{service}: {code.name}: {details}")


# ---- commands -------------------------------------------------------------------------------------------


def cmd_up(args: argparse.Namespace, settings: LauncherSettings) -> int:
    started = time.monotonic()
    stack, fresh = up(settings, progress=lambda m: err.print(f"[dim]{m}[/dim]"))
    if not fresh:
        err.print(f"copilot is already running ({len(stack.components)} components); `copilot down` stops it")
        return 0
    err.print(
        f"[green]copilot is up[/green] in {time.monotonic() - started:.1f} s; logs in {stack.home}/logs"
    )
    return 0


def cmd_down(args: argparse.Namespace, settings: LauncherSettings) -> int:
    stopped = down(settings.home, progress=lambda m: err.print(f"[dim]{m}[/dim]"))
    err.print(f"stopped {stopped} components" if stopped else "copilot was not running")
    return 0


def cmd_status(args: argparse.Namespace, settings: LauncherSettings) -> int:
    stack = Stack.load(settings.home.resolve())
    if stack is None:
        err.print("copilot is not running")
        return 1
    table = Table("component", "pid", "address", "state")
    healthy = True
    for c in stack.components:
        alive = pid_alive(c.pid)
        ready = alive and component_ready(c)
        healthy &= ready
        state = (
            "[green]serving[/green]"
            if ready
            else ("[yellow]starting[/yellow]" if alive else "[red]dead[/red]")
        )
        table.add_row(c.name, str(c.pid), f"127.0.0.1:{c.port}", state)
    console.print(table)
    if any(c.name == "monitor" for c in stack.components):
        console.print(f"review page: http://127.0.0.1:{settings.review_port}/")
    return 0 if healthy else 1


def cmd_users(args: argparse.Namespace, settings: LauncherSettings) -> int:
    users = json.loads(settings.users_file.read_text())
    table = Table("user", "name", "groups", "roles", "tenant")
    for u in users:
        table.add_row(
            u["username"],
            u.get("name", ""),
            ", ".join(u.get("groups", [])) or "-",
            ", ".join(u.get("roles", [])),
            u.get("tenant", ""),
        )
    console.print(table)
    return 0


def _displayable(text: str) -> str:
    """``text`` as valid UTF-8: bytes of a file name that are not UTF-8 (kept by Python as lone
    surrogates, which protobuf cannot encode) are written as ``\\xNN``, the same each run."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that no undecodable byte became
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def _documents(path: Path) -> list[Path]:
    from services.ingest.access import is_sidecar

    if path.is_file():
        return [path]
    return sorted(
        p for p in path.rglob("*") if p.is_file() and not is_sidecar(p) and not p.name.startswith(".")
    )


def _ingest_document(
    stub: ingest_pb2_grpc.IngestServiceStub, request: ingest_pb2.IngestDocumentRequest, token: str
) -> ingest_pb2.IngestDocumentResponse:
    """One IngestDocument call that waits out the service's rate limit instead of failing the file."""
    while True:
        try:
            reply: ingest_pb2.IngestDocumentResponse = stub.IngestDocument(
                request, metadata=bearer(token), timeout=300
            )
            return reply
        except grpc.RpcError as exc:
            retry_after_ms = dict(exc.trailing_metadata() or ()).get(RETRY_AFTER_METADATA)  # type: ignore[attr-defined]
            if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED or retry_after_ms is None:  # type: ignore[attr-defined]
                raise
            time.sleep(int(retry_after_ms) / 1000)


def _parallel_requests(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if not 1 <= n <= MAX_PARALLEL_INGESTS:
        raise argparse.ArgumentTypeError(
            f"expected a whole number from 1 to {MAX_PARALLEL_INGESTS}, got {value!r}"
        )
    return n


def _sent_side_by_side(
    files: Sequence[Path], send: Callable[[Path], ingest_pb2.IngestDocumentResponse], parallel: int
) -> Iterator[tuple[Path, ingest_pb2.IngestDocumentResponse | BaseException]]:
    """Each file with its reply or error, as they finish, with at most ``parallel`` requests in flight.

    Several documents at once keep every core of the ingest service busy: one document's chunks often
    make a single embedding batch, which runs on one core. Files are read only when their turn comes, so
    memory holds ``parallel`` documents at most. Closing the iterator early waits for the requests in
    flight and sends no more.
    """
    queue = iter(files)
    with ThreadPoolExecutor(parallel, thread_name_prefix="ingest") as pool:
        in_flight = {pool.submit(send, file): file for file in itertools.islice(queue, parallel)}
        while in_flight:
            finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in finished:
                file = in_flight.pop(future)
                error = future.exception()
                yield file, error if error is not None else future.result()
                following = next(queue, None)
                if following is not None:
                    in_flight[pool.submit(send, following)] = following


def cmd_ingest(args: argparse.Namespace, settings: LauncherSettings) -> int:
    from services.ingest.access import Access, access_for
    from services.ingest.errors import IngestError

    root = Path(args.path)
    if not root.exists():
        raise CliError(f"no such file or directory: {root}")
    default: Access | None = None
    if args.public or args.groups or args.users:
        default = Access(
            tenant="",
            groups=tuple(g for g in (args.groups or "").split(",") if g),
            users=tuple(u for u in (args.users or "").split(",") if u),
            public=args.public,
            classification="internal",
        )
    stack = _stack(settings)
    token = _token(stack, args.user, args.password)
    target = stack.endpoint("ingest")
    stub = ingest_pb2_grpc.IngestServiceStub(open_channel(target))
    files = _documents(root)
    base = root if root.is_dir() else root.parent
    counts = {"created": 0, "updated": 0, "unchanged": 0}
    failures: list[tuple[Path, str]] = []
    chunks = 0
    # Set when the service stops answering: what is done so far is reported before giving up.
    stopped: CliError | None = None
    started = time.monotonic()
    columns = (
        TextColumn("ingest"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )

    def send(file: Path) -> ingest_pb2.IngestDocumentResponse:
        access = access_for(file, base, "", default)
        if access is None or access.is_empty():
            raise CliError("no access list: add an access.yaml beside it or pass --groups/--users/--public")
        size = file.stat().st_size
        if size > MAX_MESSAGE_BYTES:
            # Checked before reading: the whole file would go into memory for nothing.
            raise CliError(f"it is {size:,} bytes, over the {MAX_MESSAGE_BYTES:,}-byte limit of a request")
        # A name that is not UTF-8 (say Latin-1 from an old share) goes under its escaped form.
        uri = _displayable(str(file.resolve()))
        if uri != str(file.resolve()) and Path(uri).exists():
            raise CliError(f"its name is not UTF-8, and its escaped form names another file: {uri}")
        request = ingest_pb2.IngestDocumentRequest(
            uri=uri,
            filename=_displayable(file.name),
            content=file.read_bytes(),
            access=common_pb2.AccessControl(
                groups=list(access.groups),
                users=list(access.users),
                public=access.public,
                classification=access.classification,
            ),
        )
        return _ingest_document(stub, request, token)

    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task("ingest", total=len(files), rate="")
        for file, reply_or_error in _sent_side_by_side(files, send, args.parallel):
            if isinstance(reply_or_error, grpc.RpcError):
                exc = reply_or_error
                if exc.code() in (
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.UNAUTHENTICATED,  # type: ignore[attr-defined]
                    grpc.StatusCode.PERMISSION_DENIED,
                ):
                    stopped = _rpc_error(exc, "ingest", target)
                    break
                failures.append((file, exc.details() or exc.code().name))  # type: ignore[attr-defined]
            elif isinstance(reply_or_error, (CliError, IngestError, OSError, ValueError)):
                # ValueError: protobuf refusing a value it cannot encode, which names no one else's file.
                failures.append((file, str(reply_or_error)))
            elif isinstance(reply_or_error, BaseException):
                raise reply_or_error
            else:
                reply = reply_or_error
                outcome = ingest_pb2.IngestOutcome.Name(reply.outcome).removeprefix("INGEST_OUTCOME_").lower()
                counts[outcome] += 1
                chunks += max(reply.chunk_count, 0)
            elapsed = max(time.monotonic() - started, 1e-6)
            progress.update(
                task,
                advance=1,
                rate=f"{progress.tasks[0].completed / elapsed:.1f} docs/s, {chunks / elapsed:.0f} chunks/s",
            )
    failures.sort()
    elapsed = time.monotonic() - started
    done = sum(counts.values()) + len(failures)
    of = f"{done} of {len(files)}" if done < len(files) else f"{len(files)}"
    err.print(
        f"ingested {of} files in {elapsed:.1f} s: {counts['created']} new, {counts['updated']} "
        f"updated, {counts['unchanged']} unchanged, {len(failures)} failed; {chunks} chunks written",
        highlight=False,
    )
    for file, reason in failures:
        # File names and reasons are shown as they are, brackets included, not read as markup.
        err.print(
            f"  [red]failed[/red] {escape(_displayable(str(file)))}: {escape(_displayable(reason))}",
            highlight=False,
        )
    if stopped is not None:
        err.print("run the same command again to resume: finished files are skipped as unchanged")
        raise stopped
    return 1 if failures else 0


def _passage_dict(p: common_pb2.Passage) -> dict[str, Any]:
    return MessageToDict(p, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


def cmd_search(args: argparse.Namespace, settings: LauncherSettings) -> int:
    stack = _stack(settings)
    token = _token(stack, args.user, args.password)
    target = stack.endpoint("retrieval")
    stub = retrieval_pb2_grpc.RetrievalServiceStub(open_channel(target))
    try:
        reply = stub.Search(
            retrieval_pb2.SearchRequest(query=args.query, top_k=args.top_k),
            metadata=bearer(token),
            timeout=30,
        )
    except grpc.RpcError as exc:
        raise _rpc_error(exc, "retrieval", target) from exc
    if args.json:
        print(json.dumps({"hits": [_passage_dict(p) for p in reply.passages]}, indent=2))
        return 0
    if not reply.passages:
        console.print("no passages you may read match this query")
        return 0
    table = Table("#", "score", "title", "section", "why you can see it", "uri")
    for i, p in enumerate(reply.passages, 1):
        table.add_row(str(i), f"{p.score:.3f}", p.title, " > ".join(p.heading_path), p.access_reason, p.uri)
    console.print(table)
    return 0


def cmd_explain(args: argparse.Namespace, settings: LauncherSettings) -> int:
    stack = _stack(settings)
    token = _token(stack, args.user, args.password)
    target = stack.endpoint("retrieval")
    stub = retrieval_pb2_grpc.RetrievalServiceStub(open_channel(target))
    try:
        reply = stub.ExplainAccess(
            retrieval_pb2.ExplainAccessRequest(document_id=args.document_id, username=args.for_user or ""),
            metadata=bearer(token),
            timeout=30,
        )
    except grpc.RpcError as exc:
        raise _rpc_error(exc, "retrieval", target) from exc
    if args.json:
        print(
            json.dumps(
                MessageToDict(
                    reply, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
                ),
                indent=2,
            )
        )
        return 0
    who = args.for_user or args.user
    console.print(f"[bold]{reply.title}[/bold]  [dim]{reply.uri} ({reply.classification})[/dim]")
    if reply.allowed:
        console.print(f"[green]{who} may read it[/green], granted by: {', '.join(reply.granted_by)}")
    else:
        console.print(f"[red]{who} may not read it[/red]")
    if reply.groups_unknown:
        console.print(
            f"[yellow]only user:{who} and everyone were checked; {who}'s groups come from the identity "
            "provider and may still grant access[/yellow]"
        )
    if reply.acl:
        console.print(f"document ACL: {', '.join(reply.acl)}")
    return 0


def _stream_answer(
    stub: generation_pb2_grpc.GenerationServiceStub,
    request: generation_pb2.AnswerRequest,
    token: str,
    on_delta: Callable[[str], None],
    on_tool: Callable[[generation_pb2.ToolCall], None] = lambda _call: None,
) -> generation_pb2.AnswerFinal:
    final = None
    responses: Iterator[generation_pb2.AnswerResponse] = stub.Answer(
        request, metadata=bearer(token), timeout=900
    )
    for response in responses:
        if response.HasField("final"):
            final = response.final
        elif response.HasField("tool_call"):
            on_tool(response.tool_call)
        else:
            on_delta(response.delta)
    if final is None:
        raise CliError("the answer stream ended without its final message")
    return final


def cmd_ask(args: argparse.Namespace, settings: LauncherSettings) -> int:
    if not args.question.strip():
        raise CliError("the question is empty")
    stack = _stack(settings)
    token = _token(stack, args.user, args.password)
    target = stack.endpoint("generation")
    stub = generation_pb2_grpc.GenerationServiceStub(open_channel(target))
    request = generation_pb2.AnswerRequest(
        question=args.question,
        conversation_id=args.conversation or "",
        top_k=args.top_k,
        model=args.model,
        use_tools=args.tools,
    )
    tool_calls: list[generation_pb2.ToolCall] = []

    def echo(delta: str) -> None:
        if not args.json:
            sys.stdout.write(delta)
            sys.stdout.flush()

    def show_tool(call: generation_pb2.ToolCall) -> None:
        from rich.markup import escape

        tool_calls.append(call)
        if not args.json:
            mark = "[red]failed:[/red] " if call.failed else ""
            err.print(f"[dim]tool {call.name} {escape(call.arguments)}: {mark}{escape(call.result)}[/dim]")

    try:
        final = _stream_answer(stub, request, token, echo, show_tool)
    except grpc.RpcError as exc:
        raise _rpc_error(exc, "generation", target) from exc
    if args.json:
        print(
            json.dumps(
                {
                    "interaction_id": final.interaction_id,
                    "answer": final.answer,
                    "refused": final.refused,
                    "model": final.model,
                    "sources": [{"number": c.number, **_passage_dict(c.passage)} for c in final.citations],
                    "conversation_id": final.conversation_id,
                    "tool_calls": [MessageToDict(c, preserving_proto_field_name=True) for c in tool_calls],
                    "sentences": [
                        MessageToDict(c, preserving_proto_field_name=True) for c in final.sentences
                    ],
                },
                indent=2,
            )
        )
        return 0
    print()
    if final.citations:
        console.print("\n[bold]Sources[/bold]")
        for c in final.citations:
            console.print(f"  {_source_line(c)}")
    checks = doubtful_sentence_lines(final)
    if checks:
        console.print(
            "\n[yellow]Check these sentences: what they cite does not clearly support them[/yellow]"
        )
        for line in checks:
            console.print(line)
    if final.conversation_id and not final.refused:
        console.print(f"[dim]follow up with --conversation {final.conversation_id}[/dim]")
    return 0


def doubtful_sentence_lines(final: generation_pb2.AnswerFinal) -> list[str]:
    """The sentences of an answer a reader should check, each with the sources that do support it.

    An uncited sentence is listed only when a source supports it; otherwise it is the model's own framing
    ("Here is what I found")."""
    lines = []
    for check in final.sentences:
        uncited = check.verdict == generation_pb2.SUPPORT_VERDICT_UNCITED
        if not (check.verdict in _DOUBTFUL or (uncited and check.supported_by)):
            continue
        verdict = generation_pb2.SupportVerdict.Name(check.verdict).removeprefix("SUPPORT_VERDICT_").lower()
        score = "" if uncited else f", support {check.support:.2f}"
        lines.append(f"  ({verdict}{score}) {check.text}")
        label = "supported by" if uncited else "supported instead by"
        lines += [f"    [dim]{label}[/dim] {_source_line(source)}" for source in check.supported_by]
    return lines


def _source_line(citation: generation_pb2.Citation) -> str:
    p = citation.passage
    where = f", page {p.page}" if p.page else ""
    # Parsers start the heading path with the title; don't say it twice.
    headings = [h for h in p.heading_path if h != p.title]
    section = f" > {' > '.join(headings)}" if headings else ""
    return f"[{citation.number}] {p.title}{section}{where}  [dim]{p.uri} (score {p.score:.2f})[/dim]"


def cmd_flags(args: argparse.Namespace, settings: LauncherSettings) -> int:
    stack = _stack(settings)
    token = _token(stack, args.user, args.password)
    target = stack.endpoint("monitor")
    stub = monitor_pb2_grpc.MonitorServiceStub(open_channel(target))
    try:
        reply = stub.ListFlags(
            monitor_pb2.ListFlagsRequest(limit=args.limit), metadata=bearer(token), timeout=30
        )
    except grpc.RpcError as exc:
        raise _rpc_error(exc, "monitor", target) from exc
    if args.json:
        print(
            json.dumps(
                {"flags": [MessageToDict(f, preserving_proto_field_name=True) for f in reply.flags]}, indent=2
            )
        )
        return 0
    if not reply.flags:
        console.print("no flags yet")
        return 0
    table = Table("when", "severity", "detector", "reason", "question", "evidence")
    for f in reply.flags:
        # The flagged answer is only what was sent before the caller cancelled.
        reason = f.reason + (" [yellow]interrupted[/yellow]" if f.interrupted else "")
        table.add_row(
            f.created_at.ToDatetime().strftime("%H:%M:%S"),
            SEVERITY.get(f.severity, "?"),
            f.detector,
            reason,
            f.question[:60],
            "; ".join(f.evidence)[:60],
        )
    console.print(table)
    return 0


def cmd_eval(args: argparse.Namespace, settings: LauncherSettings) -> int:
    from services.evaluation.cli import run

    return run(args, settings)


def cmd_review(args: argparse.Namespace, settings: LauncherSettings) -> int:
    if args.action == "export" and not args.out:
        raise CliError("review export needs --out FILE")
    stack = _stack(settings)
    token = _token(stack, args.user, args.password)
    target = stack.endpoint("monitor")
    stub = monitor_pb2_grpc.MonitorServiceStub(open_channel(target))
    try:
        if args.action == "export":
            reply = stub.ExportAdjudicated(
                monitor_pb2.ExportAdjudicatedRequest(detector=args.detector, batch=args.batch),
                metadata=bearer(token),
                timeout=120,
            )
        else:
            listed = stub.ListReviewItems(
                monitor_pb2.ListReviewItemsRequest(
                    detector=args.detector, batch=args.batch, limit=args.limit, overdue_only=args.overdue
                ),
                metadata=bearer(token),
                timeout=30,
            )
    except grpc.RpcError as exc:
        raise _rpc_error(exc, "monitor", target) from exc
    if args.action == "export":
        lines = [json.dumps(_regression_case(c), ensure_ascii=False) for c in reply.cases]
        try:
            Path(args.out).write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        except OSError as exc:
            raise CliError(f"cannot write {args.out}: {exc.strerror}") from exc
        err.print(f"wrote {len(lines)} regression cases to {args.out}")
        return 0
    table = Table("due", "state", "detector", "severity", "question", "item")
    for item in listed.items:
        state = monitor_pb2.ReviewState.Name(item.state).removeprefix("REVIEW_STATE_").lower()
        due = item.due_at.ToDatetime().strftime("%m-%d %H:%M")
        if item.overdue:
            due += " [red]overdue[/red]"
        severity = SEVERITY.get(item.severity, "-")
        # The answer under review is only what was sent before the caller cancelled.
        item_id = item.item_id + (" [yellow]interrupted[/yellow]" if item.interrupted else "")
        table.add_row(due, state, item.detector, severity, item.question[:60], item_id)
    console.print(table)
    console.print(f"{len(listed.items)} of {listed.total} items")
    return 0


def _regression_case(case: monitor_pb2.RegressionCase) -> dict[str, Any]:
    verdict = monitor_pb2.ReviewVerdict.Name(case.final_verdict).removeprefix("REVIEW_VERDICT_").lower()
    return {
        "question": case.question,
        "answer": case.answer,
        "passages": [_passage_dict(p) for p in case.passages],
        "detector": case.detector,
        "final_verdict": verdict,
        "reviewer_notes": list(case.reviewer_notes),
        "item_id": case.item_id,
        "interaction_id": case.interaction_id,
        "batch": case.batch,
        "criteria": case.criteria,
        "reason": case.reason,
        "resolved_at": case.resolved_at.ToJsonString(),
        "interrupted": case.interrupted,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="copilot", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start the local stack (broker, identity, store, four services)")
    sub.add_parser("down", help="stop the local stack")
    sub.add_parser("status", help="show each component and whether it serves")
    sub.add_parser("users", help="list the sample users and their groups")

    def identity(p: argparse.ArgumentParser, default_user: str | None) -> None:
        p.add_argument("--user", required=default_user is None, default=default_user, help="who is asking")
        p.add_argument("--password", default=None, help="defaults to the dev users file, else a prompt")

    p = sub.add_parser("ingest", help="ingest a file or folder")
    p.add_argument("path")
    p.add_argument("--groups", help="comma-separated groups for files without an access.yaml")
    p.add_argument("--users", help="comma-separated users for files without an access.yaml")
    p.add_argument(
        "--public", action="store_true", help="files without an access.yaml are readable by everyone"
    )
    p.add_argument(
        "--parallel",
        type=_parallel_requests,
        default=DEFAULT_PARALLEL_INGESTS,
        help=f"documents in flight at once (default {DEFAULT_PARALLEL_INGESTS})",
    )
    identity(p, "ops")

    p = sub.add_parser("search", help="search the passages you may read")
    p.add_argument("query")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--json", action="store_true")
    identity(p, None)

    p = sub.add_parser("explain", help="why you (or, for auditors, another user) may read a document")
    p.add_argument("document_id")
    p.add_argument("--for", dest="for_user", default="", help="explain for this user (auditors only)")
    p.add_argument("--json", action="store_true")
    identity(p, None)

    p = sub.add_parser("ask", help="ask a question; streams a cited answer")
    p.add_argument("question")
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--conversation", default="")
    p.add_argument("--model", default="", help="answer with this model (default: the server's)")
    p.add_argument(
        "--tools", action="store_true", help="let the model search documents and query the database first"
    )
    p.add_argument("--json", action="store_true")
    identity(p, None)

    p = sub.add_parser("flags", help="list what the monitor flagged")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true")
    identity(p, "ops")

    p = sub.add_parser("review", help="the review queue: list items, export adjudicated regression cases")
    p.add_argument("action", choices=["list", "export"])
    p.add_argument("--out", help="JSONL file for export")
    p.add_argument("--detector", default="")
    p.add_argument("--batch", default="", help="evaluation batch")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--overdue", action="store_true", help="only items past their due time")
    identity(p, "ops")

    from services.evaluation.cli import add_arguments as add_eval_arguments

    p = sub.add_parser("eval", help="evaluate answers per role, compare variants, gate regressions")
    add_eval_arguments(p)
    return parser


COMMANDS: dict[str, Callable[[argparse.Namespace, LauncherSettings], int]] = {
    "up": cmd_up,
    "down": cmd_down,
    "status": cmd_status,
    "users": cmd_users,
    "ingest": cmd_ingest,
    "search": cmd_search,
    "explain": cmd_explain,
    "ask": cmd_ask,
    "flags": cmd_flags,
    "review": cmd_review,
    "eval": cmd_eval,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = LauncherSettings()
    try:
        return COMMANDS[args.command](args, settings)
    except CliError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        return 2
    except RuntimeError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
