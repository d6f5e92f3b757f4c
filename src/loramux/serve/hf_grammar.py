"""Constrained decoding and log-probabilities for the `hf` engine's rows.

Grammars come from xgrammar (see docs/api.md, "Structured output", for why this library): a
JSON schema is compiled once per (tokenizer, schema) into a `CompiledGrammar`, kept in a bounded
LRU cache, and every constrained row gets its own `RowGrammar` (a matcher and a token bitmask),
so rows of one batch may use different grammars, or none. Per step a row's mask is applied to its
logits before greedy or sampling, and the chosen token advances its matcher.

Compiling happens on the request side (off the event loop thread, before the request enters the
batch), so an invalid schema fails its request with `InvalidRequestError` (param
`response_format`) and never touches another row. xgrammar and torch are imported lazily.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from loramux.errors import EngineError, InvalidRequestError
from loramux.serve.types import StructuredOutput, TokenLogprob

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import torch

logger = logging.getLogger(__name__)

ANY_OBJECT = '{"type": "object"}'
"""The schema `response_format: json_object` compiles to: any JSON object."""
DEFAULT_CACHE_SIZE = 256
"""Compiled grammars kept per engine (a typical schema's is tens of KB)."""


class GrammarCache:
    """Compiles `StructuredOutput` into xgrammar grammars for one tokenizer, LRU-cached.

    Args:
        tokenizer: the engine's Hugging Face tokenizer.
        vocab_size: the model's logits width (may be larger than the tokenizer's vocabulary).
        size: most compiled grammars kept.
    """

    def __init__(self, tokenizer: Any, vocab_size: int, size: int = DEFAULT_CACHE_SIZE) -> None:
        import xgrammar as xgr

        self._info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)
        self._compiler = xgr.GrammarCompiler(self._info, max_threads=1, cache_enabled=False)
        self._tokenizer_key = (getattr(tokenizer, "name_or_path", ""), len(tokenizer), vocab_size)
        self._size = size
        self._cache: OrderedDict[tuple[Any, str], Any] = OrderedDict()
        self._lock = threading.Lock()
        self.vocab_size = vocab_size
        self.compiled = 0
        """Grammars compiled (cache misses), for tests and benchmarks."""

    def cached(self, structured: StructuredOutput) -> Any | None:
        """The compiled grammar when it is cached (cheap: fine on the event loop), else None."""
        key = (self._tokenizer_key, structured.json_schema or ANY_OBJECT)
        with self._lock:
            grammar = self._cache.get(key)
            if grammar is not None:
                self._cache.move_to_end(key)
            return grammar

    def compile(self, structured: StructuredOutput) -> Any:
        """The compiled grammar of `structured` (compiling it on a miss: call off the loop).

        Raises:
            InvalidRequestError: the schema is not one xgrammar can compile (param
                `response_format`), with xgrammar's reason.
        """
        grammar = self.cached(structured)
        if grammar is not None:
            return grammar
        schema = structured.json_schema or ANY_OBJECT
        try:
            # Compact JSON: with free whitespace a 135M model can pad the output with blanks
            # until max_tokens; strict mode (no extra properties) is what OpenAI's strict means.
            grammar = self._compiler.compile_json_schema(
                schema, any_whitespace=False, strict_mode=True
            )
        except (RuntimeError, ValueError, TypeError) as exc:
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise InvalidRequestError(
                f"response_format: the JSON schema cannot be used for constrained decoding "
                f"({_tidy(reason)}); fix the schema",
                param="response_format",
            ) from exc
        with self._lock:
            self.compiled += 1
            self._cache[(self._tokenizer_key, schema)] = grammar
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return grammar

    def row(self, grammar: Any) -> RowGrammar:
        """A fresh matcher for one request."""
        return RowGrammar(grammar, self.vocab_size)


def _tidy(reason: str) -> str:
    """xgrammar's message without its `[time] file.cc:line:` prefix."""
    head, sep, tail = reason.partition(".cc:")
    if sep and ": " in tail:
        return tail.split(": ", 1)[1].strip()
    return head.strip() if not sep else reason


class RowGrammar:
    """One row's grammar state: the matcher, and the mask of the tokens allowed next."""

    def __init__(self, grammar: Any, vocab_size: int) -> None:
        import xgrammar as xgr

        self._matcher = xgr.GrammarMatcher(grammar)
        self._bitmask = xgr.allocate_token_bitmask(1, vocab_size)
        self._vocab_size = vocab_size
        self._stop_ids = list(self._matcher.stop_token_ids)
        self._forbidden = self._fill()
        self.complete = False
        """True once the output is a whole JSON value and only a stop token may follow."""

    def _fill(self) -> npt.NDArray[np.bool_]:
        """The next step's forbidden tokens, one bool per vocabulary entry. Unpacked with numpy:
        torch's element-wise ops on 49,152 entries cost 20x more, and far more on a busy CPU
        where their thread pool waits for a core."""
        import numpy as np

        self._matcher.fill_next_token_bitmask(self._bitmask)
        words = self._bitmask.numpy().view(np.uint8)
        allowed = np.unpackbits(words, bitorder="little")[: self._vocab_size]
        forbidden: npt.NDArray[np.bool_] = allowed == 0
        return forbidden

    def mask(self, logits: torch.Tensor) -> None:
        """Set the logits of every token the grammar forbids next to -inf, in place."""
        import numpy as np
        import torch

        n = min(logits.shape[-1], self._forbidden.shape[0])
        if logits.device.type == "cpu" and logits.dtype == torch.float32 and logits.is_contiguous():
            values = logits.numpy()
            np.copyto(values[:n], -np.inf, where=self._forbidden[:n])
            values[n:] = -np.inf
            return
        forbidden = torch.from_numpy(self._forbidden[:n]).to(logits.device)
        logits[:n].masked_fill_(forbidden, -math.inf)
        logits[n:] = -math.inf

    def accept(self, token: int) -> None:
        """Advance with the chosen token; sets `complete` when the JSON value is finished.

        Raises:
            EngineError: the grammar refuses the token (a mask not applied, or a matcher bug).
        """
        if not self._matcher.accept_token(token):
            raise EngineError("constrained decoding: the grammar refused the chosen token")
        if self._matcher.is_terminated():
            self.complete = True
            return
        self._forbidden = self._fill()
        if self._matcher.is_completed():
            allowed = self._vocab_size - int(self._forbidden.sum())
            stops = sum(1 for i in self._stop_ids if not self._forbidden[i])
            self.complete = allowed == stops


def token_logprobs(
    logits: torch.Tensor, token: int, k: int, decode: Any, temperature: float
) -> TokenLogprob:
    """The chosen token's log-probability and the `k` most likely tokens, from the logits the
    token was picked from (the grammar's mask applied, divided by the sampling temperature;
    top-p's cut is not applied, so every allowed token keeps a finite logprob).

    Args:
        logits: one row's logits, masked.
        token: the chosen token id.
        k: alternatives to return (0: none).
        decode: token id -> text.
        temperature: the row's temperature (1.0 when greedy).
    """
    import torch

    logp = torch.log_softmax(logits / temperature, dim=-1)
    top: tuple[tuple[str, float], ...] = ()
    if k > 0:
        values, ids = torch.topk(logp, min(k, logp.shape[-1]))
        top = tuple(
            (decode(i), v)
            for i, v in zip(ids.tolist(), values.tolist(), strict=True)
            if v > -math.inf
        )
    return TokenLogprob(decode(token), float(logp[token]), top)
