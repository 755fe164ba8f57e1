"""The context of a term in free text (negated, historical, hypothetical, family, current).

An implementation of the ConText algorithm (Harkema, Dowling, Thornblade, Chapman 2009, which
extends NegEx, Chapman et al. 2001; knowledge-base sources S300 and S301), written for magstat
on the standard library. The trigger lexicon is knowledge-base data (``context.toml``).

The rules:

1. The text is split into sentences at ``.`` ``;`` ``!`` ``?`` (a decimal point is not a
   sentence end) and into words.
2. Trigger phrases are found left to right, the longest phrase first. A pseudo-trigger ("no
   increase", "not only") is consumed and does nothing, so the trigger word inside it does not
   act; a phrase that is a pseudo-trigger of one category and a trigger of another ("no
   history of", "not ruled out") acts in the other. Terminators ("but", "however", "which"
   ...) are found the same way.
3. A forward trigger acts on the terms after it, a backward trigger on the terms before it,
   each up to the nearest terminator of its category (or a common one), the sentence end, or
   ``scope_words`` words, whichever comes first.
4. A term under several triggers takes the first context in :data:`PRECEDENCE`; a term no
   trigger reaches is ``current``.

.. versionadded:: 0.2.0
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from magstat.kb.cache import per_kb
from magstat.kb.schema import KnowledgeBase

__all__ = ["CONTEXTS", "FACT_CONTEXTS", "PRECEDENCE", "Context", "ContextOf", "context_of", "sentences"]

Context = str
"""One of :data:`CONTEXTS`."""

CONTEXTS: tuple[Context, ...] = ("current", "negated", "historical", "hypothetical", "family", "chronic")
"""``chronic`` is not from ConText: it marks a term inside the name of a lifelong diagnosis."""

FACT_CONTEXTS: tuple[Context, ...] = (*CONTEXTS, "resolved", "inactive", "remission", "unknown_status")
"""Every context a sign or condition fact may carry: the text contexts and the FHIR statuses."""

PRECEDENCE: tuple[Context, ...] = ("negated", "family", "hypothetical", "historical")
"""Which context wins when a term lies in the scope of triggers of several categories."""

_WORD = re.compile(r"[a-z0-9]+(?:['/][a-z0-9]+)*")
_SENTENCE_END = re.compile(r"[;!?]|\.(?=\s|$)|\n")


@dataclass(frozen=True, slots=True)
class ContextOf:
    """The context of one term and the trigger phrase that set it (``None`` when current)."""

    context: Context
    trigger: str | None = None


_CURRENT = ContextOf("current")


@dataclass(frozen=True, slots=True)
class _Lexicon:
    # phrase (tuple of words) -> tuple of (category, role); role: forward, backward,
    # bidirectional, pseudo, terminator. Category "*" for the common terminators.
    phrases: dict[tuple[str, ...], tuple[tuple[str, str], ...]]
    longest: int
    scope_words: int
    starts: frozenset[str]  # the first words of the trigger phrases: a text without one is current


@per_kb
def _lexicon(kb: KnowledgeBase) -> _Lexicon:
    """Compile the trigger lexicon once per knowledge base."""
    table: dict[tuple[str, ...], list[tuple[str, str]]] = {}

    def add(phrase: str, category: str, role: str) -> None:
        words = tuple(_WORD.findall(phrase.lower()))
        if words and (category, role) not in table.setdefault(words, []):
            table[words].append((category, role))

    for phrase in kb.context.terminators:
        add(phrase, "*", "terminator")
    for category in kb.context.categories.values():
        for role, phrases in (
            ("forward", category.forward),
            ("backward", category.backward),
            ("bidirectional", category.bidirectional),
            ("pseudo", category.pseudo),
            ("terminator", category.terminators),
        ):
            for phrase in phrases:
                add(phrase, category.id, role)
    longest = max((len(words) for words in table), default=0)
    starts = frozenset(
        words[0] for words, roles in table.items() if any(role in _TRIGGER_ROLES for _, role in roles)
    )
    return _Lexicon({k: tuple(v) for k, v in table.items()}, longest, kb.context.scope_words, starts)


_TRIGGER_ROLES = ("forward", "backward", "bidirectional")


def sentences(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences (or clauses ended by ``;``) of ``text``."""
    spans: list[tuple[int, int]] = []
    start = 0
    for end in _SENTENCE_END.finditer(text):
        spans.append((start, end.start()))
        start = end.end()
    spans.append((start, len(text)))
    return spans


