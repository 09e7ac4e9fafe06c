"""Generated training data that ships with sparsecheck: arithmetic word problems with answers.

Everything is seeded and pure Python, so a run is reproducible and needs no download.  Rows use
TRL's column formats (plain strings, or chat messages when ``conversational``):

- prompts (GRPO, RLOO): ``prompt`` and ``answer`` (the reward function reads ``answer``);
- SFT: ``prompt`` and ``completion``, answered in a style the model does not use
  (``ANSWER: 7. REASONING: 3 + 4 = 7.``), so SFT moves the model off its own distribution;
- preference pairs (DPO, ORPO, SimPO): ``prompt``, ``chosen``, ``rejected`` from the model's own
  samples ranked by :func:`arithmetic_reward` (see :func:`preference_rows`), or those pairs
  rewritten in the SFT style (:func:`off_style_pairs`, off-policy);
- unpaired (KTO): ``prompt``, ``completion``, ``label``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

NAMES = ("Tom", "Anna", "Ben", "Lucy", "Sam", "Mia", "Leo", "Emma")
ITEMS = ("apples", "books", "coins", "pencils", "stickers", "cookies", "marbles", "cards")
#: Operand range: answers stay within 0 … MAX_NUMBER.
LOW, HIGH = 2, 20
MAX_NUMBER = HIGH * HIGH

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


@dataclass(frozen=True)
class Problem:
    """One word problem: the question, its integer answer and the equation that gives it."""

    question: str
    answer: int
    equation: str

    def model_style_answer(self) -> str:
        """The reference answer in the plain style a small instruct model answers in."""
        return f"{self.equation}, so the answer is {self.answer}."

    def off_style_answer(self, answer: int | None = None) -> str:
        """The reference answer in a rigid style the model does not use (for SFT); with
        ``answer``, that (wrong) answer written the same way."""
        if answer is None or answer == self.answer:
            return f"ANSWER: {self.answer}. REASONING: {self.equation}."
        left = self.equation.rsplit(" = ", 1)[0]
        return f"ANSWER: {answer}. REASONING: {left} = {answer}."


KINDS = 4


def _problem(kind: int, name: str, item: str, a: int, b: int) -> Problem:
    if kind == 0:
        return Problem(
            f"{name} has {a} {item} and buys {b} more. How many {item} does {name} have now?",
            a + b,
            f"{a} + {b} = {a + b}",
        )
    if kind == 1:
        a, b = max(a, b), min(a, b)
        return Problem(
            f"{name} has {a} {item} and gives away {b}. How many {item} are left?",
            a - b,
            f"{a} - {b} = {a - b}",
        )
    if kind == 2:
        return Problem(
            f"{name} has {a} boxes with {b} {item} in each. How many {item} are there in total?",
            a * b,
            f"{a} * {b} = {a * b}",
        )
    return Problem(
        f"{name} shares {a * b} {item} equally among {b} friends. How many {item} does each friend get?",
        a,
        f"{a * b} / {b} = {a}",
    )


def _draw(rng: random.Random) -> Problem:
    return _problem(
        rng.randrange(KINDS),
        rng.choice(NAMES),
        rng.choice(ITEMS),
        rng.randint(LOW, HIGH),
        rng.randint(LOW, HIGH),
    )


def arithmetic_problems(size: int, seed: int = 0) -> list[Problem]:
    """``size`` problems drawn with ``seed`` (the same arguments give the same problems).

    A smaller ``size`` gives a prefix of a larger one's problems.
    """
    rng = random.Random(seed)
    return [_draw(rng) for _ in range(size)]


_SPAN = HIGH - LOW + 1
#: Distinct questions the generator can write (subtraction orders its operands, so a, b and b, a
#: give one question there).
DISTINCT_PROBLEMS = len(NAMES) * len(ITEMS) * (3 * _SPAN * _SPAN + _SPAN * (_SPAN + 1) // 2)
#: Held-out problems avoid at least this many training problems of their seed by default.
HELD_OUT_EXCLUDE = 10_000


def held_out_problems(size: int, seed: int = 0, exclude: int = HELD_OUT_EXCLUDE) -> list[Problem]:
    """``size`` distinct evaluation problems, none of them in ``arithmetic_problems(exclude, seed)``.

    Training sets are prefixes of that sequence, so these are disjoint from every training set of
    at most ``exclude`` problems drawn with ``seed``.  They come from a stream of their own
    (``random.Random("held-out:<seed>")``); the same arguments give the same problems.
    """
    if size + exclude > DISTINCT_PROBLEMS:
        raise ValueError(f"size + exclude must be at most {DISTINCT_PROBLEMS}, got {size} + {exclude}")
    taken = {p.question for p in arithmetic_problems(exclude, seed)}
    rng = random.Random(f"held-out:{seed}")
    problems: list[Problem] = []
    while len(problems) < size:
        problem = _draw(rng)
        if problem.question not in taken:
            taken.add(problem.question)
            problems.append(problem)
    return problems


def completion_text(completion: Any) -> str:
    """The text of a completion: a string, or (conversational) the last message's content."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    return str(completion)


