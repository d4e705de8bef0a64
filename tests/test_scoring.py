"""Answer equivalence and target extraction (densepolicy.scoring)."""
import json
import os
import threading
from pathlib import Path

import pytest

from densepolicy import scoring
from densepolicy.scoring import extract_boxed, extract_gsm8k_target, is_equivalent

DATA = Path(os.environ.get("DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data")

EQUIVALENT = [
    ("\\frac{1}{2}", "0.5"), ("1/2", "0.5"), ("\\frac12", "1/2"), ("\\dfrac{1}{2}", "\\frac{1}{2}"),
    ("50%", "0.5"), ("0.5", "50\\%"), ("50%", "50"),
    ("5 dollars", "$5"), ("\\$5", "5"), ("5\\text{ cm}", "5"), ("12 apples", "12"),
    ("\\text{(B)}", "B"), ("(b)", "B"), ("Yes", "yes"), ("\\text{Monday}", "monday"),
    ("(1, 2)", "(1,2)"), ("\\left(3, \\frac{\\pi}{2}\\right)", "(3, \\pi/2)"), ("(0.5, 2)", "(\\frac{1}{2}, 2)"),
    ("[0, 1)", "[0,1)"), ("(-\\infty, 3]", "(-\\infty,3]"),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"),
    ("\\begin{pmatrix} 1/2 & 0 \\\\ 0 & 1 \\end{pmatrix}", "\\begin{pmatrix} 0.5 & 0 \\\\ 0 & 1 \\end{pmatrix}"),
    ("\\sqrt{8}", "2\\sqrt{2}"), ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}"),
    ("1,000", "1000"), ("1,234,567.5", "1234567.5"), ("-7", "-7.0"), ("-\\frac{3}{4}", "-0.75"),
    ("x+1", "1+x"), ("x = 5", "5"), ("\\boxed{42}", "42"),
    ("10110_2", "10110"), ("90^\\circ", "90"), ("\\{1, 2\\}", "\\{2, 1\\}"), ("  18  ", "18"),
    ("3+2i", "2i+3"), ("\\pi/2", "\\frac{\\pi}{2}"),
    # exact values: a decimal is the rational it writes
    ("0.25", "\\frac{1}{4}"), ("0.250", "1/4"), ("1e-5", "0.00001"), ("0.5\\sqrt{2}", "\\frac{\\sqrt{2}}{2}"),
    ("\\sqrt{3+2\\sqrt{2}}", "1+\\sqrt{2}"), ("3.5", "\\$3.50"), ("2.33", "2.33"),
    # infinity in plain text
    ("inf", "\\infty"), ("Infinity", "\\infty"), ("∞", "\\infty"), ("-inf", "-\\infty"), ("+inf", "\\infty"),
    ("-∞", "-\\infty"), ("oo", "\\infty"), ("(-inf, 3]", "(-\\infty, 3]"), ("[2, infinity)", "[2,\\infty)"),
    # a currency sign and a unit of one or two words, or a rate
    ("$18", "18"), ("18 dollars.", "18"), ("60 miles per hour", "60"), ("3 km/h", "3"), ("5 square feet", "5"),
    ("14", "14 \\text{ right triangles}"), ("xy", "yx"),
]

DIFFERENT = [
    ("0.333", "\\frac{1}{3}"), ("12", "13"), ("x+1", "x-1"), ("[0, 1)", "[0,1]"), ("(1, 2)", "(2, 1)"),
    ("(1, 2)", "[1, 2]"), ("0.5", "50"), ("1000000", "1000001"), ("-5", "5"), ("\\text{(B)}", "C"),
    ("\\sqrt{2}", "2"), ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix} 1 \\\\ 3 \\end{pmatrix}"),
    ("(1, 2, 3)", "(1, 2)"), ("", "5"), ("5", ""), ("", ""), ("garbage ###", "5"), ("}{\\frac{", "1"),
    (None, "1"), ("\\frac{1}{0}", "1"), ("nan", "1"),
    # no tolerance: a rounding of a small (or any) exact quantity is not that quantity
    ("0.33333", "\\frac{1}{3}"), ("1.4142", "\\sqrt{2}"), ("0.00813", "\\frac{1}{123}"),
    ("0.142857", "\\frac{1}{7}"), ("0.000008", "\\frac{1}{123456}"), ("3.14159", "\\pi"), ("0.3", "\\frac{1}{3}"),
    # a decimal gold is exact or the rounding the question asked for: nothing else matches it
    ("2.333", "2.33"), ("\\frac{7}{3}", "2.33"), ("\\frac{1}{4}", "0.2"),
    ("inf", "-\\infty"), ("infinite", "\\infty"),
    # prose around the answer is not an answer
    ("The answer is 18", "18"), ("18 is the answer", "18"), ("I think it is 18.", "18"), ("about 18", "18"),
    ("18 or 19", "18"), ("18, since 3*6", "18"), ("18 is wrong", "18"), ("18 approximately", "18"),
    ("not 18", "18"), ("maybe 18 dollars", "18"), ("The answer is \\frac{1}{2}", "\\frac{1}{2}"),
    ("The answer is Monday", "\\text{Monday}"),
]


