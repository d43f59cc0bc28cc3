"""Greedy next tokens and scored log-probs without materialising the logits: the LM head in vocabulary chunks.

Why: greedy decoding needs only the argmax of each row's logits. On Gemma 3 270M the LM head is
a 262k x 640 matrix (671 MB in float32), and a decode step of 32 rows writes a 32 x 262k logit
matrix (33 MB) only to take its maximum. Computing the head 2,048 vocabulary rows at a time and
keeping each chunk's maximum leaves every chunk's output in the CPU cache: measured on the
2-core benchmark machine, 117 ms instead of 167 ms per step, with bitwise-identical logits
(each logit is the same dot product; only the output is split).

The shortcut needs the model's logits to be ``head(decoder(...).last_hidden_state)`` up to a
monotonic map (Gemma 2's final-logit soft-capping is one: it leaves the argmax unchanged).
``ArgmaxHead.verified`` checks exactly that once per model on a probe and returns ``None``
otherwise, so other architectures (or a head wrapped by an adapter) keep the full forward pass.

Log-likelihood scoring (packed.py) uses the same head for ``target_logprobs``: a batch keeps up to
1,024 scored positions, whose full logits would be 1 GB of float32 (and log-softmax as much again)
only to read one value and a normaliser per row. In vocabulary chunks the normaliser is an online
log-sum-exp (running maximum, each chunk's exponentials summed in float32 and the chunks in
float64), the argmax is tracked as above and the target's logit is its own dot product (in
float64): the peak is one chunk's logits, in a buffer reused by every chunk. The values are the
log-softmax's up to float32 rounding (checked against it in tests/backends/test_packed.py, and
per model by packed.packing_verified's probe).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

HEAD_CHUNK = 2048  # vocabulary rows per LM-head matmul on CPU; on a GPU one matmul is fine


@dataclass(frozen=True)
class ArgmaxHead:
    """The decoder and the (plain linear) LM head of a causal LM, for greedy steps."""

    decoder: Any
    weight: Any  # [vocab, hidden]
    bias: Any  # [vocab] or None
    chunk: int

    def next_tokens(self, **model_inputs: Any) -> Any:
        """Greedy token of each row's last position ([rows] tensor); ``model_inputs`` are the
        keyword arguments a forward pass of the whole model would take (cache included)."""
        hidden = self.decoder(**model_inputs).last_hidden_state[:, -1]
        return self.argmax(hidden)

    def argmax(self, hidden: Any) -> Any:
        import torch
        from torch.nn.functional import linear

        # hidden @ chunk.T, the model's own product: weight-chunk @ hidden.T ran ~10% faster at
        # 32-64 rows but rounds some logits differently from the full head (a tie between two equal
        # vocabulary rows went the other way), and greedy texts must be the model's own
        values, indices = [], []
        for start in range(0, self.weight.shape[0], self.chunk):
            bias = None if self.bias is None else self.bias[start : start + self.chunk]
            best, where = linear(hidden, self.weight[start : start + self.chunk], bias).max(-1)
            values.append(best)
            indices.append(where + start)
        chunk_values, chunk_indices = torch.stack(values, 1), torch.stack(indices, 1)
        # max() picks the first maximum, as argmax over the full logits does (ties are vanishingly rare)
        return chunk_indices.gather(1, chunk_values.argmax(1, keepdim=True))[:, 0]

    def target_logprobs(self, hidden: Any, rows: Any, targets: Any) -> tuple[Any, Any]:
        """The log-prob of targets[i] given hidden[rows[i]], and whether each target is its row's argmax, for hidden states
        [n, hidden] of the scored positions (a row may predict several targets: the last context token)."""
        import torch

        n = hidden.shape[0]
        # the target's logit is one dot product: reading it out of its chunk cost a gather per chunk
        picked = (hidden[rows].double() * self.weight[targets].double()).sum(-1)
        if self.bias is not None:
            picked += self.bias[targets].double()
        top = torch.full((n,), -torch.inf, device=hidden.device)
        top_at = torch.zeros(n, dtype=torch.long, device=hidden.device)
        total = torch.zeros(n, dtype=torch.float64, device=hidden.device)  # sum of exp(logit - top) so far
        # One buffer for every chunk's logits, exponentiated in place: a fresh [n, chunk] tensor per
        # operation (subtract, exp, a float64 sum) made the elementwise work cost as much as the matmul
        # at 1,024 rows (measured 3.8 s against 2.1 s per 1,024 rows of Gemma 3's head).
        buffer = torch.empty(n, self.chunk, device=hidden.device, dtype=hidden.dtype)
        for start in range(0, self.weight.shape[0], self.chunk):
            weight = self.weight[start : start + self.chunk]
            raw = buffer.view(-1)[: n * weight.shape[0]].view(n, weight.shape[0])  # contiguous, also for a short last chunk
            if self.bias is None:
                torch.matmul(hidden, weight.T, out=raw)
            else:
                torch.addmm(self.bias[start : start + self.chunk], hidden, weight.T, out=raw)
            logits = raw if raw.dtype == torch.float32 else raw.float()  # half models: exponentiate in float32
            best, where = logits.max(-1)
            higher = best > top  # strictly: the first maximum wins, as argmax over the full logits
            new_top = torch.where(higher, best, top)
            total.mul_(torch.exp((top - new_top).double()))
            # each chunk's sum in float32 (2,048 terms in [0, 1]), the running total in float64
            total.add_(logits.sub_(new_top[:, None]).exp_().sum(-1))
            top, top_at = new_top, torch.where(higher, where + start, top_at)
        normaliser = top.double() + torch.log(total)
        return (picked - normaliser[rows]).float(), top_at[rows] == targets

    @classmethod
    def of(cls, model: Any, device: Any, chunk: int | None = None) -> ArgmaxHead | None:
        """The model's decoder and plain linear head, unchecked; None where the model has no such pair."""
        import torch

        try:
            head, decoder = model.get_output_embeddings(), model.get_decoder()
        except Exception:  # an architecture the shortcut does not describe: keep the full forward pass
            return None
        if type(head) is not torch.nn.Linear or decoder is model:
            return None
        chunk = chunk or (HEAD_CHUNK if str(device).startswith("cpu") else head.weight.shape[0])
        return cls(decoder, head.weight, head.bias, chunk)

    def agrees(self, model: Any, device: Any, vocab: int) -> bool:
        """Whether this head gives the full model's greedy tokens on a probe."""
        import torch

        try:
            generator = torch.Generator().manual_seed(0)
            ids = torch.randint(1, max(2, min(vocab, self.weight.shape[0])), (2, 12), generator=generator).to(device)
            with torch.inference_mode():
                want = model(input_ids=ids).logits.argmax(-1)
                hidden = self.decoder(input_ids=ids).last_hidden_state
                got = self.argmax(hidden.reshape(-1, hidden.shape[-1])).reshape(want.shape)
            return bool(torch.equal(got, want))
        except torch.OutOfMemoryError:
            raise
        except Exception:  # an architecture the shortcut does not describe: keep the full forward pass
            return False

    @classmethod
    def verified(cls, model: Any, device: Any, vocab: int, chunk: int | None = None) -> ArgmaxHead | None:
        """The head when it gives the full model's greedy tokens on a probe, else None."""
        found = cls.of(model, device, chunk)
        return found if found is not None and found.agrees(model, device, vocab) else None
