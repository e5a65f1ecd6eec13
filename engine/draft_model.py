"""A draft model: a smaller model of the same vocabulary that guesses the target's next tokens.

The engine verifies a draft in the target's own llama_decode, beside the other slots'
tokens, and keeps the longest prefix the target agrees with (see engine/speculation.py).
A good draft is a small, fast model that predicts the target well; the classic pair is a
quantized or smaller sibling of the target (the bundled SmolLM2-135M Q4_1 drafting for an
F16 of the same weights, or a 0.5B drafting for a 7B of one family).

The draft keeps one KV sequence per target slot. Before it drafts for a slot it catches up
on what the slot's context holds that it does not (the prompt, the tokens the target
accepted), at most CATCH_UP_PER_STEP tokens a step, so a long prompt does not stall the
other streams; the slot gets no draft until it has caught up. Drafts are greedy and stop
early where the draft is unsure (DRAFT_MIN_PROBABILITY): a guess the target would likely
reject costs a draft decode and a verify row for nothing.

Both models must cut text into the same tokens: a draft token is checked by comparing ids.
The vocabularies are compared piece by piece at load and a mismatch is refused.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import llama_cpp
import numpy as np

from hearth.engine.base import EngineOptions
from hearth.engine.batch import TokenBatch
from hearth.engine.errors import ModelLoadError
from hearth.engine.logits import LogitsRows
from hearth.engine.model import LlamaModel
from hearth.engine.slots import common_prefix

log = logging.getLogger(__name__)

# Context tokens one slot's draft sequence reads per step. The target reads its prompt in
# chunks of 128 while others generate (PREFILL_CHUNK_WHILE_DECODING); the draft, several
# times cheaper a token, may read more.
CATCH_UP_PER_STEP = 256

# A draft token whose probability under the draft is below this ends the draft: most such
# guesses are rejected, and each costs a draft decode and a target row.
DRAFT_MIN_PROBABILITY = 0.5

# A call whose slots were at most this many tokens behind is a steady step (the tokens the
# target took since the last guess), and its cost counts as the cost of its guesses.
STEADY_CATCH_UP = 16


class DraftModelMismatch(ModelLoadError):
    """The draft model cannot draft for this target: their tokens differ."""


@dataclass
class _DraftSequence:
    tokens: list[int] = field(default_factory=list)  # what this KV sequence holds, in order


class DraftModel:
    """The draft model's weights and context: one KV sequence per target slot."""

    def __init__(self, path: Path, target: LlamaModel, options: EngineOptions) -> None:
        # The draft runs with the target's context size and slots, on the same threads; it
        # takes neither the target's LoRA adapter nor its RPC workers.
        # Its batch holds every slot's catch-up chunk of one step.
        n_batch = max(options.n_batch, options.n_seq * CATCH_UP_PER_STEP)
        draft_options = dataclasses.replace(
            options, path=path, name=f"{options.name} (draft)", lora=None, rpc=(), n_batch=n_batch
        )
        self.model = LlamaModel(draft_options)
        try:
            check_same_vocabulary(target, self.model)
        except DraftModelMismatch:
            self.model.close()
            raise
        self._sequences = [_DraftSequence() for _ in range(options.n_seq)]
        self._batch = TokenBatch(n_batch)
        self._rows = LogitsRows(self.model.n_vocab)
        self.decodes = 0
        # Seconds a proposed token costs (its share of catching up on the tokens the
        # target took since, and of drafting), a moving average: the scheduler weighs it
        # against a target step (LlamaEngine._guess).
        self.seconds_per_guess = 0.0
        self.proposals = 0  # billed calls that proposed something

    def close(self) -> None:
        self.model.close()

    def forget(self, seq: int) -> None:
        """The target slot's context changed wholesale (a state was loaded into it)."""
        llama_cpp.llama_memory_seq_rm(self.model.memory, seq, -1, -1)
        self._sequences[seq].tokens = []

    def draft(self, wants: Sequence[tuple[int, Sequence[int], int]]) -> dict[int, list[int]]:
        """Drafts for several slots at once: (seq, the slot's context, at most k tokens).

        The context is everything the target's sequence will hold once this step's token is
        evaluated: the prompt, the reply so far and the token about to be decoded. The
        reply is drafts of up to k tokens for the slots that have caught up; a slot still
        reading its context gets none this step.
        """
        started = time.perf_counter()
        behind = (
            max(
                len(context) - common_prefix(self._sequences[seq].tokens, context)
                for seq, context, _ in wants
            )
            if wants
            else 0
        )
        drafts = self._draft(wants)
        proposed = sum(len(tokens) for tokens in drafts.values())
        # Only steady steps are billed: reading a new prompt is a one-time cost per request,
        # as the target's own prompt reading is, and would hide what a guess costs.
        if proposed and behind <= STEADY_CATCH_UP:
            self.proposals += 1
            cost = (time.perf_counter() - started) / proposed
            known = self.seconds_per_guess
            self.seconds_per_guess = cost if known == 0.0 else 0.8 * known + 0.2 * cost
        return drafts

    def _draft(self, wants: Sequence[tuple[int, Sequence[int], int]]) -> dict[int, list[int]]:
        ready = self._catch_up(wants)
        drafts: dict[int, list[int]] = {seq: [] for seq, _, _ in wants}
        if not ready:
            return drafts
        # `ready` maps seq -> the batch row of its last context token's logits.
        rows = ready
        limits = {seq: k for seq, _, k in wants}
        while rows:
            next_rows: dict[int, int] = {}
            batch = self._batch
            batch.clear()
            for seq, row in rows.items():
                token, probability = self._pick(row)
                if probability < DRAFT_MIN_PROBABILITY:
                    continue
                drafts[seq].append(token)
                if len(drafts[seq]) >= limits[seq]:
                    continue
                sequence = self._sequences[seq]
                next_rows[seq] = batch.add([token], len(sequence.tokens), seq, True)
                sequence.tokens.append(token)
            if not next_rows:
                break
            if not self._decode():
                return {seq: [] for seq in drafts}
            rows = next_rows
        return drafts

    def _catch_up(self, wants: Sequence[tuple[int, Sequence[int], int]]) -> dict[int, int]:
        """Bring each slot's draft sequence up to its context; the rows of those done."""
        batch = self._batch
        batch.clear()
        done: dict[int, int] = {}
        for seq, context, _ in wants:
            sequence = self._sequences[seq]
            # At least the last context token is evaluated again, for its logits.
            keep = min(common_prefix(sequence.tokens, context), len(context) - 1)
            if keep < len(sequence.tokens):
                if not llama_cpp.llama_memory_seq_rm(self.model.memory, seq, keep, -1):
                    llama_cpp.llama_memory_seq_rm(self.model.memory, seq, -1, -1)
                    keep = 0
                del sequence.tokens[keep:]
            missing = list(context[keep:])
            chunk = missing[: min(CATCH_UP_PER_STEP, batch.room)]
            if not chunk:
                continue
            last = len(chunk) == len(missing)
            row = batch.add(chunk, keep, seq, last)
            sequence.tokens.extend(chunk)
            if last:
                done[seq] = row
        if batch.size and not self._decode():
            return {}
        return done

    def _decode(self) -> bool:
        status = self._batch.decode(self.model.ctx)
        self.decodes += 1
        if status == 0:
            return True
        log.warning("the draft model failed to decode (status %d); it starts over", status)
        for seq in range(len(self._sequences)):
            self.forget(seq)
        return False

    def _pick(self, row: int) -> tuple[int, float]:
        """The draft's most likely token at a batch row, and its probability."""
        logits = self._rows(self.model.ctx, row)
        token = int(logits.argmax())
        # softmax of the winner alone: exp(0) over the sum of exp(logit - max).
        probability = 1.0 / float(np.exp(logits - logits[token]).sum())
        return token, probability


