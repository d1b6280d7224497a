"""The handlers of examples/wordcount/python, called directly with Events."""

from __future__ import annotations

import importlib.util

import pytest

from eddy_agent import DeadLetter, Event, Mutation, Status, error_text, status_of
from harness import WORDCOUNT


@pytest.fixture(scope="module")
def wordcount():
    spec = importlib.util.spec_from_file_location("wordcount_example", WORDCOUNT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


async def test_split_emits_one_record_per_word(wordcount) -> None:
    ev = Event(topic="lines", value="The cat, the HAT; été!".encode())
    await wordcount.split(ev)
    assert [(r.topic, r.key, r.value) for r in ev.emitted] == [
        (wordcount.WORDS, w.encode(), b"1") for w in ["the", "cat", "the", "hat", "été"]
    ]
    assert set(wordcount.app.agents) == {"split"}  # stage 2 is not registered yet


async def test_split_dead_letters_invalid_utf8(wordcount) -> None:
    ev = Event(value=b"\xff")
    with pytest.raises(DeadLetter) as e:
        await wordcount.split(ev)
    assert status_of(e.value) is Status.DEAD_LETTER
    assert error_text(e.value).startswith("line is not UTF-8: UnicodeDecodeError: ")


async def test_count_keeps_state(wordcount) -> None:
    ev = Event(key=b"cat", value=b"1", state={wordcount.COUNTS: b"41"})
    await wordcount.count(ev)
    assert ev.mutations == [Mutation(wordcount.COUNTS, b"cat", b"42")]
    assert [(r.key, r.value) for r in ev.emitted] == [(b"cat", b"42")]
    first = Event(key=b"dog", value=b"1")  # no value in the table yet
    await wordcount.count(first)
    assert first.state(wordcount.COUNTS) == b"1"
