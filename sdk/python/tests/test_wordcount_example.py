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
    assert set(wordcount.app.agents) == {"split", "count"}


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
    assert [(r.topic, r.key, r.value) for r in ev.emitted] == [(wordcount.OUT, b"cat", b"42")]
    first = Event(key=b"dog", value=b"1")  # no value in the table yet
    await wordcount.count(first)
    assert first.state(wordcount.COUNTS) == b"1"
    assert [(r.key, r.value) for r in first.emitted] == [(b"dog", b"1")]
    empty = Event(key=b"dog", value=b"", state={wordcount.COUNTS: b"1"})  # no value: adds 1
    await wordcount.count(empty)
    assert empty.mutations == [Mutation(wordcount.COUNTS, b"dog", b"2")]
    more = Event(key=b"dog", value=b"5", state={wordcount.COUNTS: b"2"})
    await wordcount.count(more)
    assert more.mutations == [Mutation(wordcount.COUNTS, b"dog", b"7")]


@pytest.mark.parametrize(
    ("key", "value", "stored", "error"),
    [
        (b"", b"1", None, "a word record needs the word as its key"),
        (b"cat", b"one", None, "value b'one' is not a count: ValueError: "),
        (b"cat", b"1", b"lots", "table counts holds b'lots' for b'cat', not a count: ValueError: "),
    ],
)
async def test_count_dead_letters_bad_records(wordcount, key, value, stored, error) -> None:
    ev = Event(key=key, value=value, state={} if stored is None else {wordcount.COUNTS: stored})
    with pytest.raises(DeadLetter) as e:
        await wordcount.count(ev)
    assert status_of(e.value) is Status.DEAD_LETTER
    assert error_text(e.value).startswith(error.replace("counts", wordcount.COUNTS, 1))
    assert not ev.mutations and not ev.emitted
