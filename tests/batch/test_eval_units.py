"""`hearth eval`'s judging rules: verdicts, position swap, the table, the question set."""

from __future__ import annotations

from hearth.eval_batches import SubmittedBatches
from hearth.eval_cli import Outcome, combine, load_questions, table, verdict


def test_a_side_wins_only_when_the_judge_picks_it_in_both_orders():
    assert combine("A", "B") == "a"  # A first: A; B first: B, which is model A again
    assert combine("B", "A") == "b"
    assert combine("A", "A") == "tie"  # the judge always picked the first answer
    assert combine("C", "B") == "tie"
    assert combine(None, "B") == "tie"


def test_a_verdict_is_read_from_the_judges_reply():
    assert verdict("[[B]]") == "B"
    assert verdict("I think [[C]] here.") == "C"
    assert verdict("(error: model not found)") is None


def test_the_table_counts_wins_ties_and_losses_per_side():
    outcomes = [
        Outcome("1", "", "q", judge_ab="[[A]]", judge_ba="[[B]]", winner="a", grade_a=8, grade_b=4),
        Outcome(
            "2", "", "q", judge_ab="[[A]]", judge_ba="[[A]]", winner="tie", grade_a=6, grade_b=6
        ),
    ]
    text = table(outcomes, "alpha", "beta")
    lines = text.splitlines()
    assert lines[1].split()[:4] == ["alpha", "1", "1", "0"]
    assert lines[2].split()[:4] == ["beta", "0", "1", "1"]
    assert "agreed with itself across both orders on 1" in text
    assert "alpha 7.00, beta 5.00" in text


def test_the_shipped_question_set_loads_with_unique_ids():
    questions = load_questions(None)
    assert len(questions) >= 12
    assert len({q.id for q in questions}) == len(questions)


def test_an_eval_finds_the_batch_it_submitted_for_the_same_lines_and_only_for_them(tmp_path):
    lines = [{"custom_id": "a|1", "body": {"model": "m", "messages": []}}]
    other = [{"custom_id": "a|1", "body": {"model": "n", "messages": []}}]
    SubmittedBatches.beside(tmp_path / "eval.jsonl").add(lines, "batch_1")
    again = SubmittedBatches.beside(tmp_path / "eval.jsonl")  # as a re-run reads it
    assert again.get(lines) == "batch_1" and again.get(other) is None
    again.forget()
    assert SubmittedBatches.beside(tmp_path / "eval.jsonl").get(lines) is None


def test_a_ledger_cut_short_is_started_over(tmp_path):
    (tmp_path / "eval.jsonl.batches.json").write_text('{"batches": {"ab')
    assert SubmittedBatches.beside(tmp_path / "eval.jsonl").get([]) is None