def final_number(text: str) -> float | None:
    """The last number written in ``text`` (thousands separators ignored), or None."""
    found = _NUMBER.findall(re.sub(r"(?<=\d),(?=\d{3})", "", text))
    return float(found[-1]) if found else None


def arithmetic_reward(completions: Sequence[Any], answer: Sequence[int], **_: Any) -> list[float]:
    """TRL reward function: 1.0 where the completion's final number equals ``answer``, else 0.0."""
    return [
        1.0 if final_number(completion_text(c)) == float(a) else 0.0
        for c, a in zip(completions, answer, strict=True)
    ]


def _prompt(problem: Problem, conversational: bool) -> Any:
    return [{"role": "user", "content": problem.question}] if conversational else f"{problem.question}\n"


def _completion(text: str, conversational: bool) -> Any:
    return [{"role": "assistant", "content": text}] if conversational else text


def prompt_rows(problems: Sequence[Problem], conversational: bool = False) -> list[dict[str, Any]]:
    """Prompt-only rows for GRPO/RLOO: ``prompt`` and ``answer``."""
    return [{"prompt": _prompt(p, conversational), "answer": p.answer} for p in problems]


def sft_rows(problems: Sequence[Problem], conversational: bool = False) -> list[dict[str, Any]]:
    """Prompt-completion rows for SFT, answered in the off-policy style."""
    return [
        {
            "prompt": _prompt(p, conversational),
            "completion": _completion(p.off_style_answer(), conversational),
        }
        for p in problems
    ]


@dataclass(frozen=True)
class PreferencePair:
    """A prompt's chosen and rejected completion; ``reference_chosen`` when none was correct."""

    problem: Problem
    chosen: str
    rejected: str
    reference_chosen: bool


def rank_samples(problems: Sequence[Problem], samples: Sequence[Sequence[str]]) -> list[PreferencePair]:
    """One pair per problem from the model's own samples, ranked by :func:`arithmetic_reward`.

    chosen = the first correct sample; rejected = the first wrong one.  When no sample is
    correct, chosen is the reference answer in the model's style (``reference_chosen``); when
    none is wrong, the problem gives no pair (nothing to reject).
    """
    pairs = []
    for problem, completions in zip(problems, samples, strict=True):
        rewards = arithmetic_reward(completions, [problem.answer] * len(completions))
        correct = [c for c, r in zip(completions, rewards, strict=True) if r == 1.0]
        wrong = [c for c, r in zip(completions, rewards, strict=True) if r == 0.0]
        if not wrong:
            continue
        chosen = correct[0] if correct else problem.model_style_answer()
        pairs.append(PreferencePair(problem, chosen, wrong[0], reference_chosen=not correct))
    return pairs


#: How a preference pair is written: the model's own samples, or the SFT data's style.
PAIR_STYLES = ("own", "off")


def off_style_pairs(pairs: Sequence[PreferencePair]) -> list[PreferencePair]:
    """``pairs`` rewritten in the SFT data's style: chosen is the reference answer, rejected the
    same wrong answer (its final number; the answer + 1 when it has none) written that way."""
    rewritten = []
    for pair in pairs:
        problem = pair.problem
        wrong = final_number(pair.rejected)
        wrong_answer = int(wrong) if wrong is not None and wrong == int(wrong) else problem.answer + 1
        if wrong_answer == problem.answer:  # a wrong sample whose last number is right: say so differently
            wrong_answer = problem.answer + 1
        rejected = problem.off_style_answer(wrong_answer)
        rewritten.append(PreferencePair(problem, problem.off_style_answer(), rejected, reference_chosen=True))
    return rewritten


def preference_rows(pairs: Sequence[PreferencePair], conversational: bool = False) -> list[dict[str, Any]]:
    """Paired rows for DPO, ORPO and SimPO: ``prompt``, ``chosen``, ``rejected``."""
    return [
        {
            "prompt": _prompt(pair.problem, conversational),
            "chosen": _completion(pair.chosen, conversational),
            "rejected": _completion(pair.rejected, conversational),
        }
        for pair in pairs
    ]


def unpaired_rows(pairs: Sequence[PreferencePair], conversational: bool = False) -> list[dict[str, Any]]:
    """Unpaired rows for KTO: each pair gives a desirable and an undesirable completion."""
    rows = []
    for pair in pairs:
        prompt = _prompt(pair.problem, conversational)
        rows.append({"prompt": prompt, "completion": _completion(pair.chosen, conversational), "label": True})
        rows.append(
            {"prompt": prompt, "completion": _completion(pair.rejected, conversational), "label": False}
        )
    return rows


def vocabulary() -> list[str]:
    """Every word and symbol the generated data (in either style) writes, for tiny test tokenizers."""
    words = {str(n) for n in range(MAX_NUMBER + 1)}
    for kind in range(KINDS):
        for name in NAMES:
            for item in ITEMS:
                problem = _problem(kind, name, item, LOW, LOW)
                text = f"{problem.question} {problem.model_style_answer()} {problem.off_style_answer()}"
                words.update(re.findall(r"\w+|[^\w\s]", text))
    return sorted(words)
