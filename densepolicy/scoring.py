"""Answer scoring for gsm8k / MATH: target extraction and `is_equivalent(prediction, target)`.

What an answer line may hold (the text after "Answer:"): one answer and nothing else, i.e.
  - a number (18, -7, 0.5, 1,000, 3/4, \\frac{3}{4}, 1e3, 50%), an expression (2\\sqrt{5}, x+1),
    a tuple, interval, set or matrix, or a word answer (Monday, (B), yes);
  - optionally wrapped in $...$, \\boxed{} or \\text{}, with a leading "x =" (one variable);
  - optionally with a currency sign before a number ($18, \\$18) and %, a degree sign, or a
    unit after it: one or two words ("18 dollars", "12 cm^2", "14 right triangles"), or a rate
    ("<word> per <word>", "<word>/<word>"); the unit is ignored, not checked. Function and
    hedging words ("is", "or", "not", "about", "wrong", ...) are not units.
Anything else is not an answer: words before it ("The answer is 18", "about 18"), a sentence
after it ("18 because ...", "18 is wrong"), two candidates ("18 or 19"). Such a line is wrong
even if the right value is in it, so prose cannot pick up credit. Not prose: words the gold
itself contains (a name answer, "x y" for a gold "xy") and function names (sin, log, sqrt, pi).

Values are compared exactly, never within a tolerance: a decimal means the exact rational it
writes (0.5 = 1/2 = 50%, but 0.333 != 1/3 and 1.4142 != \\sqrt{2}). Every GSM8K gold is an
integer and MATH golds are exact forms; a MATH gold that is a decimal either is exact (\\$3.50)
or is the rounding the question asked for ("to the nearest tenth"), so the answer must be that
rounding: a longer decimal or an exact fraction is not accepted for it. A tolerance cannot tell a
rounded answer from a wrong one to a small quantity (1/123 vs 0.00813), so there is none.
Infinity may be written inf, infinity, infty, \\infty, ∞ or oo (sympy), with a sign.

Order of checks (cheap and decisive first):
  1. normalise both sides ($, %, units, \\text{}, base subscripts, \\boxed, spacing commands,
     infinity spellings); a prediction holding prose is rejected here;
  2. case- and space-insensitive string match;
  3. plain numbers (ints, decimals, 1,000, a/b, \\frac{a}{b}): exact rational equality, and x100 /
     /100 when either side carries a % sign;
  4. bracketed tuples / intervals with the same brackets, and matrices: element-wise;
  5. everything else goes to `math-verify` (parse + verify: symbolic equality, sets, intervals,
     matrices, equations) with every decimal rewritten as an exact fraction first (math-verify
     would otherwise round floats to 6 places), plus a numeric check for two constant
     expressions with no decimal in them, agreeing to 12 significant digits (closed forms sympy
     fails to simplify, e.g. nested radicals).

Step 5 can take unbounded time in sympy, so it is always bounded. In the main thread it runs
in-process under math-verify's SIGALRM timeouts (note: that cancels any alarm the caller set).
In any other thread signals are unavailable, so it runs in a helper process (`python -m
densepolicy.scoring --worker`, one per calling process, started lazily, serialised by a lock)
that is killed on timeout. Set DENSEPOLICY_SCORING_BACKEND=process to always use the helper
(e.g. where even a C-level hang in the main thread is unacceptable). Nothing here raises on
garbage input; a failed or timed-out check just counts as "not equivalent".
"""
import json
import math
import os
import re
import selectors
import subprocess
import sys
import threading
import time
from fractions import Fraction

NUMERIC_REL_TOL = 1e-12   # exact closed forms only (step 5); see the docstring
SYMBOLIC_TIMEOUT = 3          # seconds per math-verify parse/verify call (signal.alarm needs ints)
MAX_LEN = 2000                # longer answers are not worth a sympy parse


# ---------------------------------------------------------------- target extraction

def extract_gsm8k_target(answer_field: str) -> str:
    """The number after the last '####' of a GSM8K answer, commas removed ('' if none)."""
    if not isinstance(answer_field, str) or "####" not in answer_field:
        return ""
    return answer_field.rsplit("####", 1)[1].strip().replace(",", "")


def extract_boxed(solution: str) -> str | None:
    """Content of the last \\boxed{...} or \\fbox{...} (nested braces handled); None if absent.
    Also accepts the brace-less form '\\boxed 5'."""
    if not isinstance(solution, str):
        return None
    starts = [m for m in re.finditer(r"\\(?:boxed|fbox)\s*", solution)]
    for m in reversed(starts):
        i = m.end()
        if i < len(solution) and solution[i] == "{":
            depth = 0
            for j in range(i, len(solution)):
                c = solution[j]
                if c == "{":
                    depth += 1
                elif c == "}":
                    depth -= 1
                    if depth == 0:
                        return solution[i + 1:j]
            continue  # unbalanced: try an earlier one
        tail = re.match(r"([^\s$]+)", solution[i:])  # "\boxed 5$"
        if tail:
            return tail.group(1)
    return None