@pytest.mark.parametrize("pred,target", EQUIVALENT)
def test_equivalent(pred, target):
    assert is_equivalent(pred, target)


@pytest.mark.parametrize("pred,target", DIFFERENT)
def test_different(pred, target):
    assert not is_equivalent(pred, target)


def test_garbage_never_raises():
    for junk in [b"\x00\xff", 3.5, object(), "\\" * 5000, "{" * 300, "$$$", "\\boxed{", "1/0", "1e999"]:
        assert is_equivalent(junk, "1") in (True, False)
    assert is_equivalent(12, "12")          # non-string input is stringified
    assert is_equivalent("1e3", "1000")


def test_huge_expression_is_bounded():
    import time
    t = time.monotonic()
    assert not is_equivalent("10^{10^{10}}", "3")
    assert not is_equivalent("9^{9^{9^{9}}}", "9^{9^{9^{9}}}+1")
    assert time.monotonic() - t < 20


def test_works_off_the_main_thread():
    out = {}

    def run():
        out["eq"] = [is_equivalent("\\sqrt{8}", "2\\sqrt{2}"), is_equivalent("[0, 1)", "[0,1]"),
                     is_equivalent("\\frac{1}{2}", "0.5"), is_equivalent("1.4142", "\\sqrt{2}")]
    th = threading.Thread(target=run)
    th.start()
    th.join(120)
    assert out["eq"] == [True, False, True, False]     # the helper process is as strict


def test_in_context_answers_and_their_sentences():
    """The examples' answer lines are accepted; their explaining sentence, which holds the same
    number among words, is not an answer line."""
    from agents import prompts
    for ex in prompts.GSM8K_EXAMPLES + prompts.MATH_EXAMPLES:
        _, thought, answer = ex["steps"][-1]
        assert is_equivalent(answer, answer)
        assert not is_equivalent(thought, answer), thought


def test_worker_timeout_kills_and_recovers():
    w = scoring._Worker()
    assert w.ask("\\sqrt{8}", "2\\sqrt{2}", 30) is True
    assert w.ask("x+1", "1+x", 0.0) is False       # no time at all: treated as a hang
    assert w.proc is None                          # the helper was killed
    assert w.ask("x+1", "1+x", 30) is True         # and a fresh one answers
    w._kill()


def test_extract_boxed():
    assert extract_boxed("so $\\boxed{\\frac{1}{2}}$.") == "\\frac{1}{2}"
    assert extract_boxed("\\boxed{1} then \\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}") == \
        "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert extract_boxed("\\fbox{x^{2}}") == "x^{2}"
    assert extract_boxed("answer \\boxed 5$") == "5"
    assert extract_boxed("no box here") is None
    assert extract_boxed("\\boxed{unclosed") is None
    assert extract_boxed(None) is None


def test_extract_gsm8k_target():
    assert extract_gsm8k_target("blah\n#### 1,234") == "1234"
    assert extract_gsm8k_target("x\n#### -5") == "-5"
    assert extract_gsm8k_target("no marker") == ""


def _rows(rel, n):
    with open(DATA / rel) as f:
        return [json.loads(next(f)) for _ in range(n)]


def test_targets_on_real_rows():
    gsm = _rows("gsm8k/test.jsonl", 2)
    assert extract_gsm8k_target(gsm[0]["answer"]) == "18"         # Janet's ducks
    assert extract_gsm8k_target(gsm[1]["answer"]) == "3"          # the robe
    math = _rows("math/test.jsonl", 2)
    assert extract_boxed(math[0]["solution"]) == "2"
    assert extract_boxed(math[1]["solution"]) == "\\frac{1}{2}"
    m500 = _rows("math/math500/test.jsonl", 5)
    for row in m500:
        assert extract_boxed(row["solution"]) == row["answer"]
        assert is_equivalent(row["answer"], extract_boxed(row["solution"]))
    assert is_equivalent("(3, \\frac{\\pi}{2})", m500[0]["answer"])
    assert not is_equivalent("(3, \\pi)", m500[0]["answer"])


def test_every_gsm8k_target_is_a_number():
    with open(DATA / "gsm8k/train.jsonl") as f:
        targets = [extract_gsm8k_target(json.loads(line)["answer"]) for line in f]
    assert all(scoring._to_number(t) is not None for t in targets)
