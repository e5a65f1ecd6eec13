"""`hearth eval`: two models (or one model under two chat formats or system prompts) answer a
question set, and a judge model compares them, all as batch jobs on a running server.

The pairwise judging follows MT-bench's method: the judge sees each pair twice, A's answer
first and then B's first, and a side wins a question only when both orders pick it; a
split or a tie in either order is a tie. That cancels the judge's bias for a position
(small judges have a strong one). With --grade the judge also rates each answer 1-10 on
its own (MT-bench's single-answer grading). Verdicts are constrained by a grammar (Hearth's
`grammar` field), so even a tiny judge answers in a form that parses. Every step is a batch
on the server, so a server restart mid-way loses nothing: the batches resume there. And the
eval writes down its batches as it submits them (eval_batches.py), so an eval killed mid-way
and run again takes up the same batches instead of submitting them again.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from hearth.batch_cli import DEFAULT_URL, FINISHED, follow, submit_lines
from hearth.eval_batches import SubmittedBatches

if TYPE_CHECKING:
    import openai

PAIR_SYSTEM = (
    "You are an impartial judge. Compare two AI assistants' answers to the user's question. "
    "Judge correctness, helpfulness and clarity; the order of the answers and their length "
    "must not sway you. Reply [[A]] if assistant A's answer is better, [[B]] if assistant "
    "B's answer is better, or [[C]] if they are equally good."
)
GRADE_SYSTEM = (
    "You are an impartial judge. Rate the AI assistant's answer to the user's question for "
    "correctness, helpfulness and clarity, on a scale from 1 (useless) to 10 (excellent). "
    "Reply in the form Rating: [[N]]."
)
PAIR_GRAMMAR = 'root ::= "[[" [ABC] "]]"'
GRADE_GRAMMAR = 'root ::= "Rating: [[" ("10" | [1-9]) "]]"'
VERDICT = re.compile(r"\[\[([ABC])\]\]")
RATING = re.compile(r"\[\[(10|[1-9])\]\]")
CHAT = "/v1/chat/completions"


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    category: str = ""


@dataclass
class Outcome:
    """One question: both answers, the judge in both orders, and the result."""

    id: str
    category: str
    question: str
    answer_a: str = ""
    answer_b: str = ""
    judge_ab: str = ""  # the judge's reply with A's answer shown first
    judge_ba: str = ""  # ... with B's answer shown first
    winner: str = "tie"  # "a", "b" or "tie"
    grade_a: int | None = None
    grade_b: int | None = None
    errors: list[str] = field(default_factory=list)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=DEFAULT_URL, help=f"the server (default {DEFAULT_URL})")
    parser.add_argument("--api-key", default=None, help="the server's --api-key, if it has one")
    parser.add_argument("--model-a", required=True, help="a model id (ID:FORMAT for a format)")
    parser.add_argument("--model-b", default=None, help="default: --model-a")
    parser.add_argument("--system-a", default=None, help="a system prompt for A's answers")
    parser.add_argument("--system-b", default=None, help="a system prompt for B's answers")
    parser.add_argument("--judge", default=None, help="the judge model (default: --model-a)")
    parser.add_argument("--questions", type=Path, default=None, help="JSONL of id, question")
    parser.add_argument("--limit", type=int, default=None, help="only the first N questions")
    parser.add_argument("--max-tokens", type=int, default=128, help="per answer")
    parser.add_argument("--grade", action="store_true", help="also grade each answer 1-10")
    parser.add_argument("-o", "--output", type=Path, default=Path("eval.jsonl"))


def run(args: argparse.Namespace) -> int:
    import openai

    model_b = args.model_b or args.model_a
    if model_b == args.model_a and args.system_a == args.system_b:
        print(
            "hearth eval: A and B are the same; change a model or a system prompt", file=sys.stderr
        )
        return 2
    client = openai.OpenAI(base_url=args.url.rstrip("/") + "/v1", api_key=args.api_key or "none")
    questions = load_questions(args.questions)[: args.limit]
    submitted = SubmittedBatches.beside(args.output)
    try:
        outcomes = evaluate(client, args, model_b, questions, submitted)
    except openai.APIConnectionError:
        print(f"hearth eval: no server answers at {args.url}", file=sys.stderr)
        return 1
    except openai.APIStatusError as error:
        print(f"hearth eval: {error.status_code}: {error.message}", file=sys.stderr)
        return 1
    with args.output.open("w", encoding="utf-8") as out:
        for outcome in outcomes:
            out.write(json.dumps(asdict(outcome)) + "\n")
    submitted.forget()
    print(table(outcomes, args.model_a + _suffix(args.system_a), model_b + _suffix(args.system_b)))
    print(f"per question: {args.output}")
    return 0


def load_questions(path: Path | None) -> list[Question]:
    if path is None:
        text = (resources.files("hearth") / "eval_questions.jsonl").read_text(encoding="utf-8")
    else:
        text = path.read_text(encoding="utf-8")
    rows = [json.loads(row) for row in text.splitlines() if row.strip()]
    return [Question(str(r["id"]), r["question"], r.get("category", "")) for r in rows]


def evaluate(
    client: openai.OpenAI,
    args: argparse.Namespace,
    model_b: str,
    questions: list[Question],
    submitted: SubmittedBatches,
) -> list[Outcome]:
    judge = args.judge or args.model_a
    outcomes = {q.id: Outcome(q.id, q.category, q.question) for q in questions}
    answers = []
    for q in questions:
        answers.append(_chat(f"a|{q.id}", args.model_a, args.system_a, q.question, args.max_tokens))
        answers.append(_chat(f"b|{q.id}", model_b, args.system_b, q.question, args.max_tokens))
    print("answering", file=sys.stderr)
    for key, text in run_batch(client, answers, submitted).items():
        side, qid = key.split("|", 1)
        setattr(outcomes[qid], f"answer_{side}", text)
    judging = []
    for o in outcomes.values():
        for order, first, second in (
            ("ab", o.answer_a, o.answer_b),
            ("ba", o.answer_b, o.answer_a),
        ):
            prompt = pair_prompt(o.question, first, second)
            judging.append(_chat(f"{order}|{o.id}", judge, PAIR_SYSTEM, prompt, 8, PAIR_GRAMMAR))
        if args.grade:
            for side, answer in (("a", o.answer_a), ("b", o.answer_b)):
                prompt = grade_prompt(o.question, answer)
                judging.append(
                    _chat(f"g{side}|{o.id}", judge, GRADE_SYSTEM, prompt, 12, GRADE_GRAMMAR)
                )
    print("judging", file=sys.stderr)
    for key, text in run_batch(client, judging, submitted).items():
        kind, qid = key.split("|", 1)
        outcome = outcomes[qid]
        if kind in ("ab", "ba"):
            setattr(outcome, f"judge_{kind}", text)
        else:
            found = RATING.search(text)
            setattr(outcome, f"grade_{kind[1]}", int(found.group(1)) if found else None)
    for outcome in outcomes.values():
        outcome.winner = combine(verdict(outcome.judge_ab), verdict(outcome.judge_ba))
    return list(outcomes.values())


def run_batch(
    client: openai.OpenAI, lines: list[dict], submitted: SubmittedBatches
) -> dict[str, str]:
    """Each line's reply text by custom_id (an error's message for a line that failed),
    from the batch an earlier run of this eval submitted for these lines, if it can still
    give them, else from a new one."""
    batch_id = _earlier_batch(client, submitted.get(lines))
    if batch_id is None:
        batch_id = submit_lines(client, lines, CHAT).id
        submitted.add(lines, batch_id)
    else:
        print(f"taking up {batch_id}, submitted by an earlier run", file=sys.stderr)
    batch = follow(client, batch_id)
    if batch.status != "completed":
        raise SystemExit(f"hearth eval: batch {batch.id} ended {batch.status}")
    replies: dict[str, str] = {}
    for file_id in (batch.output_file_id, batch.error_file_id):
        if file_id is None:
            continue
        for row in map(json.loads, client.files.content(file_id).text.splitlines()):
            response = row.get("response") or {}
            body = response.get("body") or {}
            if response.get("status_code") == 200:
                replies[row["custom_id"]] = body["choices"][0]["message"]["content"] or ""
            else:
                error = body.get("error") or row.get("error") or {}
                replies[row["custom_id"]] = f"(error: {error.get('message', 'failed')})"
    return replies


def _earlier_batch(client: openai.OpenAI, batch_id: str | None) -> str | None:
    """The batch id, if the server still has that batch and it has not ended short."""
    import openai

    if batch_id is None:
        return None
    try:
        batch = client.batches.retrieve(batch_id)
    except openai.NotFoundError:
        return None  # another server, or its store was removed
    if batch.status in FINISHED and batch.status != "completed":
        return None
    return batch_id


def _chat(
    custom_id: str,
    model: str,
    system: str | None,
    user: str,
    max_tokens: int,
    grammar: str | None = None,
) -> dict:
    messages = [{"role": "user", "content": user}]
    if system:
        messages.insert(0, {"role": "system", "content": system})
    body: dict = {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0}
    if grammar:
        body["grammar"] = grammar
    return {"custom_id": custom_id, "method": "POST", "url": CHAT, "body": body}


def pair_prompt(question: str, first: str, second: str) -> str:
    return (
        f"[Question]\n{question}\n\n[Assistant A's answer]\n{first}\n\n"
        f"[Assistant B's answer]\n{second}\n\nWhich answer is better?"
    )


def grade_prompt(question: str, answer: str) -> str:
    return f"[Question]\n{question}\n\n[The assistant's answer]\n{answer}\n\nRate the answer."


def verdict(reply: str) -> str | None:
    """ "A", "B" or "C" (tie) as the judge wrote it, or None when it wrote none."""
    found = VERDICT.search(reply)
    return found.group(1) if found else None


FIRST_ORDER = {"A": "a", "B": "b", "C": "tie"}
SWAPPED = {"A": "b", "B": "a", "C": "tie"}  # in the swapped order the judge's A is model B


def sides(first_order: str | None, swapped: str | None) -> tuple[str | None, str | None]:
    """Both orders' verdicts in terms of the models: "a", "b", "tie" or None (none given)."""
    return FIRST_ORDER.get(first_order or ""), SWAPPED.get(swapped or "")


