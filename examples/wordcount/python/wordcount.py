"""Word count, the Python agent of examples/wordcount.

Stage 1 (``split``, running today): reads lines of text from the ``lines``
topic and emits one record per word to the ``words`` topic, keyed by the
word, with the value ``b"1"``:

    "the cat and the hat"  ->  (the, 1) (cat, 1) (and, 1) (the, 1) (hat, 1)

Keying by the word sends every occurrence of a word to the same partition of
``words``: that is the repartitioning a count needs.

Stage 2 (``count``, for when the worker supports tables): reads ``words``
and keeps a running count per word in the ``counts`` table. The worker
delivers each event with the table's value for the event's key (the word)
and applies ``set_state`` atomically with the offsets it commits, so counts
survive restarts and rebalances. It is written below; to switch it on,
declare the agent and the table in app.yaml (commented there) and uncomment
its ``@app.agent("count")`` line.

Run it against a worker running app.yaml (``$EDDY_ADDR``, else
127.0.0.1:6066)::

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
TOTALS = os.environ.get("WORDCOUNT_TOTALS_TOPIC", "word-totals")

_WORD = re.compile(r"\w+")

app = App()  # the worker at $EDDY_ADDR; token from $EDDY_TOKEN


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


# @app.agent("count")   # stage 2: uncomment once app.yaml declares it (tables)
async def count(event: Event) -> None:
    """words (keyed by word) -> running count per word in the counts table.

    ``event.state(COUNTS)`` is the word's count as of the events before this
    one; ``set_state`` is applied only if the handler returns (OK), together
    with the emitted total.
    """
    n = int(event.state(COUNTS) or b"0") + int(event.value or b"1")
    event.set_state(COUNTS, str(n))
    event.emit(TOTALS, key=event.key, value=str(n))


if __name__ == "__main__":
    app.main()
