"""Local Hugging Face models (optionally with a PEFT adapter) on CUDA when present, else CPU.

Speed notes, because they shape the code:
- Log-likelihood requests go through packed.py: the few-shot prefix shared by many items once,
  then one row per item holding its context and all its choices, kept apart by the attention
  mask, with the LM head only on the positions that are scored. It is checked once per model
  against the three-level scorer (prefix_cache.py), which takes over when the attention cannot
  take custom masks (flash attention, old transformers); the plain path below is the reference
  both must equal.
- Sequences are left-padded with explicit position ids, so every continuation ends at the
  last positions of its row and ``logits_to_keep`` computes the LM head only there. With a
  262k-token vocabulary (Gemma 3) the head would otherwise dominate: never a full
  batch x length x vocab tensor.
- Requests are sorted by length (longest first, so an out-of-memory shows up at once) and
  packed into batches under a token budget; padding does not change results.
- Greedy generation (greedy.py) computes a prompt prefix shared by many requests (the same
  few-shot demonstrations) once, drops finished rows from the batch at once, appends each step
  to the cache in place (decode_cache.py) and takes the greedy token from the LM head in
  vocabulary chunks without materialising the logits (argmax_head.py).

Identity (``HFBackend.identity_of``): the full-content sha256 of the model and adapter folders
(weights read once, then memoised by file stat), or a hub id's commit from the local HF cache,
plus dtype, max_length, trust_remote_code and the device kind; see its docstring for why.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

from harness.backends.base import Backend, Capabilities, ModelSpec
from harness.backends.hf.argmax_head import ArgmaxHead
from harness.backends.hf.encoding import context_text, encode, encode_pair
from harness.backends.hf.files import (
    chat_capabilities,
    content_identity,
    device_kind,
    hub_commit,
    model_source,
)
from harness.backends.hf.greedy import GreedyDecoder, GreedyRow
from harness.backends.hf.options import HFOptions, hf_options
from harness.backends.hf.packed import PackedScorer, packing_verified
from harness.backends.hf.prefix_cache import Scored, SharedPrefixScorer
from harness.backends.hf.quiet import quiet
from harness.backends.hf.verdicts import cached_verdict, verdict_key
from harness.backends.stops import truncate_at_stop
from harness.core.deps import require, require_transformers
from harness.core.errors import HarnessError, clip
from harness.prompts.messages import Prompt
from harness.requests import GenerateRequest, GenerateResult, LoglikelihoodRequest, LoglikelihoodResult

T = TypeVar("T")
MIN_BATCH_TOKENS = 64


def resolve_device(spec: ModelSpec) -> str:
    device = hf_options(spec).device
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(spec: ModelSpec) -> str:
    """'auto' is bfloat16 on a GPU that has it, else float32 (on CPU float32 is ~2x faster)."""
    dtype = hf_options(spec).dtype
    if dtype != "auto":
        return dtype
    import torch

    if resolve_device(spec).startswith("cuda") and torch.cuda.is_bf16_supported():
        return "bfloat16"
    return "float32"


class HFBackend(Backend):
    options_model = HFOptions

    @quiet()  # no loading bars, logs or deprecation warnings from transformers unless --verbose (quiet.py)
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        require_transformers()
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.source = source = model_source(spec)
        self.device = resolve_device(spec)
        self.dtype = getattr(torch, resolve_dtype(spec))
        # a hub id is loaded at the commit its identity names (see identity_of), not whatever main is by now
        revision = spec.revision if Path(source).is_dir() else hub_commit(spec.model, spec.revision) or spec.revision
        options = self.options = hf_options(spec)
        kwargs: dict[str, Any] = {"revision": revision, "trust_remote_code": options.trust_remote_code}
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
            multi_gpu = self.device == "cuda" and torch.cuda.device_count() > 1
            model = AutoModelForCausalLM.from_pretrained(
                source, dtype=self.dtype, device_map="auto" if multi_gpu else None, **kwargs
            )
        except (OSError, ValueError) as exc:  # ValueError: no tokenizer files, a config.json naming no known architecture
            raise HarnessError(f"cannot load HF model '{spec.model}': {clip(str(exc), 1000)}") from None
        if not getattr(model, "hf_device_map", None):
            model.to(self.device)  # type: ignore[arg-type]  # transformers types .to() for modules, a device string is valid
        if options.adapter:
            model = self._with_adapter(model, options.adapter)
        self.model = model.eval()
        self.input_device = next(self.model.parameters()).device
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        config = self.model.config
        limit = min(getattr(config, "max_position_embeddings", 2048) or 2048, 8192)
        self.max_length = options.max_length or limit
        # On a GPU start large and let out-of-memory back off (_with_backoff); on CPU bigger
        # batches buy nothing and cost memory.
        default_budget = 65536 if self.device.startswith("cuda") else 4096
        self.max_batch_tokens = options.max_batch_tokens or default_budget
        self.max_logit_rows = 2048 if self.device.startswith("cuda") else 256
        # Scored positions per batch through the chunked LM head (argmax_head.py), which keeps no
        # logits: a bigger batch costs no memory and runs the head's matmul faster on CPU (measured
        # on Gemma 3's 262k x 640 head: 140 GFLOP/s at 256 rows, 175-190 at 512-1,024).
        self.max_head_rows = 2048 if self.device.startswith("cuda") else 1024
        # Rows decoded together: on CPU a step of 32 rows costs ~4x a step of one (measured). 64 rows
        # were 11% faster on GSM8K 8-shot (the same texts) but peaked at 7.4 GB RSS against lm-eval's
        # 3.2 GB: every prefilled part's full cache is held until the merge (bench/README.md, issue 22).
        self.max_decode_rows = 256 if self.device.startswith("cuda") else 32
        self.share_prefix = True  # False: score every request on its own (the reference path)
        self.packing: bool | None = None  # all choices of an item in one row (packed.py): verified on first use
        self.score_head: ArgmaxHead | None = None  # packed log-probs through the chunked LM head, when verified
        self.counters: dict[str, float | int] = {
            "requests": 0, "loglikelihood_s": 0.0, "forward_s": 0.0, "forward_tokens": 0, "oom_backoffs": 0,
            "generate_s": 0.0, "generate_forward_s": 0.0, "generate_tokens": 0,
        }  # fmt: skip

    # -- identity -----------------------------------------------------------------
    def _with_adapter(self, model: Any, adapter: str) -> Any:
        require("peft", "hf")
        from peft import PeftModel

        if not (Path(adapter) / "adapter_config.json").exists():
            raise HarnessError(f"adapter '{adapter}' is not a PEFT adapter folder (no adapter_config.json)")
        return PeftModel.from_pretrained(model, adapter)

    @classmethod
    def identity_of(cls, spec: ModelSpec) -> dict[str, Any]:
        """The model's content plus every setting that changes its outputs (cache keys, run identity, ``model_json``).

        - ``model_content`` (a local folder, the embedded model included): full-content sha256 of
          its weights, tokenizer files + chat template, and config (``folder_fingerprint``); its
          path is not part of it, only ``model`` (the name as given) is.
        - a hub id: ``revision`` is the commit the local HF cache resolves it to (the model is then
          loaded at that commit, so identity and weights agree); not cached yet: the requested
          revision, with a ``revision_note`` saying it is unresolved (the next run, once it is
          downloaded, has the commit and misses the cache once).
        - ``adapter``: the same fingerprint of the PEFT adapter folder (content, not path).
        - ``dtype`` (resolved: 'auto' is bfloat16 or float32 by device), ``max_length`` (None =
          the model's own limit, which its fingerprinted config decides: prompts are truncated
          to it), ``trust_remote_code`` (custom modelling code instead of the built-in class).
        - ``device``: the device *kind* (cpu, cuda, mps). CPU and CUDA kernels reduce in other
          orders (and CUDA may use TF32), so log-likelihoods differ in the last bits and
          near-ties in greedy decoding or choice ranking can flip: a stored answer is only
          reused on the kind of device that produced it. The index (cuda:0 vs cuda:1) is left
          out, as are batch budgets (padding and batching do not change results, see above).
        """
        options = hf_options(spec)
        identity = content_identity(spec, options.adapter)
        identity.update(
            dtype=resolve_dtype(spec), max_length=options.max_length,
            trust_remote_code=options.trust_remote_code, device=device_kind(resolve_device(spec)),
        )
        return identity

    @classmethod
    def capabilities(cls, spec: ModelSpec, *, chat: bool) -> Capabilities:
        """Everything, except chat prompts on a model whose tokenizer has no chat template (``chat_capabilities``)."""
        return chat_capabilities(spec, chat=chat)

    # -- tokenisation (encoding.py, shared with vllm:) ----------------------------
    def _context_text(self, prompt: Prompt) -> tuple[str, bool]:
        return context_text(self.tokenizer, prompt, self.spec.label)

    def _encode(self, text: str, special: bool) -> list[int]:
        return encode(self.tokenizer, text, special)

    def _encode_pair(self, request: LoglikelihoodRequest) -> tuple[list[int], list[int]]:
        return encode_pair(self.tokenizer, request, self.spec.label)

    # -- batching ---------------------------------------------------------------
    def _batches(self, lengths: list[int], extra: list[int]) -> Iterator[list[int]]:
        """Indices sorted longest first, grouped so padded tokens stay within the budget."""
        order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
        batch: list[int] = []
        for index in order:
            width = lengths[batch[0]] if batch else lengths[index]
            rows = max([extra[i] for i in batch] + [extra[index]]) * (len(batch) + 1)
            if batch and (width * (len(batch) + 1) > self.max_batch_tokens or rows > self.max_logit_rows):
                yield batch
                batch = []
            batch.append(index)
        if batch:
            yield batch

    def _left_pad(self, sequences: list[list[int]]) -> tuple[Any, Any, Any]:
        torch = self.torch
        width = max(len(s) for s in sequences)
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(s)) + s for s in sequences], device=self.input_device)
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in sequences], device=self.input_device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        return ids, mask, positions

    # -- requests -----------------------------------------------------------------
    @quiet()
    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[LoglikelihoodResult]:
        """Shared-prefix scoring (prefix_cache.py) where the whole sequence fits ``max_length``;
        the rare over-long request is left-truncated and scored on its own (plain path)."""
        pairs = [self._encode_pair(r) for r in requests]
        fits = [i for i, (ctx, cont) in enumerate(pairs) if len(ctx) + len(cont) - 1 <= self.max_length]
        results: list[LoglikelihoodResult | None] = [None] * len(requests)
        started = time.perf_counter()
        self.counters["requests"] += len(requests)
        if self.share_prefix and fits:
            scored = self._with_backoff(lambda: self._score_shared([pairs[i] for i in fits]))
            for i, s in zip(fits, scored):
                results[i] = LoglikelihoodResult(logprob=s.logprob, is_greedy=s.is_greedy, n_tokens=len(pairs[i][1]), latency_s=s.latency_s,
                                                 input_tokens=len(pairs[i][0]) + len(pairs[i][1]), output_tokens=0)
        rest = [i for i in range(len(requests)) if results[i] is None]
        if rest:
            plain = self._with_backoff(lambda: self._loglikelihood_plain([pairs[i] for i in rest]))
            for i, r in zip(rest, plain):
                results[i] = r
        self.counters["loglikelihood_s"] += time.perf_counter() - started
        return [r for r in results if r is not None]

    def stats(self) -> dict[str, Any]:
        """Time in loglikelihood() against time inside the model (the overhead is the difference),
        whether log-likelihoods were scored packed and greedy steps used the chunked head."""
        stats = {k: round(v, 3) if isinstance(v, float) else v for k, v in self.counters.items() if v}
        if self.packing:
            stats["packed"] = 1
        if self.score_head is not None:
            stats["chunked_score_head"] = 1
        if self.__dict__.get("argmax_head") is not None:  # set once greedy generation has run
            stats["chunked_head"] = 1
        return stats

    def _score_shared(self, pairs: list[tuple[list[int], list[int]]]) -> list[Scored]:
        pad_id = self.tokenizer.pad_token_id
        if self.packing is None:
            self.packing, self.score_head = self._verify_packing(pad_id)
        scorer: SharedPrefixScorer
        if self.packing:
            budget = (self.max_batch_tokens, self.max_logit_rows if self.score_head is None else self.max_head_rows)
            scorer = PackedScorer(self.model, pad_id, self.input_device, budget, head=self.score_head)
        else:
            scorer = SharedPrefixScorer(self.model, pad_id, self.input_device, self.max_batch_tokens, self.max_logit_rows)
        scored = scorer.score(pairs)
        self.counters["forward_s"] += scorer.forward_s
        self.counters["forward_tokens"] += scorer.tokens
        return scored

    def _verify_packing(self, pad_id: int) -> tuple[bool, ArgmaxHead | None]:
        """Packed scoring through the chunked LM head if the probe agrees with the reference, else packed
        with the model's own logits (a head whose logits are transformed, as Gemma 2's soft-capping, is
        exact for greedy argmax but not for log-probs), else not packed."""
        vocab, key = len(self.tokenizer), self.verdict_key
        head = self.argmax_head
        if head is not None and cached_verdict(key, "packed_score_head", lambda: packing_verified(self.model, pad_id, self.input_device, vocab, head)):
            return True, head
        return cached_verdict(key, "packed", lambda: packing_verified(self.model, pad_id, self.input_device, vocab)), None

    @cached_property
    def verdict_key(self) -> str | None:
        """Where this model's probe verdicts are kept (verdicts.py): its identity under this software."""
        import transformers

        attention = str(getattr(self.model.config, "_attn_implementation", None))
        versions = {"torch": self.torch.__version__, "transformers": transformers.__version__}
        return verdict_key(type(self).identity_of(self.spec), attention, versions)

    def _with_backoff(self, work: Callable[[], T]) -> T:
        """Automatic batch size: on out-of-memory halve the token and logit-row budgets and
        redo the call; the budget that worked is kept for the rest of the run."""
        while True:
            try:
                return work()
            except self.torch.OutOfMemoryError:
                if self.max_batch_tokens <= MIN_BATCH_TOKENS:
                    raise HarnessError(
                        f"out of memory on {self.device} even with batches of {self.max_batch_tokens} tokens; "
                        "use a smaller model, --dtype bfloat16 or a shorter max_length"
                    ) from None
                self.max_batch_tokens = max(MIN_BATCH_TOKENS, self.max_batch_tokens // 2)
                self.max_logit_rows = max(1, self.max_logit_rows // 2)
                self.max_head_rows = max(1, self.max_head_rows // 2)
                self.max_decode_rows = max(1, self.max_decode_rows // 2)
                self.counters["oom_backoffs"] += 1
                if self.device.startswith("cuda"):
                    self.torch.cuda.empty_cache()

    def _loglikelihood_plain(self, pairs: Sequence[tuple[list[int], list[int]]]) -> list[LoglikelihoodResult]:
        """Every request on its own: left-padded batches, no sharing (the reference the shared path must equal)."""
        torch = self.torch
        # The model sees context+continuation minus the last token; predictions for the
        # continuation tokens are the last len(continuation) positions.
        inputs = [(ctx + cont)[:-1][-self.max_length :] for ctx, cont in pairs]
        results: list[LoglikelihoodResult | None] = [None] * len(pairs)
        for batch in self._batches([len(s) for s in inputs], [len(cont) for _, cont in pairs]):
            started = time.perf_counter()
            ids, mask, positions = self._left_pad([inputs[i] for i in batch])
            keep = max(len(pairs[i][1]) for i in batch)
            with torch.inference_mode():
                logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=keep).logits
                logprobs = torch.log_softmax(logits.float(), dim=-1)
            elapsed = (time.perf_counter() - started) / len(batch)
            for row, index in enumerate(batch):
                cont = pairs[index][1]
                tail = logprobs[row, keep - len(cont) :]
                target = torch.tensor(cont, device=tail.device)
                picked = tail.gather(-1, target[:, None]).squeeze(-1)
                greedy = bool((tail.argmax(-1) == target).all())
                results[index] = LoglikelihoodResult(  # read: what the model saw, and the last token it scored
                    logprob=float(picked.sum()), is_greedy=greedy, n_tokens=len(cont), latency_s=elapsed, input_tokens=len(inputs[index]) + 1,
                    output_tokens=0,
                )
        return [r for r in results if r is not None]

    @quiet()
    def generate(self, requests: Sequence[GenerateRequest]) -> list[GenerateResult]:
        """Greedy requests: batched on a shared-prefix cache with per-row stops and early exit
        (greedy.py); sampled ones: HF generate, one request per call, seeded per request."""
        return self._with_backoff(lambda: self._generate(requests))

    def _generate(self, requests: Sequence[GenerateRequest]) -> list[GenerateResult]:
        prompts = [self._context_text(r.prompt) for r in requests]
        encoded = [self._encode(text, special) for text, special in prompts]
        started = time.perf_counter()
        results: list[GenerateResult | None] = [None] * len(requests)
        greedy = [i for i, r in enumerate(requests) if r.temperature <= 0]
        if greedy:
            self._generate_greedy(greedy, encoded, requests, results)
        for i in range(len(requests)):
            if results[i] is None:
                results[i] = self._sample(encoded[i], requests[i])
        self.counters["generate_s"] += time.perf_counter() - started
        return [r for r in results if r is not None]

    def _eos_ids(self) -> frozenset[int]:
        return frozenset(_as_list(self.model.generation_config.eos_token_id)) | {self.tokenizer.eos_token_id}

    def _fit(self, encoded: list[int], request: GenerateRequest) -> list[int]:
        """The prompt's last tokens that leave room for ``max_tokens`` new ones in the model's window."""
        return encoded[-max(1, self.max_length - request.max_tokens) :]

    def _decode(self, tokens: list[int]) -> str:
        return str(self.tokenizer.decode(tokens, skip_special_tokens=True))

    def _generate_greedy(
        self, chosen: list[int], encoded: list[list[int]], requests: Sequence[GenerateRequest], results: list[GenerateResult | None]
    ) -> None:
        rows = [
            GreedyRow(tuple(self._fit(encoded[i], requests[i])), requests[i].max_tokens, requests[i].stop)
            for i in chosen
        ]
        decoder = GreedyDecoder(
            self.model, self._decode, self.tokenizer.pad_token_id, self._eos_ids(), self.input_device, self.max_batch_tokens, self.max_decode_rows,
            head=self.argmax_head,
        )  # fmt: skip
        for i, row, d in zip(chosen, rows, decoder.run(rows)):
            results[i] = GenerateResult(text=d.text, n_tokens=d.n_tokens, finish_reason=d.finish_reason, latency_s=d.latency_s,
                                        input_tokens=len(row.prompt), output_tokens=d.n_tokens)
        self.counters["generate_forward_s"] += decoder.forward_s
        self.counters["generate_tokens"] += decoder.tokens

    @cached_property
    def argmax_head(self) -> ArgmaxHead | None:
        """The chunked greedy LM head (argmax_head.py) when a probe shows it is exact for this model."""
        head = ArgmaxHead.of(self.model, self.input_device)
        if head is None:
            return None
        agrees = cached_verdict(self.verdict_key, "argmax_head", lambda: head.agrees(self.model, self.input_device, len(self.tokenizer)))
        return head if agrees else None

    def _sample(self, encoded: list[int], request: GenerateRequest) -> GenerateResult:
        """One sampled request through HF generate, seeded from the request (repeats differ)."""
        torch = self.torch
        ids = torch.tensor([self._fit(encoded, request)], device=self.input_device)
        kwargs: dict[str, Any] = {"max_new_tokens": request.max_tokens, "pad_token_id": self.tokenizer.pad_token_id}
        if request.stop:
            kwargs.update(stop_strings=list(request.stop), tokenizer=self.tokenizer)
        torch.manual_seed(request.seed * 100_003 + request.repeat)
        started = time.perf_counter()
        with torch.inference_mode():
            output = self.model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=request.temperature, top_k=0, top_p=1.0, **kwargs
            )
        tokens = output[0, ids.shape[1] :].tolist()
        finish = "length"
        eos = self._eos_ids()
        for cut, token in enumerate(tokens):
            if token in eos:
                tokens, finish = tokens[:cut], "stop"
                break
        text, stopped = truncate_at_stop(self._decode(tokens), request.stop)
        return GenerateResult(
            text=text, n_tokens=len(tokens), finish_reason="stop" if stopped else finish, latency_s=time.perf_counter() - started,
            input_tokens=int(ids.shape[1]), output_tokens=len(tokens),
        )


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]
