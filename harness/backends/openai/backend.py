"""OpenAI-compatible APIs (OpenAI, vLLM, SGLang, TGI, llama.cpp) through the official client.

How requests map onto the API:
- generation: a text prompt goes to ``/v1/completions``, a chat prompt (``*.chat.jinja``,
  demonstrations as alternating turns) to ``/v1/chat/completions``; ``endpoint: chat``
  sends text prompts as one user message instead.
- log-likelihood: ``/v1/completions`` with ``echo`` + ``logprobs`` + ``max_tokens: 1``
  returns the prompt's token logprobs; the continuation's tokens are those that end after
  the context (character offsets), so trailing context spaces count with the continuation,
  as in the HF backend. One prompt per request (some servers fail on lists).
- where that is impossible (chat prompts, servers without prompt logprobs) the backend
  raises a clear error, or with ``mc_fallback: generate`` asks for the answer letter.

The runner calls ``loglikelihood``/``generate`` synchronously per chunk; the backend's own
event loop (a daemon thread, one client per server for the backend's life) sends the chunk with
bounded, adaptive concurrency and retries (``ratelimit``), spread over one or many servers
(``base_url`` a list, ``--base-url`` repeated: ``endpoints``), and the results come back in
request order. The API key is handed to the client only: it is not in
the identity (cache keys, DB), and every error message is scrubbed of it.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from harness.backends.base import Backend, Capabilities, ModelSpec
from harness.backends.openai.endpoints import SERVER_FAULTS, Endpoint, EndpointPool
from harness.backends.openai.mc_fallback import choice_logprobs, parse_choice, question_prompt
from harness.backends.openai.options import OpenAIOptions, openai_options
from harness.backends.openai.ratelimit import CallStats, RetryPolicy, parse_retry_after
from harness.backends.stops import truncate_at_stop
from harness.core.deps import require
from harness.core.errors import HarnessError
from harness.core.redaction import RedactingFilter, mapping_secrets, redact_logs, redact_mapping, redact_text, redact_url, unredact_logs, url_secrets
from harness.prompts.messages import Prompt
from harness.requests import GenerateRequest, GenerateResult, LoglikelihoodRequest, LoglikelihoodResult

OPENAI_URL = "https://api.openai.com/v1"
UNREACHABLE_S = 3.0  # refused connections, before any server has answered, for this long: the URL is wrong or nothing runs there
T = TypeVar("T")


class MalformedResponse(Exception):
    """A body that parsed but lacks what the request must return (retried like a 5xx)."""


class NoPromptLogprobs(Exception):
    """The server answered but returned no prompt logprobs: echo is unsupported there."""


@dataclass(frozen=True)
class Outcome:
    """One attempt on one endpoint: its value, or why it failed (retryable)."""

    endpoint: Endpoint
    value: Any = None
    latency_s: float = 0.0
    failure: tuple[str, BaseException] | None = None
    retry_after: float | None = None


def resolve_base_urls(spec: ModelSpec) -> list[str]:
    """The servers: ``base_url`` (one or a list) from the spec, else ``$OPENAI_BASE_URL``, else
    OpenAI; each normalised, with its query (sent with every request) and without any
    user:password part (never sent: the key goes in the Authorization header). The same server
    twice is refused: it would silently double its concurrency."""
    urls: list[str] = []
    for raw in given_urls(spec):
        url = normalise_url(raw)
        if redact_url(url) in map(redact_url, urls):
            raise HarnessError(f"--base-url {redact_url(url)!r} is given twice; name each server once (--concurrency is per server)")
        urls.append(url)
    return urls


def given_urls(spec: ModelSpec) -> list[str]:
    """The URLs as the user gave them (``base_url``, ``$OPENAI_BASE_URL`` or OpenAI's)."""
    given = openai_options(spec).base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_URL
    return [given] if isinstance(given, str) else list(given)


def normalise_url(raw: str) -> str:
    """``raw`` stripped of spaces, a trailing '/', a fragment and its user:password; refused unless
    it is http(s) with a host (and a numeric port, if any)."""
    raw = raw.strip().rstrip("/")
    shown = redact_text(redact_url(raw), limit=200)
    example = "(e.g. http://127.0.0.1:8000/v1)"
    try:
        parts = urlsplit(raw)
    except ValueError:
        raise HarnessError(f"--base-url {shown!r} is not a URL {example}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HarnessError(f"--base-url {shown!r} is not an http(s) URL with a host {example}")
    try:
        port = parts.port
    except ValueError:
        raise HarnessError(f"--base-url {shown!r} has a port that is not a number from 1 to 65535 {example}") from None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return urlunsplit((parts.scheme, host + (f":{port}" if port else ""), parts.path.rstrip("/"), parts.query, ""))


def client_url(url: str) -> tuple[str, dict[str, str]]:
    """The client's base URL and the query it sends with every request: the client appends the
    path to the base URL as a string, so a query left in it would end up in the path."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")), dict(parse_qsl(parts.query, keep_blank_values=True))


def secrets_of(options: OpenAIOptions, key: str, urls: Sequence[str]) -> list[str]:
    """Every credential the backend was given, to scrub from messages: the key, credential-named
    headers and parameters, and what the URLs hold (user:password, ``?api-key=``)."""
    return [key, *mapping_secrets(options.extra_headers), *mapping_secrets(options.extra_params), *[s for u in urls for s in url_secrets(u)]]


def official_api_key(spec: ModelSpec) -> str:
    """The API key, refused when missing for OpenAI's own API (local servers take any)."""
    options = openai_options(spec)
    key = os.environ.get(options.api_key_env, "")
    if not key and any(urlsplit(u).hostname == urlsplit(OPENAI_URL).hostname for u in resolve_base_urls(spec)):
        raise HarnessError(
            f"model '{spec.label}': no API key for {OPENAI_URL}: set ${options.api_key_env} (api_key_env in the model's entry names "
            "another variable), or give --base-url for a local server"
        )
    return key


def redact(text: str, secrets: Sequence[str], limit: int | None = None) -> str:
    """``text`` without the secrets (and anything that looks like one), then cut to ``limit``."""
    return redact_text(text, secrets, limit)


class OpenAIBackend(Backend):
    options_model = OpenAIOptions

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        require("openai", "openai")
        options = self.options = openai_options(spec)
        self._urls = resolve_base_urls(spec)  # as sent (their queries may hold a key); shown and stored: redact_url
        self.base_urls = [redact_url(u) for u in self._urls]
        self.base_url = ", ".join(self.base_urls)
        key = official_api_key(spec)
        self._key = key or "EMPTY"  # local servers ignore the key, the client insists on one
        self._secrets = secrets_of(options, key, given_urls(spec))
        self.policy = RetryPolicy(max_retries=options.max_retries, deadline_s=options.max_retry_time_s)
        self.call_stats = CallStats()
        self.pool = EndpointPool(self.base_urls, options.concurrency, self.call_stats)
        self._answered = False  # some server has answered once: connection errors are then outages, not a wrong URL
        self._rng = random.Random(0)  # jitter only; answers never depend on it
        self._echo_supported: bool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._bound = False
        self._log_filter: RedactingFilter | None = None

    # -- identity -----------------------------------------------------------------
    @classmethod
    def identity_of(cls, spec: ModelSpec) -> dict[str, Any]:
        """What changes answers: server (URL, its query such as Azure's api-version), served model
        name, endpoint choice, extra request parameters (sampling settings, ``seed``...), the
        multiple-choice fallback, and ``revision`` when the user declares one. One server is its
        URL (as before lists existed, so old caches still hit); several are their sorted URLs: which
        replica answered a request is not recorded, the set of replicas is.

        Never a secret: not the key, no header values (any header may carry a credential: only
        the header *names* are kept), no user:password in the URL, and query values whose name
        looks like a credential are masked. A remote server's weights cannot be fingerprinted
        from here (and a fully cached run must not need the server), so a server that starts
        serving other weights under the same name and URL is the same identity: declare the
        change with ``revision:`` (or use ``--new`` / ``harness cache clear``).
        """
        options = openai_options(spec)
        urls = [redact_url(url) for url in resolve_base_urls(spec)]
        identity: dict[str, Any] = {
            "backend": "openai", "model": spec.model, "base_url": urls[0] if len(urls) == 1 else sorted(urls), "endpoint": options.endpoint,
            "extra_params": redact_mapping(options.extra_params), "mc_fallback": options.mc_fallback,
        }
        if spec.revision:
            identity["revision"] = spec.revision
        if options.extra_headers:
            identity["header_names"] = sorted(name.lower() for name in options.extra_headers)
        return identity

    @classmethod
    def capabilities(cls, spec: ModelSpec, *, chat: bool) -> Capabilities:
        """What the endpoint choice allows (whether a server returns prompt logprobs is only known
        once asked, see ``loglikelihood``):

        - ``endpoint: completions`` takes text only;
        - log-likelihoods come from echoed prompt logprobs of ``/v1/completions``: chat prompts (a
          chat template, or any prompt with ``endpoint: chat``) have none, so multiple choice needs
          ``mc_fallback: generate`` there;
        - per-choice contexts need a log-likelihood per (context, continuation): the fallback shows
          one context and lists the choices under it, so it cannot put them, and is refused.

        Asked at planning, so a missing key for OpenAI's API is refused here, before a run is made."""
        options = openai_options(spec)
        official_api_key(spec)
        why: dict[str, str] = {}
        takes = not (chat and options.endpoint == "completions")
        if not takes:
            why["prompt"] = ("is set to endpoint: completions, which takes text only; use endpoint auto or chat, "
                             "or a plain-text template (*.jinja)")
        via = "endpoint: chat" if options.endpoint == "chat" else "a *.chat.jinja template"
        scores = not chat and options.endpoint != "chat"
        if not scores:
            why["loglikelihood"] = (
                f"would get chat prompts ({via}), which have no prompt log-probabilities; use a plain-text template (*.jinja) with "
                "endpoint auto or completions against a server that supports echo, or allow the generate-and-parse fallback with "
                "'mc_fallback: generate' in the model's entry of the experiment file (parse failures are counted)"
            )
        fallback = options.mc_fallback == "generate"
        if fallback:
            why["per_choice_contexts"] = (
                "allows the generate-and-parse fallback (mc_fallback: generate), which shows one context and asks for an option "
                "letter: it cannot express choices that differ in their context. Use a plain-text template against a completions "
                "server that returns prompt log-probabilities (echo + logprobs), with mc_fallback: error"
            )
        elif not scores:
            why["per_choice_contexts"] = (
                f"would get chat prompts ({via}), which have no prompt log-probabilities to score each choice's context by; "
                "use a plain-text template (*.jinja) and endpoint auto or completions"
            )
        return Capabilities(prompt=takes, loglikelihood=scores, mc_fallback=fallback, per_choice_contexts=scores and not fallback, why=why)

    def stats(self) -> dict[str, Any]:
        stats = self.call_stats.as_dict()
        if self.pool.many:
            stats["endpoints"] = self.pool.report(redact_url)
        return stats

    # -- plumbing -------------------------------------------------------------------
    def _run(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run one chunk on the backend's own event loop (a daemon thread), so the client and
        its connection pool live as long as the backend, and callers that already run a loop
        (notebooks) are not disturbed."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, name="openai-backend", daemon=True)
            self._thread.start()

        async def main() -> T:
            if not self._bound:
                from openai import AsyncOpenAI, Timeout

                self.pool.bind()
                self._log_filter = redact_logs(self._secrets)  # httpx logs each request's URL (with its query) at info level
                timeout = Timeout(self.options.timeout_s, connect=min(self.options.connect_timeout_s, self.options.timeout_s))
                for endpoint, url in zip(self.pool.endpoints, self._urls):
                    base, query = client_url(url)
                    endpoint.client = AsyncOpenAI(
                        api_key=self._key, base_url=base, timeout=timeout, max_retries=0,
                        default_headers=self.options.extra_headers or None, default_query=query or None,
                    )
                self._bound = True
            return await make()

        return asyncio.run_coroutine_threadsafe(main(), self._loop).result()

    def close(self) -> None:
        if self._loop is None:
            return
        for endpoint in self.pool.endpoints:
            if endpoint.client is not None:
                asyncio.run_coroutine_threadsafe(endpoint.client.close(), self._loop).result(timeout=10)
                endpoint.client = None
        self._bound = False
        if self._log_filter is not None:
            unredact_logs(self._log_filter)
            self._log_filter = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._loop.close()
        self._loop = None

    async def _call(self, send: Callable[[Any], Awaitable[Any]], check: Callable[[Any], T]) -> tuple[T, float]:
        """Send (``send(client)``) with retries, on the endpoint with the most room; ``check`` turns
        the response into a value or raises MalformedResponse. Returns the value and the latency
        of the successful attempt. A retry after a dead or hung server, or a 429, goes at once to
        another endpoint when one is up; otherwise it waits its backoff.

        When to give up: after ``max_retries`` retries, or when the attempts and backoffs of this
        request have taken ``max_retry_time_s`` (time waiting for a free slot behind other requests
        does not count); and, while no server has answered yet, after ``UNREACHABLE_S`` of refused
        connections: a wrong URL or a server that is not running is said in seconds."""
        self.call_stats.requests += 1
        failed_on: Endpoint | None = None
        spent = 0.0  # in attempts and backoffs
        for attempt in range(self.policy.max_retries + 1):
            endpoint = await self.pool.acquire(avoid=failed_on)
            began = time.monotonic()
            outcome = await self._hedged(endpoint, send, check, began + self.policy.deadline_s - spent)
            spent += time.monotonic() - began
            if outcome.failure is None:
                self._answered = True
                return outcome.value, outcome.latency_s
            reason, error = outcome.failure
            failed_on = outcome.endpoint
            delay = self.policy.delay(attempt, self._rng, outcome.retry_after)
            elsewhere = (reason in SERVER_FAULTS or reason == "429") and self.pool.others_up(outcome.endpoint)
            unreachable = reason == "connection" and not self._answered
            out_of_time = spent >= self.policy.deadline_s or (not elsewhere and spent + delay >= self.policy.deadline_s)
            if unreachable and spent + (0 if elsewhere else delay) > UNREACHABLE_S:
                out_of_time = True
            if attempt == self.policy.max_retries or out_of_time:
                raise HarnessError(self._giving_up(outcome.endpoint, attempt + 1, spent, reason, error, unreachable, out_of_time))
            self.call_stats.retries[reason] += 1
            if elsewhere:
                continue  # another server takes it now; this one is marked down (or paused by its 429)
            self.call_stats.waited_s += delay
            spent += delay
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    def _giving_up(self, endpoint: Endpoint, attempts: int, spent: float, reason: str, error: BaseException, unreachable: bool, late: bool) -> str:
        """Why a request was given up: where, after what, the last error, and what to check."""
        limit = "" if not late or unreachable else f" (max_retry_time_s: {self.policy.deadline_s:g})"
        said = f"giving up after {attempts} attempts in {spent:.1f} s{limit}; last error ({reason}): {self._describe_error(error)}"
        if unreachable:
            return f"model '{self.spec.label}': cannot connect to {self.base_url}: {said}. Is the server running, and is --base-url (base_url) right?"
        return f"{self.spec.label} at {endpoint.url}: {said}"

    async def _hedged(self, endpoint: Endpoint, send: Callable[[Any], Awaitable[Any]], check: Callable[[Any], Any], deadline: float) -> Outcome:
        """One attempt on ``endpoint``; with several endpoints, if it is still running after the
        pool's hedge delay (3x the median latency, at least 1 s) and another endpoint has a slot no
        queued request is waiting for, the same request is sent there too and the first answer wins
        (the other is cancelled). So a slow server's requests move to idle ones instead of holding
        up the end of every chunk; requests are idempotent, and replicas give the same answer."""
        first = asyncio.ensure_future(self._try(endpoint, send, check, deadline))
        pending, failure, hedged = {first}, None, False
        try:
            while pending:
                wait = None if hedged or not self.pool.many else self.pool.hedge_delay()
                done, pending = await asyncio.wait(pending, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    outcome = task.result()  # a HarnessError (a 4xx: the request is wrong) propagates
                    if outcome.failure is None:
                        self.call_stats.hedge_wins += task is not first
                        return outcome
                    failure = failure or outcome
                if not done and not hedged:
                    spare = self.pool.try_acquire(avoid=endpoint)
                    if spare is not None:
                        hedged = True
                        self.call_stats.hedged += 1
                        pending.add(asyncio.ensure_future(self._try(spare, send, check, deadline)))
            assert failure is not None
            return failure
        finally:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _try(self, endpoint: Endpoint, send: Callable[[Any], Awaitable[Any]], check: Callable[[Any], Any], deadline: float) -> Outcome:
        """One attempt on an endpoint whose slot the caller holds (released here), cut off at
        ``deadline`` (monotonic) if the client's own timeouts have not ended it: the value, or why it
        failed (retryable). Non-retryable answers (4xx) raise HarnessError."""
        import openai

        started = time.perf_counter()
        retry_after: float | None = None
        error: BaseException
        try:
            self.call_stats.attempts += 1
            limit = max(0.05, min(self.options.timeout_s + 5, deadline - time.monotonic()))
            response = await asyncio.wait_for(send(endpoint.client), timeout=limit)
            value = check(response)
        except openai.RateLimitError as exc:
            reason, error = "429", exc
            retry_after = parse_retry_after(dict(exc.response.headers))
            endpoint.limiter.rate_limited(retry_after)
        except openai.APIStatusError as exc:
            if exc.status_code < 500 and exc.status_code not in (408, 409):
                raise HarnessError(self._describe_error(exc)) from None
            reason, error = str(exc.status_code), exc
        except (openai.APITimeoutError, asyncio.TimeoutError) as exc:
            reason, error = "timeout", exc
        except openai.APIConnectionError as exc:
            reason, error = "connection", exc
        except (openai.APIResponseValidationError, json.JSONDecodeError, MalformedResponse, UnicodeDecodeError) as exc:
            reason, error = "malformed", exc
        else:
            latency = time.perf_counter() - started
            self.pool.succeeded(endpoint, latency)
            return Outcome(endpoint, value=value, latency_s=latency)
        finally:
            await self.pool.release(endpoint)
        self.pool.failed(endpoint, reason)
        return Outcome(endpoint, failure=(reason, error), retry_after=retry_after)

    def _describe_error(self, exc: BaseException) -> str:
        """The error and its cause (``Connection error.`` says little; ``ConnectError: [Errno 111]
        Connection refused`` does), redacted *before* it is cut to 500 characters, so a key the
        server echoes near the cut is never printed in part."""
        text = f"{type(exc).__name__}: {exc}"
        cause = exc.__cause__ or exc.__context__
        if cause is not None and str(cause) not in text:
            text += f" ({type(cause).__name__}: {cause})" if str(cause) else f" ({type(cause).__name__})"
        return redact(text, self._secrets, limit=500)

    def _extra(self) -> dict[str, Any]:
        """``extra_params`` as the client takes them: in ``extra_body``, merged into the request's JSON
        over the backend's own parameters (so they can override them), whatever they are named; as
        keywords of ``create``, a name it does not declare (a server's own, ``top_k``) is a TypeError.
        An ``extra_body`` of their own (the client's keyword, as some users write it) is merged in."""
        params = dict(self.options.extra_params)
        nested = params.pop("extra_body", None)
        if isinstance(nested, dict):
            params = {**params, **nested}
        elif nested is not None:
            params["extra_body"] = nested
        return {"extra_body": params} if params else {}

    def _messages(self, prompt: Prompt) -> list[dict[str, str]]:
        if isinstance(prompt, str):
            return [{"role": "user", "content": prompt}]
        return [{"role": m.role, "content": m.content} for m in prompt]

    def _uses_chat(self, prompt: Prompt) -> bool:
        if self.options.endpoint == "chat":
            return True
        if not isinstance(prompt, str):
            if self.options.endpoint == "completions":
                raise HarnessError(
                    f"model '{self.spec.label}' is set to endpoint: completions, which takes text; this prompt is a chat "
                    "template (*.chat.jinja): use endpoint auto/chat or a plain-text template"
                )
            return True
        return False

    # -- generation -----------------------------------------------------------------
    def generate(self, requests: Sequence[GenerateRequest]) -> list[GenerateResult]:
        async def all_of() -> list[GenerateResult]:
            return await _gather([self._generate_one(r) for r in requests])

        return self._run(all_of)

    async def _generate_one(self, request: GenerateRequest) -> GenerateResult:
        params: dict[str, Any] = {"model": self.spec.model, "max_tokens": request.max_tokens, "temperature": request.temperature}
        if request.stop:
            params["stop"] = list(request.stop)[:4]
        if request.temperature > 0:  # each repeat is its own sample, reproducible where the server honours seeds
            params["seed"] = request.seed * 100_003 + request.repeat
        params.update(self._extra())
        chat = self._uses_chat(request.prompt)

        def check(response: Any) -> tuple[str, int, str, tuple[int | None, int | None]]:
            choices = getattr(response, "choices", None)
            if not choices:
                raise MalformedResponse("no choices in the response")
            choice = choices[0]
            text = choice.message.content if chat else choice.text
            if text is None and chat and getattr(choice.message, "refusal", None):
                text = ""
            if not isinstance(text, str):
                raise MalformedResponse("no text in the response")
            usage = getattr(response, "usage", None)
            return text, int(getattr(usage, "completion_tokens", 0) or 0), str(choice.finish_reason or "stop"), usage_tokens(usage)

        if chat:
            send = lambda client: client.chat.completions.create(messages=self._messages(request.prompt), **params)  # noqa: E731
        else:
            send = lambda client: client.completions.create(prompt=request.prompt, **params)  # noqa: E731
        (text, n_tokens, finish, (read, wrote)), latency = await self._call(send, check)
        text, stopped = truncate_at_stop(text, request.stop)
        return GenerateResult(text=text, n_tokens=n_tokens, finish_reason="stop" if stopped else finish, latency_s=latency,
                              input_tokens=read, output_tokens=wrote)

    # -- log-likelihood ------------------------------------------------------------
    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[LoglikelihoodResult]:
        needs_fallback = any(self._uses_chat(r.context) for r in requests) or self._echo_supported is False
        if needs_fallback:
            return self._fallback(requests, "chat prompts have no prompt log-probabilities")

        async def all_of() -> list[LoglikelihoodResult]:
            return await _gather([self._score_one(r) for r in requests])

        try:
            results = self._run(all_of)
        except NoPromptLogprobs:
            self._echo_supported = False
            return self._fallback(requests, f"the server at {self.base_url} returns no prompt log-probabilities (echo + logprobs)")
        self._echo_supported = True
        return results

    async def _score_one(self, request: LoglikelihoodRequest) -> LoglikelihoodResult:
        assert isinstance(request.context, str)
        context = request.context
        boundary = len(context.rstrip(" "))  # trailing context spaces belong to the continuation
        params: dict[str, Any] = {"model": self.spec.model, "max_tokens": 1, "temperature": 0.0, "echo": True, "logprobs": 1}
        params.update(self._extra())
        text = context + request.continuation

        def check(response: Any) -> tuple[LoglikelihoodResult, tuple[int | None, int | None]]:
            choices = getattr(response, "choices", None)
            if not choices:
                raise MalformedResponse("no choices in the response")
            logprobs = choices[0].logprobs
            if logprobs is None or not getattr(logprobs, "token_logprobs", None):
                raise NoPromptLogprobs()
            usage = getattr(response, "usage", None)
            return continuation_score(logprobs, text, boundary, getattr(usage, "prompt_tokens", None)), usage_tokens(usage)

        (result, (read, wrote)), latency = await self._call(lambda client: client.completions.create(prompt=text, **params), check)
        return LoglikelihoodResult(logprob=result.logprob, is_greedy=result.is_greedy, n_tokens=result.n_tokens, latency_s=latency,
                                   input_tokens=read, output_tokens=wrote)

    def _fallback(self, requests: Sequence[LoglikelihoodRequest], why: str) -> list[LoglikelihoodResult]:
        if self.options.mc_fallback != "generate":
            raise HarnessError(
                f"model '{self.spec.label}': multiple choice needs log-likelihoods, but {why}. Use a plain-text template "
                "against a completions server that supports echo, or allow the generate-and-parse fallback with "
                "'mc_fallback: generate' in the model's entry of the experiment file (parse failures are counted)."
            )
        groups: dict[str, list[int]] = {}
        for index, request in enumerate(requests):
            groups.setdefault(json.dumps(_prompt_key(request.context)), []).append(index)
        asks = [
            GenerateRequest(prompt=question_prompt(requests[m[0]].context, [requests[i].continuation for i in m]), max_tokens=8, stop=("\n",))
            for m in groups.values()
        ]
        replies = self.generate(asks)
        results: list[LoglikelihoodResult | None] = [None] * len(requests)
        for members, reply in zip(groups.values(), replies):
            chosen = parse_choice(reply.text, [requests[i].continuation for i in members])
            self.call_stats.mc_fallback_items += 1
            self.call_stats.mc_parse_failures += chosen is None
            for at, (value, index) in enumerate(zip(choice_logprobs(chosen, len(members)), members)):
                # the one question's usage goes to its first choice (the item's ledger sums its choices)
                read, wrote = (reply.input_tokens, reply.output_tokens) if at == 0 else (0 if reply.input_tokens is not None else None,
                                                                                         0 if reply.output_tokens is not None else None)
                results[index] = LoglikelihoodResult(logprob=value, is_greedy=value == 0.0, n_tokens=0, latency_s=reply.latency_s / len(members),
                                                     input_tokens=read, output_tokens=wrote)
        return [r for r in results if r is not None]


async def _gather(coroutines: list[Awaitable[T]]) -> list[T]:
    """Results in order; on the first failure the other requests are cancelled, not left
    running on the backend's loop."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _prompt_key(prompt: Prompt) -> Any:
    return prompt if isinstance(prompt, str) else [[m.role, m.content] for m in prompt]


def usage_tokens(usage: Any) -> tuple[int | None, int | None]:
    """(prompt tokens, completion tokens) of a response's ``usage`` as the server reports them (what it bills); None where it
    reports none (the cost ledger then counts the request as unmetered, never as free)."""

    def count(name: str) -> int | None:
        value = getattr(usage, name, None)
        return int(value) if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None

    read, wrote = count("prompt_tokens"), count("completion_tokens")
    return (read, wrote) if read is not None and wrote is not None else (None, None)


def offset_shift(tokens: list[str], offsets: list[int], text: str) -> int:
    """Where the prompt starts in the server's ``text_offset`` coordinates. vLLM counts the text of
    the BOS token it echoes (``<bos>``: offsets start at 5) though the prompt does not hold it;
    llama.cpp does not. The first token the prompt starts with tells: its offset is the shift."""
    for token, offset in zip(tokens[:4], offsets[:4]):
        if token and text.startswith(token):
            return offset
    return 0


def continuation_score(logprobs: Any, text: str, boundary: int, prompt_tokens: int | None) -> LoglikelihoodResult:
    """Sum the logprobs of the echoed prompt tokens that end after ``boundary``.

    ``text_offset`` gives each token's start; without it offsets are rebuilt from the token
    strings. Tokens past ``prompt_tokens`` (or past the text) are the one generated token.
    """
    tokens = list(logprobs.tokens or [])
    values = list(logprobs.token_logprobs or [])
    offsets = list(getattr(logprobs, "text_offset", None) or [])
    tops = list(getattr(logprobs, "top_logprobs", None) or [])
    if not tokens or len(tokens) != len(values):
        raise MalformedResponse("logprobs: tokens and token_logprobs differ in length")
    if len(offsets) != len(tokens):
        offsets, position = [], 0
        for token in tokens:
            offsets.append(position)
            position += len(token)
    shift = offset_shift(tokens, offsets, text)
    offsets = [o - shift for o in offsets]
    n_prompt = prompt_tokens if prompt_tokens and prompt_tokens <= len(tokens) else len(tokens)
    picked = [i for i in range(n_prompt) if offsets[i] < len(text) and offsets[i] + max(len(tokens[i]), 1) > boundary]
    if not picked:
        raise MalformedResponse("logprobs: no token of the continuation in the echoed prompt")
    total, greedy = 0.0, True
    for i in picked:
        value = values[i]
        if value is None or not math.isfinite(float(value)):
            raise MalformedResponse("logprobs: a continuation token has no logprob")
        total += float(value)
        top = tops[i] if i < len(tops) and tops[i] else None
        if top:
            greedy = greedy and float(value) >= max(float(v) for v in dict(top).values()) - 1e-6
    return LoglikelihoodResult(logprob=total, is_greedy=greedy, n_tokens=len(picked))