class ModelDrafter:
    """One job's drafter (engine/speculation.Drafter): the draft model's sequence for the
    slot the job runs in."""

    def __init__(self, model: DraftModel, seq: int) -> None:
        self._model = model
        self._seq = seq

    def propose(self, context: Sequence[int], limit: int) -> list[int]:
        return self._model.draft([(self._seq, context, limit)])[self._seq]


def check_same_vocabulary(target: LlamaModel, draft: LlamaModel) -> None:
    """Refuse a draft whose tokens are not the target's, naming the first difference."""
    name = draft.options.path.name
    if draft.n_vocab != target.n_vocab:
        raise DraftModelMismatch(
            f"the draft model {name} has {draft.n_vocab} tokens and the target "
            f"{target.options.path.name} {target.n_vocab}: a draft model needs the same "
            "vocabulary (a smaller or quantized model of the same family)"
        )
    for token in range(target.n_vocab):
        if draft.special_piece(token) != target.special_piece(token):
            raise DraftModelMismatch(
                f"the draft model {name} writes token {token} as "
                f"{draft.special_piece(token)!r} where the target writes "
                f"{target.special_piece(token)!r}: a draft model needs the same vocabulary"
            )
    for special in ("bos", "eos"):
        getter = getattr(llama_cpp, f"llama_vocab_{special}")
        if getter(draft.vocab) != getter(target.vocab):
            raise DraftModelMismatch(
                f"the draft model {name} has another {special.upper()} token than the target"
            )
