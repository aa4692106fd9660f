"""Sanctions screening: load a sanctions list and fuzzy-match party names against it.

Pure Python (no Temporal, no database). `SanctionsList.load` fails closed: anything
wrong with the file raises `SanctionsListError`, never an empty or partial list.

Names on both sides go through `normalize_name`-style processing (see `_tokens`):
NFKC, text under a right-to-left override put back in the order it is displayed in,
invisible/format characters and combining marks dropped, look-alike letters inside
Latin words mapped to Latin, other scripts transliterated with anyascii, lower-cased,
digits and @/$ standing for letters inside a word read as those letters ("V1kt0r"),
"vv" read as "w", punctuation removed, honorifics and legal forms stripped. A query is
also tried with "1" read as "l" and with runs of single letters joined into one word
("V.i.k.t.o.r", "B l a c k"): the best of these readings is its score.

Scoring (0-100) is Levenshtein-based: every inserted, deleted or substituted letter
counts as one edit, so at the default threshold of 88 a name may differ from a
listed one by roughly one edit per eight letters. (rapidfuzz's InDel `ratio`, which
token_sort_ratio uses, counts an insertion as half an error: "Ivan Petrov" vs the
listed "Ivana Petrova" - two independent edits in a short name, most likely a
different person - scores 91.7 there, 83.3 here.) The score of a listed name is the
best of:

* aligned: tokens paired one-to-one regardless of order ("SMITH, John" = "John
  Smith"); unpaired tokens count as fully wrong, so "Smith" alone scores 55 against
  "John Smith" and a single common token never matches a multi-token name.
* compact: the letters with spaces removed, in given and in sorted order, so a split
  or merged name ("Abdul Rahman" / "Abdulrahman") still matches.
* initials: a one-letter token pairs with a word of the same first letter, minus 5
  per initial - but only if the listed surname (the part before a comma, else the
  last token) is matched by a full word at >= 90% and no initial stands in for it.
  "J. Smith" hits "John Smith" (95); "J. Smyth", "John S." and "K. Smith" do not.
* subset: one name wholly contained in the other (an added or dropped middle name):
  >= 2 full tokens each matched at >= 80%, the listed surname among them, at least
  half of the listed tokens covered, and nothing left over on *both* sides (a
  conflicting middle name is evidence of a different person); minus 3.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from anyascii import anyascii
from rapidfuzz import fuzz, process
from rapidfuzz.distance import Levenshtein

HEADER = ("entry_id", "name", "aliases", "program")

INITIAL_PENALTY = 5.0
SUBSET_PENALTY = 3.0
_SURNAME_SIM = 0.9  # "matches strongly" for the surname an initial or subset relies on
_SUBSET_PAIR_SIM = 0.8  # every token of a subset match must be at least this close
_GOOD_PAIR_SIM = 0.5  # pairs below this are only made after initials have been placed


class SanctionsListError(Exception):
    """The sanctions list is missing, unreadable, malformed or empty."""


@dataclass(frozen=True)
class SanctionsEntry:
    entry_id: str
    names: tuple[str, ...]  # primary name first, then aliases
    program: str


@dataclass(frozen=True)
class ScreeningHit:
    entry_id: str
    listed_name: str  # the listed name/alias that matched
    score: float  # 0..100


# --- normalization -----------------------------------------------------------------

# Stripped as whole tokens (after normalization), unless nothing else would be left.
_HONORIFICS = {
    "mr",
    "mrs",
    "ms",
    "miss",
    "mx",
    "dr",
    "prof",
    "sir",
    "dame",
    "madam",
    "mme",
    "mlle",
    "herr",
    "frau",
    "hon",
    "rev",
}
_LEGAL_FORMS = {
    "llc",
    "ltd",
    "limited",
    "inc",
    "incorporated",
    "corp",
    "corporation",
    "co",
    "company",
    "plc",
    "llp",
    "lp",
    "gmbh",
    "ag",
    "sa",
    "sarl",
    "srl",
    "spa",
    "bv",
    "nv",
    "pte",
    "pty",
    "jsc",
    "ojsc",
    "pjsc",
    "cjsc",
    "ooo",
    "oao",
    "zao",
    "pao",
    "fze",
    "fzco",
    "fzc",
    "fzllc",
    "the",
}
_NOISE = _HONORIFICS | _LEGAL_FORMS
# Legal forms as anyascii writes them from other scripts: Russian ООО/ОАО/ЗАО/ПАО and
# Arabic شركة ("company").
_TRANSLITERATED_NOISE = {"ooo", "oao", "zao", "pao", "shrkh"}

# Invisible "letters" that are not in a format category, and the Arabic tatweel (a
# stretching stroke used to pad words).
_INVISIBLE = {"\u115f", "\u1160", "\u3164", "\uffa0", "\u2800", "\u0640"}
_DROP_CATEGORIES = {"Cf", "Mn", "Me"}  # zero-width/bidi/soft hyphen/BOM; combining marks

# Cyrillic/Greek letters that look like Latin ones. Inside a word that also has Latin
# letters they are spoofs and map to what they look like; in an all-Cyrillic/Greek word
# they are real letters and are transliterated (anyascii gives "Р" -> "R", not "P").
_CONFUSABLES = str.maketrans(
    {
        # Cyrillic
        "А": "A",
        "В": "B",
        "Е": "E",
        "К": "K",
        "М": "M",
        "Н": "H",
        "О": "O",
        "Р": "P",
        "С": "C",
        "Т": "T",
        "Х": "X",
        "У": "Y",
        "Ѕ": "S",
        "І": "I",
        "Ј": "J",
        "Һ": "H",
        "Ԝ": "W",
        "Ӏ": "I",
        "а": "a",
        "е": "e",
        "о": "o",
        "р": "p",
        "с": "c",
        "у": "y",
        "х": "x",
        "ѕ": "s",
        "і": "i",
        "ј": "j",
        "һ": "h",
        "ԁ": "d",
        "ԛ": "q",
        "ԝ": "w",
        "ӏ": "l",
        "к": "k",
        "м": "m",
        "т": "t",
        # Greek
        "Α": "A",
        "Β": "B",
        "Ε": "E",
        "Ζ": "Z",
        "Η": "H",
        "Ι": "I",
        "Κ": "K",
        "Μ": "M",
        "Ν": "N",
        "Ο": "O",
        "Ρ": "P",
        "Τ": "T",
        "Υ": "Y",
        "Χ": "X",
        "ο": "o",
        "α": "a",
        "ν": "v",
        "ρ": "p",
        "ι": "i",
        "κ": "k",
        "υ": "u",
        "χ": "x",
        "γ": "y",
    }
)
_ASCII_LETTER = re.compile(r"[A-Za-z]")
# Digits and symbols written for letters inside a word ("V1kt0r Bl4ckl1st0v"); a word
# of digits only (a number) is left alone. "1" is read as "i" here; the query is also
# tried as "l" (see SanctionsList.screen).
_LEET = {
    "0": "o",
    "1": "i",
    "2": "z",
    "3": "e",
    "4": "a",
    "5": "s",
    "6": "g",
    "7": "t",
    "8": "b",
    "9": "g",
    "@": "a",
    "$": "s",
}
_LEET_I, _LEET_L = str.maketrans(_LEET), str.maketrans(_LEET | {"1": "l"})
_LETTER = re.compile(r"[a-z]")
_DIGIT_OR_SYMBOL = re.compile(r"[0-9@$]")
_APOSTROPHES = re.compile(r"['`]")  # O'Brien -> obrien; anyascii writes Arabic ayn as `
_NON_ALNUM = re.compile(r"[^a-z0-9]+")


_RLO, _PDF = "\u202e", "\u202c"


def _displayed_order(text: str) -> str:
    """Text after a right-to-left override (U+202E, up to its U+202C or the end) is shown
    reversed: "\u202evotsilkcalB rotkiV" reads as "Viktor Blacklistov". Put it in the
    order a reader sees, so dropping the invisible override does not hide the name."""
    while (start := text.find(_RLO)) != -1:
        end = text.find(_PDF, start)
        end = len(text) if end == -1 else end
        text = text[:start] + text[start + 1 : end][::-1] + text[end + 1 :]
    return text


def _clean(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)  # fullwidth, ligatures, math letters
    text = _displayed_order(text)
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if cat in _DROP_CATEGORIES or ch in _INVISIBLE:
            continue  # removed, not spaced: "Vik\u200btor" is "Viktor"
        out.append(" " if cat[0] == "Z" or cat == "Cc" else ch)
    return "".join(out)


def _raw_tokens(text: str, one_as_l: bool = False) -> list[tuple[str, bool]]:
    """Lower-case ASCII tokens of `text`, each flagged if it was written in Latin script.

    Noise words are still present; the flag keeps a transliteration from being taken
    for one (Arabic "عمر", Omar, transliterates to "mr").
    """
    leet = _LEET_L if one_as_l else _LEET_I
    tokens = []
    for word in _clean(text).split():
        latin = bool(_ASCII_LETTER.search(word))
        if latin:
            word = word.translate(_CONFUSABLES)
        ascii_word = _APOSTROPHES.sub("", anyascii(word).lower())
        if _LETTER.search(ascii_word) and _DIGIT_OR_SYMBOL.search(ascii_word):
            ascii_word = ascii_word.translate(leet)
        tokens += [(t.replace("vv", "w"), latin) for t in _NON_ALNUM.sub(" ", ascii_word).split()]
    return _merge_dotted(tokens)


def _join_single_letters(tokens: list[str], run: int = 3) -> list[str]:
    """Runs of `run` or more one-letter tokens joined into one word: a name spelt out
    letter by letter ("V.i.k.t.o.r", "B l a c k"). Shorter runs stay: they are initials."""
    out: list[str] = []
    i = 0
    while i < len(tokens):
        j = i
        while j < len(tokens) and len(tokens[j]) == 1:
            j += 1
        if j - i >= run:
            out.append("".join(tokens[i:j]))
            i = j
        else:
            out.append(tokens[i])
            i += 1
    return out


def _merge_dotted(tokens: list[tuple[str, bool]]) -> list[tuple[str, bool]]:
    """Join a dotted legal form split into letters ("L.L.C." -> "llc") at either end."""
    for start in (True, False):
        seq = tokens if start else tokens[::-1]
        run = 0
        while run < len(seq) and len(seq[run][0]) == 1:
            run += 1
        letters = [t for t, _ in seq[:run]]
        word = "".join(letters if start else letters[::-1])
        if run >= 2 and word in _LEGAL_FORMS:
            merged = (word, True)
            tokens = [merged, *tokens[run:]] if start else [*tokens[:-run], merged]
    return tokens


def _keep(tokens: list[tuple[str, bool]]) -> list[int]:
    """Indices of the tokens that are not honorifics/legal forms (all, if none would be left)."""
    kept = [i for i, (t, latin) in enumerate(tokens) if not ((latin and t in _NOISE) or t in _TRANSLITERATED_NOISE)]
    return kept or list(range(len(tokens)))


def normalize_name(name: str, *, one_as_l: bool = False) -> str:
    """The comparable form of a name: lower-case ASCII words, noise removed, order kept."""
    tokens = _raw_tokens(name, one_as_l)
    return " ".join(tokens[i][0] for i in _keep(tokens))


def query_readings(name: str) -> list[str]:
    """The ways a screened name may be read (see the module docstring), most literal first."""
    readings: list[str] = []
    for one_as_l in (False, True):
        q = normalize_name(name, one_as_l=one_as_l)
        for reading in (q, " ".join(_join_single_letters(q.split()))):
            if reading and reading not in readings:
                readings.append(reading)
    return readings


# --- scoring -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Name:
    entry: SanctionsEntry
    listed: str
    tokens: tuple[str, ...]
    surname: frozenset[int]  # token indices that make up the surname
    norm: str
    compact: str
    compact_sorted: str


def _prepare(entry: SanctionsEntry, listed: str) -> _Name:
    # "SMITH, John" (the usual list format): the surname is the part before the comma.
    head, comma, tail = listed.partition(",")
    head_raw = _raw_tokens(head)
    raw = head_raw + _raw_tokens(tail)
    kept = _keep(raw)
    tokens = tuple(raw[i][0] for i in kept)
    if not tokens:
        raise SanctionsListError(f"entry {entry.entry_id}: name {listed!r} has no letters/digits")
    surname = frozenset(k for k, i in enumerate(kept) if comma and i < len(head_raw))
    return _Name(
        entry=entry,
        listed=listed,
        tokens=tokens,
        surname=surname or frozenset({len(tokens) - 1}),
        norm=" ".join(tokens),
        compact="".join(tokens),
        compact_sorted="".join(sorted(tokens)),
    )


def _score(q: tuple[str, ...], name: _Name) -> float:
    lt = name.tokens
    if q == lt:
        return 100.0
    best = 100.0 * max(
        Levenshtein.normalized_similarity("".join(q), name.compact),
        Levenshtein.normalized_similarity("".join(sorted(q)), name.compact_sorted),
    )

    # Greedy one-to-one pairing (names are a handful of tokens; greedy is exact in practice).
    full: list[tuple[float, int, int, int]] = []  # (similarity, q index, listed index, edits)
    for i, a in enumerate(q):
        for j, b in enumerate(lt):
            if len(a) > 1 and len(b) > 1:
                d = Levenshtein.distance(a, b)
                full.append((1.0 - d / max(len(a), len(b)), i, j, d))
    full.sort(key=lambda p: (-p[0], p[1], p[2]))
    used_q: set[int] = set()
    used_l: set[int] = set()
    pairs: list[tuple[float, int, int, int]] = []

    def take(min_sim: float) -> None:
        for p in full:
            if p[0] >= min_sim and p[1] not in used_q and p[2] not in used_l:
                pairs.append(p)
                used_q.add(p[1])
                used_l.add(p[2])

    take(_GOOD_PAIR_SIM)
    initials: list[tuple[int, int]] = []
    for i, a in enumerate(q):
        for j, b in enumerate(lt):
            if (
                i not in used_q
                and j not in used_l
                and (len(a) == 1 or len(b) == 1)
                and a[0] == b[0]
                and j not in name.surname  # an initial never stands for the surname
            ):
                initials.append((i, j))
                used_q.add(i)
                used_l.add(j)
    surname_ok = any(j in name.surname and s >= _SURNAME_SIM for s, _, j, _ in pairs)
    if not surname_ok:  # initials only count when the surname matches strongly
        for i, j in initials:
            used_q.discard(i)
            used_l.discard(j)
        initials = []
    take(-1.0)  # pair the leftovers too: a poor pair costs less than two unpaired tokens

    unpaired = sum(len(q[i]) for i in range(len(q)) if i not in used_q)
    unpaired += sum(len(lt[j]) for j in range(len(lt)) if j not in used_l)
    cost = sum(d for *_, d in pairs) + unpaired
    weight = sum(max(len(q[i]), len(lt[j])) for _, i, j, _ in pairs) + unpaired
    if pairs:
        best = max(best, 100.0 * (1.0 - cost / weight) - INITIAL_PENALTY * len(initials))

    strong = [p for p in pairs if p[0] >= _SUBSET_PAIR_SIM]
    cov_q = {i for _, i, _, _ in strong} | {i for i, _ in initials}
    cov_l = {j for _, _, j, _ in strong} | {j for _, j in initials}
    all_q, all_l = len(cov_q) == len(q), len(cov_l) == len(lt)
    if (
        all_q != all_l  # exactly one side has tokens left over
        and len(strong) >= 2
        and surname_ok
        and 2 * len(cov_l) >= len(lt)
    ):
        d = sum(p[3] for p in strong)
        w = sum(max(len(q[i]), len(lt[j])) for _, i, j, _ in strong)
        best = max(best, 100.0 * (1.0 - d / w) - INITIAL_PENALTY * len(initials) - SUBSET_PENALTY)
    return best


# --- the list ----------------------------------------------------------------------


class SanctionsList:
    entries: tuple[SanctionsEntry, ...]

    def __init__(self, entries: Iterable[SanctionsEntry]) -> None:
        self.entries = tuple(entries)
        if not self.entries:
            raise SanctionsListError("sanctions list has no entries")
        # Normalized once here, so screening only normalizes the query.
        self._names = [_prepare(e, n) for e in self.entries for n in e.names]
        self._norms = [n.norm for n in self._names]
        self._exact: dict[str, _Name] = {}
        for n in self._names:
            self._exact.setdefault(n.norm, n)

    @classmethod
    def load(cls, path: Path) -> SanctionsList:
        path = Path(path)
        try:
            with path.open(encoding="utf-8-sig", newline="") as f:
                rows = list(csv.reader(f, strict=True))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise SanctionsListError(f"cannot read sanctions list {path}: {exc}") from exc
        rows = [r for r in rows if any(c.strip() for c in r)]
        if not rows or tuple(c.strip().lower() for c in rows[0]) != HEADER:
            got = rows[0] if rows else "nothing"
            raise SanctionsListError(f"{path}: header must be {','.join(HEADER)}, got {got}")
        entries, seen = [], set()
        for line, row in enumerate(rows[1:], start=2):
            if len(row) != len(HEADER):
                raise SanctionsListError(f"{path} row {line}: expected {len(HEADER)} columns, got {len(row)}")
            entry_id, name, aliases, program = (c.strip() for c in row)
            if not entry_id or not name or not program:
                raise SanctionsListError(f"{path} row {line}: entry_id, name and program are required")
            if entry_id in seen:
                raise SanctionsListError(f"{path} row {line}: duplicate entry_id {entry_id}")
            seen.add(entry_id)
            names = [name] + [a.strip() for a in aliases.split("|") if a.strip()]
            entries.append(SanctionsEntry(entry_id, tuple(dict.fromkeys(names)), program))
        if not entries:
            raise SanctionsListError(f"{path}: sanctions list has no entries")
        return cls(entries)

    def screen(self, name: str, threshold: float) -> ScreeningHit | None:
        """The best-scoring listed name at or above `threshold` (0-100), else None: the
        best over every reading of the name (almost always just one)."""
        best: ScreeningHit | None = None
        for q in query_readings(name or ""):
            hit = self._screen_reading(q, threshold)
            if hit is not None and (best is None or hit.score > best.score):
                best = hit
        return best

    def _screen_reading(self, q: str, threshold: float) -> ScreeningHit | None:
        exact = self._exact.get(q)
        if exact is not None and threshold <= 100.0:
            return ScreeningHit(exact.entry.entry_id, exact.listed, 100.0)
        tokens = tuple(q.split())
        # Native pre-filter: every path of `_score` that can reach the threshold shares
        # most letters with the listed name, which token_set_ratio rewards generously;
        # only these candidates get the (slower, Python) full score.
        candidates = process.extract(
            q,
            self._norms,
            scorer=fuzz.token_set_ratio,
            processor=None,
            score_cutoff=max(0.0, threshold - 40.0),
            limit=None,
        )
        best: tuple[float, int] | None = None
        for _, _, idx in candidates:
            score = round(_score(tokens, self._names[idx]), 2)
            if score >= threshold and (best is None or (score, -idx) > (best[0], -best[1])):
                best = (score, idx)
        if best is None:
            return None
        hit = self._names[best[1]]
        return ScreeningHit(hit.entry.entry_id, hit.listed, best[0])
