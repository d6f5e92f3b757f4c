"""Turns a growing list of token ids into safe-to-send text deltas, and applies stop strings.

Text is held back while it could still be the start of a stop string, or while its last
character is an incomplete UTF-8 sequence (the tokenizer shows those as U+FFFD), so a client never
sees a stop string or a broken character.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

_REPLACEMENT = "\ufffd"


class TextStream:
    """Incremental detokenizer with stop-string handling for one sequence.

    Args:
        decode: token ids -> text (the tokenizer's decode, special tokens skipped).
        stop: strings that end the generation; they are not part of the output.
    """

    def __init__(self, decode: Callable[[Sequence[int]], str], stop: Sequence[str] = ()) -> None:
        self._decode = decode
        self._stop = tuple(s for s in stop if s)
        self._ids: list[int] = []
        self._text = ""
        self._sent = 0
        self.stopped = False

    @property
    def text(self) -> str:
        """All text sent so far."""
        return self._text[: self._sent]

    def push(self, token_id: int) -> str:
        """Add one token; return the text that can be sent now (may be empty).

        After a stop string is found, `stopped` is True and later pushes return "".
        """
        if self.stopped:
            return ""
        self._ids.append(token_id)
        self._text = self._decode(self._ids)
        return self._advance(final=False)

    def flush(self) -> str:
        """Return whatever was held back; call once when generation ends."""
        if self.stopped:
            return ""
        return self._advance(final=True)

    def _advance(self, *, final: bool) -> str:
        text = self._text
        search_from = max(0, self._sent - max((len(s) for s in self._stop), default=0))
        cut = -1
        for s in self._stop:
            pos = text.find(s, search_from)
            if pos != -1 and (cut == -1 or pos < cut):
                cut = pos
        if cut != -1:
            self.stopped = True
            return self._emit(max(cut, self._sent))
        end = len(text)
        if not final:
            if text.endswith(_REPLACEMENT):
                end -= 1
            end -= self._held_for_stop(text[:end])
        return self._emit(max(end, self._sent))

    def _held_for_stop(self, text: str) -> int:
        """Length of the longest suffix of `text` that is a proper prefix of a stop string."""
        held = 0
        for s in self._stop:
            for n in range(min(len(s) - 1, len(text)), held, -1):
                if text.endswith(s[:n]):
                    held = n
                    break
        return held

    def _emit(self, end: int) -> str:
        delta = self._text[self._sent : end]
        self._sent = end
        return delta
