"""Word count, the Python agents of examples/wordcount (the Python twin of
the Go example there).

``split`` reads lines of text from the ``lines`` topic and emits one record
per word to the ``words`` topic, keyed by the word, with the value ``b"1"``:

    "the cat and the hat"  ->  (the, 1) (cat, 1) (and, 1) (the, 1) (hat, 1)

Keying by the word sends every occurrence of a word to the same partition of
``words``: a table's state lives with the partition of its key, so the count
of a word can only be kept where the word's events arrive.

``count`` reads ``words`` and keeps the count of each word in the ``counts``
table (the decimal count as the value), and emits ``word -> count`` to the
``word-counts`` topic. The worker delivers each event with the table's value
for the event's key and writes ``set_state`` to the table's changelog before
the event counts as done, so counts survive restarts and rebalances.

Run it against a worker running app.yaml (``$EDDY_ADDR``, else
127.0.0.1:6066; app ``wordcount``, or ``$EDDY_APP``)::

    pip install ./sdk/python
    python examples/wordcount/python/wordcount.py

Ctrl-C (SIGINT) or SIGTERM stops it gracefully.
"""

from __future__ import annotations

import os
import re

from eddy_agent import App, DeadLetter, Event

# Topic and table names; the environment overrides them (the tests use fresh
# topics for every run).
WORDS = os.environ.get("WORDCOUNT_WORDS_TOPIC", "words")
COUNTS = os.environ.get("WORDCOUNT_COUNTS_TABLE", "counts")
OUT = os.environ.get("WORDCOUNT_OUT_TOPIC", "word-counts")

_WORD = re.compile(r"\w+")

# The app of app.yaml ($EDDY_APP overrides it): a worker of another app
# refuses these agents. The worker at $EDDY_ADDR; token from $EDDY_TOKEN.
app = App(app=os.environ.get("EDDY_APP", "wordcount"))


def words(line: str) -> list[str]:
    """The words of a line, lower-cased: runs of letters, digits and underscores."""
    return _WORD.findall(line.lower())


@app.agent("split")
async def split(event: Event) -> None:
    """lines -> (word, b"1") records on the words topic, one per word."""
    try:
        line = event.value.decode("utf-8")
    except UnicodeDecodeError as e:
        # Retrying cannot fix it: send the line to the dead-letter topic
        # (<app>-split-dlq) with the reason.
        raise DeadLetter("line is not UTF-8") from e
    for word in words(line):
        event.emit(WORDS, key=word, value=b"1")


@app.agent("count")
async def count(event: Event) -> None:
    """words (keyed by word) -> count per word in the counts table, and
    word -> count on the output topic.

    Adds the event's value (1 when empty) to ``event.state(COUNTS)``, the
    word's count as of the events before this one. ``set_state`` and the
    emitted count take effect only if the handler returns (OK). A value or a
    stored count that is not a number is dead-lettered: retrying cannot fix it.
    """
    if not event.key:
        raise DeadLetter("a word record needs the word as its key")
    try:
        add = int(event.value) if event.value else 1
    except ValueError as e:
        raise DeadLetter(f"value {event.value!r} is not a count") from e
    stored = event.state(COUNTS)
    try:
        n = int(stored) if stored is not None else 0
    except ValueError as e:
        raise DeadLetter(f"table {COUNTS} holds {stored!r} for {event.key!r}, not a count") from e
    n += add
    event.set_state(COUNTS, str(n))
    event.emit(OUT, key=event.key, value=str(n))


if __name__ == "__main__":
    app.main()
