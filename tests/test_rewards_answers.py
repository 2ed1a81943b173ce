"""Answer parsing, normalisation and abstention detection (rlkit.rewards.answers): tables and properties."""

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from rlkit.rewards.answers import (
    ABSTAIN_TEXT,
    INABILITY_PHRASES,
    Judgement,
    completion_to_text,
    extract_answer,
    is_abstention,
    is_correct,
    judge,
    normalize,
)

# --- extraction ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("<answer>red</answer>", "red"),
        ("  <ANSWER> Red </Answer>  ", "Red"),
        ("<think>is it blue? no</think><answer>red</answer>", "red"),
        ("<answer>blue</answer> wait, <answer>red</answer>", "red"),  # the last block is the final answer
        ("<answer>red and then the length limit cut", "red and then the length limit cut"),
        ("<think>still reasoning when the limit hit", ""),  # truncated reasoning: no answer
        ("The answer is: three.", "three."),
        ("So the final answer is red", "red"),
        ("It's red.", "red."),
        ("There are 3 circles", "3 circles"),
        ("red<|im_end|>", "red"),
        ("<|im_start|>assistant\n<answer>left</answer><|im_end|><|endoftext|>", "left"),
        ("<|image_pad|><|image_pad|><|vision_end|>", ""),
        ("</s><pad><pad>", ""),
        ("", ""),
        ("   \n ", ""),
        ("The answer is", "The answer is"),  # nothing after the lead-in: keep the text rather than return ""
    ],
)
def test_extract_answer(completion, expected):
    assert extract_answer(completion) == expected


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("plain", "plain"),
        (None, ""),
        ([], ""),
        ([{"role": "assistant", "content": "red"}], "red"),
        ([{"role": "assistant", "content": None}], ""),
        ([{"role": "assistant", "content": [{"type": "text", "text": "two"}, {"type": "image"}]}], "two"),
        ([{"role": "tool", "content": "x"}, {"role": "assistant", "content": "y"}, {"role": "tool", "content": "z"}],
         "y"),
        ({"role": "assistant", "content": "single message"}, "single message"),
    ],
)  # fmt: skip
def test_completion_to_text(completion, expected):
    assert completion_to_text(completion) == expected


def test_completion_to_text_rejects_unknown_types():
    with pytest.raises(TypeError, match="expected str or messages"):
        completion_to_text(42)


# --- normalisation ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Red", "red"),
        ("  RED!!! ", "red"),
        ("The red one.", "red 1"),
        ("a", "a"),  # only articles: kept, so a letter answer survives
        ("an apple", "apple"),
        ("three", "3"),
        ("Twenty-One", "21"),
        ("one hundred and five", "105"),
        ("a hundred", "100"),
        ("two thousand and three", "2003"),
        ("one two", "1 2"),  # a list of numbers, not 3
        ("3.50", "3.5"),
        ("1,000", "1000"),
        ("007", "7"),
        ("-0", "0"),
        ("3rd", "3rd"),
        ("Yeah", "yes"),
        ("TRUE", "yes"),
        ("nope", "no"),
        ("no", "no"),
        ("don't", "dont"),
        ("Café", "cafe"),
        ("red<|im_end|>", "red"),
        ("", ""),
        ("?!...", ""),
    ],
)
def test_normalize(text, expected):
    assert normalize(text) == expected


@pytest.mark.parametrize(
    ("text", "choices", "expected"),
    [
        ("B", ["red", "blue"], "blue"),
        ("(b)", ["red", "blue"], "blue"),
        ("Option B", ["red", "blue"], "blue"),
        ("B. blue", ["red", "blue"], "blue"),
        ("C", ["red", "blue"], "c"),  # out of range: left as is
        ("A", None, "a"),
    ],
)
def test_normalize_choice_letters(text, choices, expected):
    assert normalize(text, choices=choices) == expected


_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
_words = st.sampled_from(["red", "the", "a", "Three", "twenty", "one", "hundred", "and", "yes", "No", "3.50", "1,000",
                          "-2", "left", "<|im_end|>", "café", "İ", "don't", "!", "?", "..."])  # fmt: skip
_phrases = st.lists(_words, max_size=8).map(" ".join)


@settings(max_examples=300, deadline=None, database=None)
@given(st.one_of(_text, _phrases))
@example("İstanbul")
@example("ﬁve")
def test_normalize_is_idempotent(text):
    once = normalize(text)
    assert normalize(once) == once


@settings(max_examples=200, deadline=None, database=None)
@given(_phrases, st.sampled_from([str.upper, str.lower, str.title, lambda s: f"  {s}?! ", lambda s: f'"{s}."']))
def test_normalize_ignores_case_and_punctuation(text, transform):
    assert normalize(transform(text)) == normalize(text)


@settings(max_examples=200, deadline=None, database=None)
@given(st.integers(min_value=0, max_value=999_999))
def test_number_words_equal_digits(n):
    assert normalize(_spell(n)) == normalize(str(n)) == str(n)
    assert normalize(f"{n:,}") == str(n)  # thousands separators