@dataclass(frozen=True, slots=True)
class _Tag:
    first: int  # word index of the first word
    last: int  # word index after the last word
    category: str
    role: str
    phrase: str


def _tags(lex: _Lexicon, words: list[str]) -> list[_Tag]:
    """Trigger, pseudo-trigger and terminator phrases among the words, longest match first."""
    tags: list[_Tag] = []
    i = 0
    while i < len(words):
        for size in range(min(lex.longest, len(words) - i), 0, -1):
            key = tuple(words[i : i + size])
            roles = lex.phrases.get(key)
            if roles is None:
                continue
            phrase = " ".join(key)
            # A pseudo-trigger disarms its own category only: "no history of" is a pseudo-trigger
            # of the historical category (its "history of" must not act) and a negation trigger.
            # Its words are consumed either way, so no shorter trigger inside it acts.
            tags.extend(_Tag(i, i + size, cat, role, phrase) for cat, role in roles)
            i += size
            break
        else:
            i += 1
    return tags


def _stops(tags: list[_Tag], category: str) -> list[_Tag]:
    return [t for t in tags if t.role == "terminator" and t.category in ("*", category)]


def context_of(kb: KnowledgeBase, text: str, spans: list[tuple[int, int]]) -> list[ContextOf]:
    """The context of each term of ``text`` at the given character spans.

    Args:
        kb: the knowledge base holding the trigger lexicon (``context.toml``).
        text: the text, lower case (as the name matchers fold it).
        spans: character ``(start, end)`` of each recognised term.

    Returns:
        One :class:`ContextOf` per span, in the same order.

    .. versionadded:: 0.2.0

    """
    lex = _lexicon(kb)
    out = [_CURRENT] * len(spans)
    if not spans or not lex.phrases or lex.starts.isdisjoint(_WORD.findall(text)):
        return out  # no trigger phrase can start in the text: every term is current
    for s_start, s_end in sentences(text):
        inside = [k for k, (a, _b) in enumerate(spans) if s_start <= a < s_end]
        if not inside:
            continue
        found = list(_WORD.finditer(text, s_start, s_end))
        words = [m.group(0) for m in found]
        tags = _tags(lex, words)
        triggers = [t for t in tags if t.role in _TRIGGER_ROLES]
        if not triggers:
            continue
        for k in inside:
            a, b = spans[k]
            first = next((n for n, m in enumerate(found) if m.end() > a), len(found))
            last = next((n for n, m in enumerate(found) if m.start() >= b), len(found))
            hits: dict[str, str] = {}
            for t in triggers:
                if t.first < last and first < t.last:
                    continue  # the trigger is part of the term itself
                stops = _stops(tags, t.category)
                if t.role in ("forward", "bidirectional") and first >= t.last:
                    reach = min([s.first for s in stops if s.first >= t.last] + [t.last + lex.scope_words])
                    if first < reach:
                        hits.setdefault(t.category, t.phrase)
                if t.role in ("backward", "bidirectional") and last <= t.first:
                    reach = max([s.last for s in stops if s.last <= t.first] + [t.first - lex.scope_words])
                    if last > reach and first >= reach:
                        hits.setdefault(t.category, t.phrase)
            for category in PRECEDENCE:
                if category in hits:
                    out[k] = ContextOf(category, hits[category])
                    break
    return out