# ---------------------------------------------------------------- normalisation

_TEXT_CMD = re.compile(r"\\(?:text|textbf|textit|mbox|mathrm|mathbf|operatorname)\s*\{([^{}]*)\}")
_BASE_SUB = re.compile(r"(?<![A-Za-z\\_])([0-9][0-9A-Z]*)_\{?(\d{1,2})\}?")
_UNIT_WORD = r"[A-Za-z]{2,}\.?(?:\^\{?\d\}?)?"
_UNIT = rf"(?:(?:square|sq\.?|cubic)\s+|{_UNIT_WORD}\s+)?{_UNIT_WORD}(?:\s*(?:/|\bper\s)\s*[A-Za-z]+\.?(?:\^\{{?\d\}}?)?)?"
_UNITS = re.compile(rf"^(.*?[\d}}])\s+({_UNIT})$")
# Words that make "18 <word>" a sentence, not a number with its unit.
_NOT_UNITS = {"is", "are", "was", "were", "be", "or", "and", "not", "but", "so", "if", "because",
              "since", "maybe", "perhaps", "probably", "about", "approximately", "roughly",
              "around", "exactly", "nearly", "almost", "answer", "the", "it", "this", "that",
              "wrong", "correct", "seems", "likely", "final", "total", "then", "than"}
# Multi-letter words that are mathematics, not prose, when written as plain text.
_MATH_WORDS = {"pi", "sqrt", "sin", "cos", "tan", "cot", "sec", "csc", "log", "ln", "exp",
               "arcsin", "arccos", "arctan", "mod", "gcd", "lcm", "max", "min", "deg"}
# Plain-text infinity: inf, infinity, infty, ∞, and sympy's printed "oo".
_INFINITY = re.compile(r"(?<![A-Za-z\\])(?:inf(?:inity|ty)?|oo)(?![A-Za-z])|∞", re.I)


def normalize_answer(s) -> str:
    """Canonical text form of an answer; '' for anything unusable."""
    if s is None:
        return ""
    s = str(s).strip()
    if not s or len(s) > MAX_LEN:
        return ""
    if "\\boxed" in s or "\\fbox" in s:
        s = extract_boxed(s) or s
    # Spacing commands; the lookbehind keeps a matrix row break "\\\\" intact.
    s = re.sub(r"(?<!\\)\\[!,;: ]", " ", s).replace("~", " ")
    for a, b in (("\\left", ""), ("\\right", ""), ("\\displaystyle", ""),
                 ("\\dfrac", "\\frac"), ("\\tfrac", "\\frac"), ("\\$", ""), ("$", ""),
                 ("\\%", "%"), ("^{\\circ}", ""), ("^\\circ", ""), ("°", "")):
        s = s.replace(a, b)
    # Drop formatting wrappers but keep a space so "5\text{cm}" still reads as "5 cm".
    for _ in range(5):
        t = _TEXT_CMD.sub(r" \1 ", s)
        if t == s:
            break
        s = t
    s = _BASE_SUB.sub(r"\1", s)           # 1011_2 -> 1011 (MATH writes bases as subscripts)
    s = _INFINITY.sub(r"\\infty", s)       # inf, Infinity, ∞, oo -> \infty
    s = re.sub(r"(^|[(\[,])\s*\+\s*(?=\\infty)", r"\1", s)    # "+\infty" is "\infty"
    s = s.strip().rstrip(".").strip()
    m = _UNITS.match(s)                    # "5 dollars", "12 cm^2", "60 miles per hour"
    if m and not _NOT_UNITS & set(re.findall(r"[a-z]+", m.group(2).lower())):
        s = m.group(1).strip()
    m = re.fullmatch(r"\(\s*([A-Za-z])\s*\)", s)   # multiple choice "(B)" -> "B"
    if m:
        s = m.group(1)
    m = re.fullmatch(r"\s*([A-Za-z])\s*=\s*([^=<>]+)", s)   # "x = 5" -> "5"
    if m:
        s = m.group(2)
    return s.strip()


# ---------------------------------------------------------------- plain numbers

_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?")


