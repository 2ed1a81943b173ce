"""Parse, normalise and judge short VQA answers, and detect abstention.

Shared by the rewards and the evaluator (`rlkit.eval`), so a completion is judged the same way in training and
evaluation. Pure string work: no model, no I/O. `judge(completion, answer)` runs the pipeline:
`completion_to_text` -> `extract_answer` (last `<answer>` block, else the free text) -> `is_abstention` -> `is_correct`
(after `normalize`). An empty answer is a wrong answer, never an abstention: silence must not earn the abstention
reward, or the policy learns to say nothing.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

# Same phrase as `data_builders.contract.ABSTAIN_TEXT`, hard-coded so rlkit.rewards never imports data_builders.
ABSTAIN_TEXT = "cannot tell"

# Relative (and absolute, for values near 0) tolerance of numeric answers: exact for counts, forgiving "3.0" vs "3".
DEFAULT_TOL = 1e-6

# Phrases that say "I cannot answer" whatever surrounds them: a match is an abstention. Written in the canonical
# form produced by `_canonical_words` (contractions expanded, lowercase, no punctuation), matched on word boundaries.
INABILITY_PHRASES: tuple[str, ...] = (
    ABSTAIN_TEXT,
    "cannot determine", "cannot be determined", "cannot answer", "cannot be answered", "cannot see",
    "cannot be seen", "cannot identify", "cannot be identified", "cannot say", "cannot confirm", "cannot read",
    "cannot make out", "cannot count", "cannot know", "cannot infer", "cannot be inferred", "cannot judge",
    "cannot be sure", "cannot verify", "unable to", "not able to", "not possible to", "impossible to",
    "no way to", "hard to tell", "difficult to tell", "hard to say", "difficult to say",
    "not sure", "unsure", "uncertain", "not certain", "do not know", "no idea", "unknown", "not enough information",
    "insufficient information", "not enough detail", "not enough visual", "not determinable", "indeterminable",
    "undeterminable", "unanswerable", "i abstain",
)  # fmt: skip

# Phrases about missing evidence that are also how a committed yes/no answer is phrased ("No, the image does not
# show a dog" answers "Is there a dog?"). They mark an abstention unless the answer starts with yes/no.
EVIDENCE_PHRASES: tuple[str, ...] = (
    "not visible", "not clearly visible", "not shown", "does not show", "do not show", "not clear", "unclear",
    "no image", "image is blank", "blank image", "too blurry", "too blurred", "too dark", "too small",
    "too low resolution", "too pixelated",
)  # fmt: skip

DEFAULT_ABSTENTION_PHRASES: tuple[str, ...] = INABILITY_PHRASES + EVIDENCE_PHRASES

# Chat-template and tokenizer tokens that can leak into decoded completions (`skip_special_tokens=False`).
_SPECIAL_TOKEN_RE = re.compile(
    r"<\|[^<>|]{0,64}\|>|</?s>|<pad>|<unk>|<image>|<video>|<eos>|<bos>|<(?:start|end)_of_(?:turn|image)>"
)
_THINK_RE = re.compile(r"<think>.*?(?:</think>|$)", re.IGNORECASE | re.DOTALL)
_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.IGNORECASE | re.DOTALL)
_OPEN_ANSWER_RE = re.compile(r"<answer>(.*)$", re.IGNORECASE | re.DOTALL)
_LEAD_IN_RE = re.compile(
    r"^(?:(?:so|thus|therefore|well)\s*,?\s+)?(?:(?:the|my)\s+)?(?:final\s+|short\s+)?answer"
    r"\s*(?:is|would be)?\s*[:\-]?\s*"
    r"|^(?:it|this|that)\s*(?:is|'s|\u2019s)\s+"
    r"|^(?:they|there)\s+(?:are|is)\s+"
    r"|^i\s+(?:see|think|believe)\s+(?:that\s+)?",
    re.IGNORECASE,
)
# A number is a maximal run of digits (thousands separators and decimals allowed) not glued to letters; everything
# else that is alphanumeric is a word; the rest (punctuation, symbols, marks) separates tokens and is dropped.
_TOKEN_RE = re.compile(r"(?<![^\W_])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![^\W_])|[^\W_]+")
_NUMBER_RE = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
_ARTICLES = frozenset({"a", "an", "the"})
_YES = frozenset({"yes", "yeah", "yep", "yup", "true", "correct"})
_NO = frozenset({"no", "nope", "nah", "false", "incorrect"})
_NEGATIONS = frozenset({"not", "no", "never", "neither", "nor"})
_SMALL = {w: i for i, w in enumerate((
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"))}  # fmt: skip
_TENS = {w: 10 * i for i, w in enumerate(
    ("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"), start=2)}  # fmt: skip
_SCALES = {"thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
_NUMBER_WORDS = frozenset({*_SMALL, *_TENS, "hundred", *_SCALES})
# Apostrophe-free spellings models emit ("cant tell"), mapped like their contracted forms.
_CONTRACTIONS = {"cant": "cannot", "dont": "do not", "doesnt": "does not", "isnt": "is not", "arent": "are not",
                 "wont": "will not", "couldnt": "could not", "wasnt": "was not", "im": "i am"}  # fmt: skip
_CHOICE_LETTER_RE = re.compile(
    r"(?:(?:option|choice|answer)\s*:?\s*)?[(\[]?([a-z])[)\]]?[.:]?", re.IGNORECASE | re.ASCII
)
_CHOICE_LETTER_TEXT_RE = re.compile(r"[(\[]?([A-Z])[)\].:]\s+\S.*", re.DOTALL | re.ASCII)


@dataclass(frozen=True)
class Judgement:
    """How one completion was read: `parsed` answer (not normalised; "" if none), `abstained`, `correct`
    (always `False` when `abstained`). Group or compare answers by `normalized`, not by `parsed`."""

    parsed: str
    abstained: bool
    correct: bool

    @property
    def normalized(self) -> str:
        """`normalize(parsed)`: "Red." and "red" agree (choice letters are not mapped: no choices here)."""
        return normalize(self.parsed)


def strip_special_tokens(text: str) -> str:
    """Remove chat-template / tokenizer special tokens such as `<|im_end|>`, `<|image_pad|>` or `</s>`."""
    return _SPECIAL_TOKEN_RE.sub(" ", text)


def completion_to_text(completion: Any) -> str:
    """Text of a TRL completion: a string, the last assistant message of a conversational completion (text parts
    of multimodal content joined), a single message dict, or `None` (""). Special tokens are left in place.

    Example:
    >>> completion_to_text([{"role": "assistant", "content": "red"}])
    'red'
    >>> completion_to_text([{"role": "assistant", "content": [{"type": "text", "text": "two"}]}])
    'two'
    """
    if completion is None:
        return ""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and all(isinstance(m, Mapping) for m in completion):
        assistant = [m for m in completion if m.get("role", "assistant") == "assistant"]
        completion = (assistant or completion or [{}])[-1]
    if not isinstance(completion, Mapping):
        raise TypeError(f"cannot read a completion of type {type(completion).__name__}; expected str or messages")
    content = completion.get("content") or ""
    if isinstance(content, str):
        return content
    # Multimodal message content: [{"type": "text", "text": ...}, {"type": "image"}, ...]
    return " ".join(part["text"] for part in content if isinstance(part, Mapping) and part.get("text"))


def extract_answer(text: str | Any) -> str:
    """Extract the answer span from a completion.

    Special tokens and `<think>...</think>` blocks are dropped (an unclosed `<think>` runs to the end: a truncated
    reasoning has no answer). If `<answer>` tags are present the content of the *last* block is the answer (an
    unclosed final `<answer>` counts, for completions cut at the length limit); otherwise the free text, minus a
    lead-in like "The answer is" or "It's", is.

    Args:
        text: The completion, as text or in any form `completion_to_text` reads.

    Returns:
        `str`: The answer, stripped but not normalised ("" when there is none).

    Example:
    >>> extract_answer("<think>blue or red?</think><answer> Red </answer><|im_end|>")
    'Red'
    >>> extract_answer("The answer is: three.")
    'three.'
    """
    text = text if isinstance(text, str) else completion_to_text(text)
    text = _THINK_RE.sub(" ", strip_special_tokens(text))
    tagged = _ANSWER_RE.findall(text)
    if tagged:
        return tagged[-1].strip()
    opened = _OPEN_ANSWER_RE.search(text)
    if opened:
        return opened.group(1).strip()
    answer = text.strip().strip("\"'` ")
    for _ in range(3):  # "So the answer is: it's red" peels twice
        stripped = _LEAD_IN_RE.sub("", answer, count=1).strip()
        if not stripped or stripped == answer:
            break
        answer = stripped
    return answer


def _tokens(text: str) -> list[str]:
    """Fold case, accents and apostrophes ("Don't" -> "dont"), then split into word and number tokens."""
    # Decompose, casefold, drop accents ("Café" == "cafe", "İ" -> "i"), recompose: stable under a second pass.
    text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", strip_special_tokens(text)).casefold())
    text = unicodedata.normalize("NFKC", "".join(c for c in text if not unicodedata.combining(c)))
    text = text.replace("'", "").replace("\u2019", "")
    return _TOKEN_RE.findall(text)


def _canonical_number(token: str) -> str:
    """'1,000' -> '1000', '3.50' -> '3.5', '007' -> '7', '-0' -> '0' (exact: Decimal, no float rounding)."""
    value = Decimal(token.replace(",", ""))
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def _words_to_number(words: list[str]) -> int | None:
    """Read a run of number words ("twenty one", "a hundred and five"); `None` if it is not one number."""
    total, current, last = 0, 0, ""
    for w in words:
        if w in _SMALL and (last in ("", "hundred", "scale", "and") or (last == "ten" and _SMALL[w] < 10)):
            current, last = current + _SMALL[w], "small"
        elif w in _TENS and last in ("", "hundred", "scale", "and"):
            current, last = current + _TENS[w], "ten"
        elif w == "hundred" and last in ("", "small", "ten") and current < 100:
            current, last = max(current, 1) * 100, "hundred"  # a bare "hundred" is 100, as in "a hundred"
        elif w in _SCALES and last not in ("", "scale", "and"):
            total, current, last = total + current * _SCALES[w], 0, "scale"
        elif w == "and" and last in ("hundred", "scale"):
            last = "and"
        else:
            return None
    return None if last in ("", "and") else total + current


def _replace_number_words(tokens: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(tokens):
        j = i
        while j < len(tokens) and (tokens[j] in _NUMBER_WORDS or (tokens[j] == "and" and j > i)):
            j += 1
        while j > i and tokens[j - 1] == "and":  # "a hundred and ten cats" keeps the "and"; "five and" does not
            j -= 1
        if j == i:
            out.append(tokens[i])
            j += 1
        elif (value := _words_to_number(tokens[i:j])) is not None:
            out.append(str(value))
        else:  # "one two" is a list of numbers, not one number: convert word by word
            out.extend(w if _words_to_number([w]) is None else str(_words_to_number([w])) for w in tokens[i:j])
        i = j
    return out


def normalize(text: str, choices: Sequence[str] | None = None) -> str:
    """Normalise an answer for comparison.

    Lowercases (Unicode casefold, NFKC), drops punctuation and the articles a/an/the (unless nothing else is left),
    writes numbers canonically ("three" -> "3", "1,000" -> "1000", "3.50" -> "3.5", "twenty-one" -> "21") and maps
    yes/no variants ("yeah", "true" -> "yes"; "nope", "false" -> "no"). With `choices`, a multiple-choice letter
    ("B", "(b)", "Option B", "B. blue") is replaced by the normalised text of that choice. Idempotent.

    Args:
        text (`str`): The answer (usually the output of `extract_answer`).
        choices (`Sequence[str]`, *optional*): Answer options, in letter order (A, B, ...).

    Returns:
        `str`: Space-separated tokens; "" for an empty or punctuation-only answer.

    Example:
    >>> normalize("The Twenty-One apples!")
    '21 apples'
    >>> normalize("(b)", choices=["red", "Blue"])
    'blue'
    """
    text = (_choice_from_letter(text, choices) if choices else None) or text
    tokens = [_canonical_number(t) if _NUMBER_RE.fullmatch(t) else t for t in _tokens(text)]
    tokens = _replace_number_words(tokens)
    tokens = [t for t in tokens if t not in _ARTICLES] or tokens
    if len(tokens) == 1 and tokens[0] in _YES | _NO:
        return "yes" if tokens[0] in _YES else "no"
    return " ".join(tokens)


def _choice_from_letter(text: str, choices: Sequence[str]) -> str | None:
    """The choice named by a letter answer ("B", "(b)", "option b", "B. blue"), or `None`."""
    text = text.strip()
    match = _CHOICE_LETTER_RE.fullmatch(text) or _CHOICE_LETTER_TEXT_RE.fullmatch(text)
    if match is None:
        return None
    index = ord(match.group(1).lower()) - ord("a")
    return str(choices[index]) if index < len(choices) else None


def _match_choice(text: str, choices: Sequence[str]) -> str | None:
    """The normalised choice an answer picks: by letter, by exact text, or the only choice it mentions."""
    by_letter = _choice_from_letter(text, choices)
    if by_letter is not None:
        return normalize(by_letter)
    pred = normalize(text)
    normalized = [normalize(str(c)) for c in choices]
    if pred in normalized:
        return pred
    # "the ball is red" picks "red"; "red or blue" names two choices and picks none (no credit for hedging lists);
    # "not red" names red without picking it.
    if _NEGATIONS.intersection(pred.split()) - set(" ".join(normalized).split()):
        return None
    mentioned = {c for c in normalized if c and f" {c} " in f" {pred} "}
    return mentioned.pop() if len(mentioned) == 1 else None


def is_correct(pred: str, answer: str, choices: Sequence[str] | None = None, tol: float = DEFAULT_TOL) -> bool:
    """Does a predicted answer match the ground truth?

    Pure matching: it does not look for abstention (use `judge`, which never marks an abstention correct).
    Rules, after `normalize` on both sides:

    - equal strings match;
    - with `choices`: both sides are mapped to a choice (letter, exact text, or the single choice mentioned) and
      compared; an answer that mentions several choices matches none;
    - numbers match within `tol` (relative, with the same absolute floor near 0); a numeric answer may sit in a
      phrase with exactly one number and no negation ("3 circles" matches "3", "not 3" does not);
    - a yes/no ground truth matches a prediction that starts with that word ("Yes, it is red" matches "yes").

    Anything else is wrong: "the ball is red" does not match "red" without `choices`, so listing candidates never
    earns credit.

    Args:
        pred (`str`): The predicted answer (e.g. `extract_answer(completion)`).
        answer (`str`): The ground-truth answer.
        choices (`Sequence[str]`, *optional*): Multiple-choice options in letter order.
        tol (`float`, *optional*, defaults to `1e-6`): Numeric tolerance.

    Returns:
        `bool`

    Example:
    >>> is_correct("Three.", "3"), is_correct("B", "blue", choices=["red", "blue"]), is_correct("red or blue", "red")
    (True, True, False)
    """
    pred_norm, gold_norm = normalize(pred), normalize(str(answer))
    if not pred_norm or not gold_norm:
        return False
    if choices:
        pred_choice, gold_choice = _match_choice(pred, choices), _match_choice(str(answer), choices)
        if pred_choice is not None and gold_choice is not None:
            return pred_choice == gold_choice
    if pred_norm == gold_norm:
        return True
    if _NUMBER_RE.fullmatch(gold_norm):  # normalised numbers carry no thousands separators: Decimal reads them
        gold, tokens = Decimal(gold_norm), pred_norm.split()
        numbers = [Decimal(t) for t in tokens if _NUMBER_RE.fullmatch(t)]
        if len(numbers) == 1 and not _NEGATIONS.intersection(tokens):
            return abs(numbers[0] - gold) <= Decimal(str(tol)) * max(Decimal(1), abs(gold))
        return False
    if gold_norm in ("yes", "no"):
        first = pred_norm.split()[0]
        return normalize(first) == gold_norm
    return False


def _canonical_words(text: str) -> str:
    """Lowercase words with contractions expanded ("can't" / "can not" -> "cannot"), for phrase matching."""
    text = strip_special_tokens(text).replace("\u2019", "'")
    text = re.sub(r"\bcan\s*'?\s*t\b|\bcan not\b", "cannot", text, flags=re.IGNORECASE)
    text = re.sub(r"\bwon't\b", "will not", text, flags=re.IGNORECASE)
    text = re.sub(r"n't\b", " not", text, flags=re.IGNORECASE)
    return " ".join(_CONTRACTIONS.get(t, t) for t in _tokens(text))


# The default lists in the form they are matched in, computed once rather than per completion.
_CANONICAL_INABILITY = tuple(_canonical_words(p) for p in INABILITY_PHRASES)
_CANONICAL_EVIDENCE = tuple(_canonical_words(p) for p in EVIDENCE_PHRASES)


def is_abstention(
    text: str, phrases: Sequence[str] | None = None, evidence_phrases: Sequence[str] | None = None
) -> bool:
    """Does an answer decline to answer ("cannot tell", "I don't know", "not visible", ...)?

    A phrase counts when it appears as whole words, after lowercasing and expanding contractions, so "can't tell",
    "Can not tell." and "cannot tell" are the same. Two lists:

    - `phrases` (default `INABILITY_PHRASES`): any match is an abstention. This includes hedged guesses such as
      "not sure, but red": the model says it is guessing, which is the behaviour being taught, and the guess is not
      scored, so hedging never earns accuracy.
    - `evidence_phrases` (default `EVIDENCE_PHRASES`): a match is an abstention unless the answer starts with
      yes/no, because "No, the image does not show a dog" is a committed answer to "Is there a dog?".

    "I can tell it is red", "no" and "" are not abstentions (an empty answer is a wrong answer, not a refusal).

    Args:
        text (`str`): The answer (usually `extract_answer(completion)`).
        phrases (`Sequence[str]`, *optional*): Replaces `INABILITY_PHRASES`.
        evidence_phrases (`Sequence[str]`, *optional*): Replaces `EVIDENCE_PHRASES`; pass `()` to disable.

    Returns:
        `bool`

    Example:
    >>> is_abstention("I can't tell from this image."), is_abstention("no"), is_abstention("I can tell it is red")
    (True, False, False)
    """
    words = _canonical_words(text)
    if not words:
        return False
    padded = f" {words} "
    strong = _CANONICAL_INABILITY if phrases is None else [_canonical_words(p) for p in phrases]
    if any(f" {p} " in padded for p in strong if p):
        return True
    weak = _CANONICAL_EVIDENCE if evidence_phrases is None else [_canonical_words(p) for p in evidence_phrases]
    if not any(f" {p} " in padded for p in weak if p):
        return False
    return normalize(words.split()[0]) not in ("yes", "no")


def judge(
    completion: Any,
    answer: str | None,
    choices: Sequence[str] | None = None,
    *,
    abstention_phrases: Sequence[str] | None = None,
    evidence_phrases: Sequence[str] | None = None,
    tol: float = DEFAULT_TOL,
) -> Judgement:
    """Judge one completion: parsed answer, abstained or not, correct or not (the evaluator's entry point too).

    Args:
        completion: The completion (string or chat messages).
        answer (`str` or `None`): The ground truth; `None` means unknown, and nothing is then correct.
        choices (`Sequence[str]`, *optional*): Multiple-choice options in letter order.
        abstention_phrases, evidence_phrases: See `is_abstention`.
        tol (`float`, *optional*, defaults to `1e-6`): Numeric tolerance (see `is_correct`).

    Returns:
        `Judgement`: An abstention is never correct; an empty completion is neither abstained nor correct.

    Example:
    >>> judge([{"role": "assistant", "content": "<answer>Cannot tell</answer>"}], "red")
    Judgement(parsed='Cannot tell', abstained=True, correct=False)
    >>> judge("<answer>two</answer><|im_end|>", "2")
    Judgement(parsed='two', abstained=False, correct=True)
    """
    parsed = extract_answer(completion_to_text(completion))
    abstained = is_abstention(parsed, abstention_phrases, evidence_phrases)
    correct = not abstained and answer is not None and is_correct(parsed, str(answer), choices, tol)
    return Judgement(parsed=parsed, abstained=abstained, correct=correct)