def combine(first_order: str | None, swapped: str | None) -> str:
    """MT-bench's rule: a side wins only if it wins in both orders; otherwise a tie."""
    first, second = sides(first_order, swapped)
    return first if first in ("a", "b") and first == second else "tie"


def table(outcomes: list[Outcome], name_a: str, name_b: str) -> str:
    wins = Counter(o.winner for o in outcomes)
    total = len(outcomes) or 1
    both = [sides(verdict(o.judge_ab), verdict(o.judge_ba)) for o in outcomes]
    consistent = sum(first is not None and first == second for first, second in both)
    rows = [
        f"{'':<28}{'win':>6}{'tie':>6}{'loss':>6}{'win rate':>10}",
        _row(name_a, wins["a"], wins["tie"], wins["b"], total),
        _row(name_b, wins["b"], wins["tie"], wins["a"], total),
        f"{len(outcomes)} questions; the judge agreed with itself across both orders on "
        f"{consistent}.",
    ]
    graded = [(o.grade_a, o.grade_b) for o in outcomes if o.grade_a and o.grade_b]
    if graded:
        mean_a = sum(a for a, _ in graded) / len(graded)
        mean_b = sum(b for _, b in graded) / len(graded)
        rows.append(f"mean grade (1-10): {name_a} {mean_a:.2f}, {name_b} {mean_b:.2f}")
    return "\n".join(rows)


def _row(name: str, win: int, tie: int, loss: int, total: int) -> str:
    return f"{name[:27]:<28}{win:>6}{tie:>6}{loss:>6}{win / total:>10.0%}"


def _suffix(system: str | None) -> str:
    return f" (system: {system[:20]}...)" if system else ""