def _to_number(s: str):
    """(exact value as a Fraction, is_percent) for a plain number, else None."""
    s = s.replace(" ", "")
    pct = s.endswith("%")
    s = s.rstrip("%")
    if _THOUSANDS.fullmatch(s):
        s = s.replace(",", "")
    if len(s) > 60:
        return None
    if _FLOAT.fullmatch(s):
        e = re.search(r"[eE]([+-]?\d+)$", s)
        if e and abs(int(e.group(1))) > 400:
            return None    # Fraction would build a huge integer; no answer is that big or small
        return Fraction(s), pct    # a decimal is the exact rational it writes: 0.333 is 333/1000
    m = re.fullmatch(r"([+-]?)(?:\\frac\{([+-]?\d+)\}\{([+-]?\d+)\}|([+-]?\d+)/([+-]?\d+))", s)
    if m:
        num, den = (m.group(2), m.group(3)) if m.group(2) is not None else (m.group(4), m.group(5))
        if int(den) == 0:
            return None
        return Fraction(int(num), int(den)) * (-1 if m.group(1) == "-" else 1), pct
    return None


def _numbers_equal(p, t) -> bool:
    """Exact equality, trying x100 and /100 when either side is a percentage (50% = 0.5 = 50)."""
    (pv, ppct), (tv, tpct) = p, t
    scales = [1, Fraction(1, 100), 100] if (ppct or tpct) else [1]
    return any(pv == tv * k for k in scales)


# ---------------------------------------------------------------- tuples / intervals

def _split_tuple(s: str):
    """('(', ')', [parts]) for a bracketed, comma-separated list; None otherwise."""
    if len(s) < 3 or s[0] not in "([" or s[-1] not in ")]":
        return None
    depth, parts, cur = 0, [], []
    for c in s[1:-1]:
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth < 0:
                return None   # "(1)+(2)": the outer brackets are not one group
        if c == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    if depth != 0 or not parts:
        return None
    parts.append("".join(cur))
    return s[0], s[-1], [x.strip() for x in parts]


_MATRIX = re.compile(r"\\begin\{([pbvBV]?matrix)\}(.*)\\end\{\1\}", re.S)


def _split_matrix(s: str):
    """Rows of cells of a \\begin{pmatrix}...\\end{pmatrix} (any *matrix env); None otherwise."""
    m = _MATRIX.fullmatch(s.strip())
    if not m:
        return None
    rows = [r for r in re.split(r"\\\\", m.group(2)) if r.strip()]
    return [[c.strip() for c in r.split("&")] for r in rows]


# ---------------------------------------------------------------- math-verify (bounded)

_DECIMAL = re.compile(r"(?<![\d.])(\d*)\.(\d+)(?![\d.])")


def _exact_decimals(s: str) -> str:
    """Each decimal literal as the fraction it writes (0.25 -> \\frac{25}{100}), so that
    math-verify compares it exactly instead of rounding floats to 6 decimal places."""
    return _DECIMAL.sub(lambda m: "\\frac{%d}{1%s}" % (int(m.group(1) + m.group(2)),
                                                       "0" * len(m.group(2))), s)


def _mv_equal(pred: str, target: str, timeout: int) -> bool:
    """math-verify parse + verify on exact forms, then a numeric check on two constants written
    without decimals. In-process; needs the main thread when timeout > 0."""
    from math_verify import parse, verify
    from math_verify.errors import TimeoutException
    from math_verify.utils import timeout as mv_timeout
    approximate = bool(_DECIMAL.search(pred) or _DECIMAL.search(target))
    gold = parse("$" + _exact_decimals(target) + "$", parsing_timeout=timeout)
    got = parse("$" + _exact_decimals(pred) + "$", parsing_timeout=timeout)
    if not gold or not got:
        return False
    if verify(gold, got, timeout_seconds=timeout):
        return True
    if approximate:
        return False   # a decimal next to a closed form is a rounding: never "close enough"

    def numeric():
        import sympy
        for g in gold:
            for p in got:
                if isinstance(g, sympy.Expr) and isinstance(p, sympy.Expr) and g.is_number and p.is_number:
                    gv, pv = complex(sympy.N(g, 30)), complex(sympy.N(p, 30))
                    if not all(map(math.isfinite, (gv.real, gv.imag, pv.real, pv.imag))):
                        continue   # oo - oo style comparisons prove nothing
                    if abs(gv - pv) <= NUMERIC_REL_TOL * max(abs(gv), abs(pv)):
                        return True
        return False
    try:
        return bool(mv_timeout(timeout)(numeric)())
    except (Exception, TimeoutException):
        return False