def _spell(n: int) -> str:
    """English words for 0 <= n < 10**6, written independently of the parser under test."""
    small = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
             "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]  # fmt: skip
    tens = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]

    def below_thousand(k: int) -> list[str]:
        words = [small[k // 100], "hundred"] if k >= 100 else []
        k %= 100
        if k >= 20:
            words += [tens[k // 10]] + ([small[k % 10]] if k % 10 else [])
        elif k or not words:
            words.append(small[k])
        return words

    words = below_thousand(n // 1000) + ["thousand"] if n >= 1000 else []
    if n % 1000 or not words:
        words += below_thousand(n % 1000)
    return "-".join(words) if n % 7 == 0 else " ".join(words)  # hyphens read like spaces


# --- correctness --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pred", "answer", "choices", "expected"),
    [
        ("Red", "red", None, True),
        ("red.", "red", None, True),
        ("the red", "red", None, True),
        ("blue", "red", None, False),
        ("red or blue", "red", None, False),  # listing candidates earns nothing
        ("the ball is red", "red", None, False),  # strict without choices
        ("the ball is red", "red", ["red", "blue"], True),  # ...but picks the one choice it mentions
        ("red or blue", "red", ["red", "blue"], False),
        ("not blue, it is red", "red", ["red", "blue"], False),  # negation: no mention-based pick
        ("no", "no", ["yes", "no"], True),
        ("three", "3", None, True),
        ("3.0", "3", None, True),
        ("3 circles", "3", None, True),
        ("3 of 5", "3", None, False),  # two numbers: ambiguous
        ("not 3", "3", None, False),
        ("4", "3", None, False),
        ("3.0000001", "3", None, True),  # within the default tolerance
        ("3.1", "3", None, False),
        ("Yes, it is.", "yes", None, True),
        ("yeah", "yes", None, True),
        ("No.", "no", None, True),
        ("no", "yes", None, False),
        ("B", "blue", ["red", "blue"], True),
        ("(a)", "blue", ["red", "blue"], False),
        ("Option A", "a", ["red", "blue"], True),  # a letter ground truth maps too
        ("", "red", None, False),
        ("red", "", None, False),
        ("Left", "left", None, True),
    ],
)
def test_is_correct(pred, answer, choices, expected):
    assert is_correct(pred, answer, choices=choices) is expected


def test_is_correct_tolerance_is_configurable():
    assert not is_correct("3.1", "3")
    assert is_correct("3.1", "3", tol=0.05)
    assert is_correct("1040", "1000", tol=0.05)  # relative for large values


# --- abstention ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        ABSTAIN_TEXT,
        "Cannot tell.",
        "I can't tell from this image.",
        "I can not determine the colour.",
        "It cannot be determined",
        "I don’t know",  # curly apostrophe
        "I dont know",
        "Unsure",
        "not sure, but red",  # hedged guess = abstention (documented in is_abstention)
        "I'm not certain",
        "The image does not show the ball",
        "The ball is not visible.",
        "The image is too blurry to say",
        "Unable to identify the shape",
        "There is not enough information",
        "Hard to say.",
        "cant tell<|im_end|>",
    ],
)
def test_abstentions(text):
    assert is_abstention(text)


@pytest.mark.parametrize(
    "text",
    [
        "I can tell it is red",
        "no",
        "No.",
        "none",
        "nothing",
        "red",
        "",
        "<|im_end|>",
        "No, the image does not show a dog",  # a committed yes/no answer about visibility
        "Yes, but it is unclear",
        "I think it is red",  # calibrated language, still an answer
        "Tell me more",
    ],
)
def test_not_abstentions(text):
    assert not is_abstention(text)


def test_abstention_phrases_are_configurable():
    assert not is_abstention("pass")
    assert is_abstention("pass", phrases=["pass"])
    # a custom strong list replaces the default one; the evidence list stays unless replaced
    assert not is_abstention("cannot tell", phrases=["pass"])
    assert is_abstention("not visible", phrases=["pass"])
    assert not is_abstention("not visible", phrases=["pass"], evidence_phrases=())
    assert "cannot tell" in INABILITY_PHRASES


# --- judge --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("completion", "answer", "expected"),
    [
        ("<answer>red</answer>", "red", Judgement("red", False, True)),
        ([{"role": "assistant", "content": "<answer>Cannot tell</answer>"}], "red",
         Judgement("Cannot tell", True, False)),
        ("not sure but red", "red", Judgement("not sure but red", True, False)),  # an abstention is never correct
        ("", "red", Judgement("", False, False)),  # silence is a wrong answer, not an abstention
        ("<|image_pad|><|im_end|>", "red", Judgement("", False, False)),
        ("red", None, Judgement("red", False, False)),  # unknown ground truth: nothing is correct
        ("<answer>two</answer><|im_end|>", "2", Judgement("two", False, True)),
    ],
)  # fmt: skip
def test_judge(completion, answer, expected):
    assert judge(completion, answer) == expected


def test_judgement_normalized_groups_spellings():
    assert judge("Red.", "red").normalized == judge("<answer>red</answer>", "red").normalized == "red"


@settings(max_examples=200, deadline=None, database=None)
@given(_text)
@example("İ")  # lowercases to two characters: once broke the choice-letter parser
def test_judge_never_crashes_and_abstentions_are_never_correct(text):
    for result in (judge(text, "red"), judge(text, "b", choices=["red", "blue"])):
        assert not (result.abstained and result.correct)
        assert isinstance(result.parsed, str)
