"""The engine as a Ray Serve deployment, and an Engine that calls it through a handle.

Serve owns the replica's life: it restarts one whose health check fails and lets the engine scale to
more replicas or GPUs without changing the callers, who see only the Engine interface.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import ray
from ray import serve
from ray.exceptions import RayActorError, RayTaskError
from ray.serve.handle import DeploymentHandle, DeploymentResponseGenerator
from ray.serve.schema import ApplicationStatus

from copilot.errors import DependencyUnavailable
from services.generation.engine import (
    ChatMessage,
    GenerationParams,
    LlamaCppVocabulary,
    PromptTooLong,
    TokenDelta,
    build_engine,
)
from services.generation.models import get_model_spec, resolve_model_file

# One Serve application per model, named APP_NAME-<model>.
APP_NAME = "copilot-generation"
# How long a unary call (info, count_tokens) may take; they never wait for generation.
CALL_TIMEOUT_S = 60.0
# Token counts kept per text: the rules and the example never change and popular passages recur, so most
# of a prompt is counted once.
COUNT_CACHE_ENTRIES = 4096
# llama.cpp runs one generation at a time (the engine queues the rest); the extra slots keep
# count_tokens and health checks answering while a long answer is being written.
_MAX_ONGOING = {"llama_cpp": 8, "vllm": 256}


class EngineStartError(RuntimeError):
    pass


@serve.deployment(
    num_replicas=1,
    health_check_period_s=10,
    health_check_timeout_s=30,
    # A constructor that fails (missing model, out of memory) fails the same way again.
    max_constructor_retry_count=1,
)
class EngineDeployment:
    def __init__(self, kind: str, model: str, cache_dir: str, threads: int, context_tokens: int) -> None:
        self._engine = build_engine(kind, model, Path(cache_dir), threads, context_tokens)
        self._failure: str | None = None

    def info(self) -> dict[str, Any]:
        return {"model_name": self._engine.model_name, "context_tokens": self._engine.context_tokens}

    def count_tokens(self, text: str) -> int:
        return self._engine.count_tokens(text)

    def count_tokens_many(self, texts: list[str]) -> list[int]:
        return self._engine.count_tokens_many(texts)

    async def stream_chat(
        self, messages: list[dict[str, str]], params: dict[str, Any]
    ) -> AsyncIterator[dict[str, Any]]:
        chat = [ChatMessage(role=m["role"], content=m["content"]) for m in messages]
        options = GenerationParams(
            max_tokens=int(params["max_tokens"]),
            temperature=float(params["temperature"]),
            stop=tuple(params["stop"]),
            json_schema=params.get("json_schema"),
        )
        # The engine runs on its own thread. Serve cannot interrupt a plain generator when the caller
        # goes away, and it would run the answer to the end while holding the engine; this one stops
        # at the next token and frees the engine for the requests waiting on it.
        loop = asyncio.get_running_loop()
        deltas: asyncio.Queue[TokenDelta | BaseException | None] = asyncio.Queue()
        stop = threading.Event()

        def produce() -> None:
            tokens = self._engine.stream_chat(chat, options)
            try:
                for delta in tokens:
                    if stop.is_set():
                        break
                    loop.call_soon_threadsafe(deltas.put_nowait, delta)
            except BaseException as error:  # raised again on the request's side
                loop.call_soon_threadsafe(deltas.put_nowait, error)
            finally:
                # Closing releases the engine now, not whenever the generator is collected.
                if isinstance(tokens, Generator):
                    tokens.close()
                loop.call_soon_threadsafe(deltas.put_nowait, None)

        threading.Thread(target=produce, name="engine-stream", daemon=True).start()
        try:
            while (item := await deltas.get()) is not None:
                if isinstance(item, ValueError):
                    raise item  # the request was bad (a prompt too long); the engine is fine
                if isinstance(item, BaseException):
                    # Anything else may have left the engine broken: the health check replaces the replica.
                    self._failure = f"{type(item).__name__}: {item}"
                    raise item
                yield dataclasses.asdict(item)
        finally:
            stop.set()

    def check_health(self) -> None:
        if self._failure is not None:
            raise RuntimeError(f"engine failed: {self._failure}")
        self._engine.count_tokens("health")


class RayServeEngine:
    """An Engine whose model runs in a Ray Serve replica, on a Ray cluster private to this process."""

    def __init__(
        self,
        handle: DeploymentHandle,
        model: str,
        shutdown: Callable[[], None],
        vocabulary: LlamaCppVocabulary | None = None,
    ) -> None:
        self._handle = handle
        self._app_name = app_name(model)
        self._shutdown = shutdown
        # Counts tokens here when the model's tokenizer can be loaded without its weights; else the replica.
        self._vocabulary = vocabulary
        self._counts: OrderedDict[str, int] = OrderedDict()
        self._counts_lock = threading.Lock()
        # The catalog name, which is also the name the engine reports.
        self.model_name = model
        self.context_tokens: int = self.info()["context_tokens"]

    @classmethod
    def start(
        cls,
        kind: str,
        model: str,
        cache_dir: Path,
        threads: int,
        context_tokens: int,
        start_timeout_s: float = 180,
        ray_temp_dir: Path | None = None,
    ) -> RayServeEngine:
        """One model; ``shutdown`` stops Ray."""
        (engine,) = start_engines(
            kind, [model], cache_dir, threads, context_tokens, start_timeout_s, ray_temp_dir
        ).values()
        return engine

    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = self._call(self._handle.info.remote)
        return info

    def count_tokens(self, text: str) -> int:
        [count] = self.count_tokens_many([text])
        return count

    def count_tokens_many(self, texts: Sequence[str]) -> list[int]:
        distinct = list(dict.fromkeys(texts))
        with self._counts_lock:
            known = {t: self._counts[t] for t in distinct if t in self._counts}
            for t in known:
                self._counts.move_to_end(t)
        missing = [t for t in distinct if t not in known]
        if missing:
            counted: list[int] = (
                self._vocabulary.count_tokens_many(missing)
                if self._vocabulary is not None
                else self._call(self._handle.count_tokens_many.remote, missing)
            )
            known.update(zip(missing, counted, strict=True))
            with self._counts_lock:
                self._counts.update(zip(missing, counted, strict=True))
                while len(self._counts) > COUNT_CACHE_ENTRIES:
                    self._counts.popitem(last=False)
        return [known[t] for t in texts]

    def stream_chat(self, messages: Sequence[ChatMessage], params: GenerationParams) -> Iterator[TokenDelta]:
        deltas = cast(
            DeploymentResponseGenerator,
            self._handle.options(stream=True).stream_chat.remote(
                [dataclasses.asdict(m) for m in messages], dataclasses.asdict(params)
            ),
        )
        try:
            for delta in deltas:
                yield TokenDelta(**delta)
        except RayTaskError as error:
            # The engine raised: a request too long for the context is the caller's to fix; after
            # anything else the replica reports itself unhealthy, and Serve replaces it.
            if isinstance(error.cause, PromptTooLong):
                raise error.cause from None
            raise DependencyUnavailable(
                f"model {self.model_name} failed while answering ({type(error.cause).__name__}: "
                f"{error.cause}); retry shortly"
            ) from error
        except RayActorError as error:
            raise DependencyUnavailable(
                f"model {self.model_name}'s engine died while answering; it is being restarted, retry shortly"
            ) from error
        finally:
            # A caller that stops reading (a client gone) frees its slot in the replica.
            deltas.cancel()

    def healthy(self) -> bool:
        """True while the model's application runs with all its replicas healthy."""
        app = serve.status().applications.get(self._app_name)
        return app is not None and app.status == ApplicationStatus.RUNNING

    def shutdown(self) -> None:
        """Stops every model started with this one, and Ray if they started it."""
        self._shutdown()

    def _call(self, method: Callable[..., Any], *args: Any) -> Any:
        try:
            return method(*args).result(timeout_s=CALL_TIMEOUT_S)
        except (RayActorError, TimeoutError) as error:
            raise DependencyUnavailable(
                f"model {self.model_name} is not answering ({type(error).__name__}); retry shortly"
            ) from error