class _Worker:
    """A helper process answering math-verify checks, for callers outside the main thread."""

    def __init__(self):
        self.proc = None
        self.lock = threading.Lock()

    def _start(self):
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen([sys.executable, "-m", "densepolicy.scoring", "--worker"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, env=env, cwd=root,
                                     start_new_session=True)
        self.buf = b""

    def _kill(self):
        if self.proc is not None:
            try:
                self.proc.kill()
                self.proc.wait(timeout=5)
            except Exception:
                pass
        self.proc = None

    def ask(self, pred: str, target: str, timeout: float) -> bool:
        with self.lock:
            try:
                if self.proc is None or self.proc.poll() is not None:
                    self._start()
                    timeout += 20     # first call pays for importing sympy
                self.proc.stdin.write((json.dumps({"p": pred, "t": target}) + "\n").encode())
                self.proc.stdin.flush()
                deadline = time.monotonic() + timeout
                with selectors.DefaultSelector() as sel:
                    sel.register(self.proc.stdout, selectors.EVENT_READ)
                    while b"\n" not in self.buf:
                        left = deadline - time.monotonic()
                        if left <= 0 or not sel.select(left):
                            raise TimeoutError
                        chunk = os.read(self.proc.stdout.fileno(), 65536)
                        if not chunk:
                            raise EOFError
                        self.buf += chunk
                line, self.buf = self.buf.split(b"\n", 1)
                return bool(json.loads(line)["r"])
            except Exception:
                self._kill()   # hung, crashed or garbled: start a fresh one next time
                return False


_worker = _Worker()


def _worker_main():
    """Loop of the helper process: one JSON request per line in, one JSON answer per line out."""
    try:
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))   # sympy blow-ups die, not swap
    except Exception:
        pass
    import logging
    logging.disable(logging.WARNING)
    out, sys.stdout = sys.stdout, sys.stderr   # stray prints must not garble the replies
    for line in sys.stdin:
        try:
            req = json.loads(line)
            r = _mv_equal(req["p"], req["t"], SYMBOLIC_TIMEOUT)
        except BaseException:
            r = False
        out.write(json.dumps({"r": bool(r)}) + "\n")
        out.flush()


def _symbolic_equal(pred: str, target: str) -> bool:
    import signal
    in_main = threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGALRM")
    if in_main and os.environ.get("DENSEPOLICY_SCORING_BACKEND", "auto") != "process":
        try:
            return _mv_equal(pred, target, SYMBOLIC_TIMEOUT)
        except BaseException as e:   # math-verify's TimeoutException is a BaseException
            if isinstance(e, KeyboardInterrupt):
                raise
            return False
    # Hard bound: each parse/verify has its own alarm inside the worker, plus a margin.
    return _worker.ask(pred, target, 4 * SYMBOLIC_TIMEOUT + 2)


# ---------------------------------------------------------------- public entry point

def _is_prose(pred: str, gold: str) -> bool:
    """True when the prediction holds a word that is neither mathematics nor part of the gold:
    "The answer is 18", "about 18", "18 or 19" (see the module docstring)."""
    strip = lambda x: re.sub(r"\\[A-Za-z]+", " ", x)     # LaTeX commands are not words
    gold_words = {w.lower() for w in re.findall(r"[A-Za-z]+", strip(gold))}
    gold_letters = set("".join(gold_words))
    for tok in strip(pred).split():
        w = tok.strip(".,;:!?()[]{}'\"").lower()
        if len(w) >= 2 and w.isalpha() and w not in _MATH_WORDS and w not in gold_words \
                and not set(w) <= gold_letters:      # "xy" for a gold "yx" is a product
            return True
    return False


def _equal(p: str, t: str) -> bool:
    if not p or not t:
        return False
    if p.replace(" ", "").lower() == t.replace(" ", "").lower():
        return True
    if _is_prose(p, t):
        return False
    pn, tn = _to_number(p), _to_number(t)
    if pn is not None and tn is not None:
        return _numbers_equal(pn, tn)
    ps, ts = _split_tuple(p), _split_tuple(t)
    if ps and ts and ps[:2] == ts[:2] and len(ps[2]) == len(ts[2]):
        return all(_equal(a, b) for a, b in zip(ps[2], ts[2]))
    pm, tm = _split_matrix(p), _split_matrix(t)
    if pm and tm and [len(r) for r in pm] == [len(r) for r in tm]:
        return all(_equal(a, b) for pr, tr in zip(pm, tm) for a, b in zip(pr, tr))
    return _symbolic_equal(p, t)


def is_equivalent(prediction: str, target: str) -> bool:
    """True when `prediction` is an acceptable answer for `target`. Never raises."""
    try:
        return _equal(normalize_answer(prediction), normalize_answer(target))
    except KeyboardInterrupt:
        raise
    except BaseException:
        return False


if __name__ == "__main__" and "--worker" in sys.argv:
    _worker_main()
