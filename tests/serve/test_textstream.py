from __future__ import annotations

import pytest

from loramux.serve.textstream import TextStream

VOCAB = ["Hel", "lo", " wor", "ld", "\n\n", "User", ":", " hi", "\xe2"]


def decode(ids: list[int]) -> str:
    # A byte-level tokenizer shows half a UTF-8 character as U+FFFD until the rest arrives.
    text = "".join(VOCAB[i] for i in ids)
    return text.replace("\xe2", "\ufffd")


def run(ids: list[int], stop: tuple[str, ...] = ()) -> tuple[list[str], TextStream]:
    stream = TextStream(decode, stop)
    deltas = [stream.push(i) for i in ids]
    deltas.append(stream.flush())
    return deltas, stream


def test_deltas_add_up_to_the_decoded_text() -> None:
    deltas, stream = run([0, 1, 2, 3])
    assert deltas == ["Hel", "lo", " wor", "ld", ""]
    assert stream.text == "Hello world"
    assert not stream.stopped


def test_stop_string_spanning_tokens_is_cut_and_never_sent() -> None:
    deltas, stream = run([0, 1, 4, 5, 6, 7], stop=("\n\nUser:",))
    assert "".join(deltas) == "Hello"
    assert stream.stopped
    # "\n\n" could start the stop string, so it was held back rather than sent.
    assert deltas[2] == ""


def test_held_back_prefix_is_released_when_it_turns_out_not_to_stop() -> None:
    deltas, _ = run([0, 4, 7], stop=("\n\nUser:",))
    assert deltas == ["Hel", "", "\n\n hi", ""]


def test_pushes_after_a_stop_return_nothing() -> None:
    stream = TextStream(decode, ("lo",))
    assert stream.push(0) == "He"  # "l" may begin "lo": held back
    assert stream.push(1) == "l"  # "Hello": the text before the stop string "lo"
    assert stream.stopped
    assert stream.push(2) == ""
    assert stream.flush() == ""


def test_incomplete_utf8_is_held_until_flush() -> None:
    deltas, _ = run([0, 8])
    assert deltas == ["Hel", "", "\ufffd"]


@pytest.mark.parametrize(
    ("ids", "stop", "expected"),
    [
        ([0, 1, 2, 3], ("world",), "Hello "),
        ([0, 1, 2, 3], ("Hel",), ""),
        ([0, 1, 2, 3], ("xyz", " w"), "Hello"),
        ([0, 1, 2, 3], ("", "zz"), "Hello world"),
    ],
)
def test_stop_strings_table(ids: list[int], stop: tuple[str, ...], expected: str) -> None:
    deltas, _ = run(ids, stop)
    assert "".join(deltas) == expected