def start_engines(
    kind: str,
    models: Sequence[str],
    cache_dir: Path,
    threads: int,
    context_tokens: int,
    start_timeout_s: float = 180,
    ray_temp_dir: Path | None = None,
) -> dict[str, RayServeEngine]:
    """One Serve application per model, on a Ray cluster this process starts unless one is running.

    Calling ``shutdown`` on any of the engines stops them all.
    """
    if kind not in _MAX_ONGOING:
        raise ValueError(f"unknown engine kind {kind!r}; expected one of {', '.join(_MAX_ONGOING)}")
    if not models:
        raise ValueError("no model to serve")
    deadline = time.monotonic() + start_timeout_s
    vocabularies: dict[str, LlamaCppVocabulary] = {}
    if kind == "llama_cpp":
        # Fails here, with the pip command, rather than deep in a replica's log; and joins a split
        # model once, before the replica needs it.
        for model in models:
            vocabularies[model] = LlamaCppVocabulary(resolve_model_file(get_model_spec(model), cache_dir))
    # RAY_AUTH_MODE is deliberately left to Ray: its GCS and raylet listen on every interface, and
    # without a token anyone who can reach this host could run code in the cluster. When the variable
    # is unset, Ray 2.60 turns token auth on for a new local cluster (token in ~/.ray/auth_token) and
    # refreshes its cached config; setting RAY_AUTH_MODE=token from here, after ray is imported,
    # would skip that refresh and the driver could not talk to its own GCS.
    owns_ray = not ray.is_initialized()
    names = [app_name(m) for m in models]
    if owns_ray:
        ray.init(
            address="local",
            # Logical CPUs: each replica reserves ``threads``; the models share the real cores, and
            # llama.cpp runs one answer at a time in each.
            num_cpus=max(threads * len(models), os.cpu_count() or 1),
            object_store_memory=512 * 2**20,
            include_dashboard=False,
            # Two clusters sharing /tmp/ray (two stacks, or a stack and a test) find each
            # other's session files and fail to start; each stack gets its own directory.
            _temp_dir=str(ray_temp_dir) if ray_temp_dir else None,
            # Ray starts its workers at niceness 15. The replicas are this service's main work: niced,
            # every other busy process on the host slowed answers several times over.
            _system_config={"worker_niceness": 0},
        )

    def shutdown() -> None:
        _stop(owns_ray, names)

    try:
        # No HTTP proxy: the gRPC service reaches the engines only through their handles.
        serve.start(proxy_location="Disabled")
        targets = [
            serve.RunTarget(
                EngineDeployment.options(  # type: ignore[attr-defined]
                    max_ongoing_requests=_MAX_ONGOING[kind],
                    ray_actor_options={"num_cpus": threads, "num_gpus": 1 if kind == "vllm" else 0},
                ).bind(kind, model, str(cache_dir.resolve()), threads, context_tokens),
                name=name,
                route_prefix=None,
            )
            for model, name in zip(models, names, strict=True)
        ]
        # Not serve.run: it waits without a limit, and retries a failing constructor meanwhile.
        handles = serve.run_many(targets, wait_for_applications_running=False)
        for name in names:
            _wait_until_running(name, deadline, start_timeout_s)
        return {
            model: RayServeEngine(handle, model, shutdown, vocabularies.get(model))
            for model, handle in zip(models, handles, strict=True)
        }
    except BaseException:
        shutdown()
        raise


def app_name(model: str) -> str:
    return f"{APP_NAME}-{model}"


def _wait_until_running(name: str, deadline: float, timeout_s: float) -> None:
    while True:
        app = serve.status().applications.get(name)
        state = app.status if app is not None else ApplicationStatus.NOT_STARTED
        if state == ApplicationStatus.RUNNING:
            return
        if app is not None and state in (ApplicationStatus.DEPLOY_FAILED, ApplicationStatus.UNHEALTHY):
            # A replica's message is the constructor's whole traceback; its last line says what went wrong.
            reasons = [
                d.message.strip().splitlines()[-1] for d in app.deployments.values() if d.message.strip()
            ]
            why = "; ".join(reasons) or app.message
            raise EngineStartError(f"the generation engine {name} failed to start ({state.value}): {why}")
        if time.monotonic() >= deadline:
            raise EngineStartError(
                f"the generation engine {name} did not start within {timeout_s:.0f} s "
                f"(still {state.value}); loading the model may need more time or more memory"
            )
        time.sleep(0.5)


def _stop(owns_ray: bool, names: Sequence[str]) -> None:
    # Leaves a Ray cluster that someone else started running, minus our Serve applications.
    if ray.is_initialized():
        if owns_ray:
            serve.shutdown()
            ray.shutdown()
        else:
            for name in names:
                serve.delete(name)
