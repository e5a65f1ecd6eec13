"""The llama.cpp engine: continuous batching over slots, with a prompt cache.

One scheduler thread owns the llama.cpp context. Each step it
  1. admits waiting requests into free slots, first come first served (interactive ones
     before batch ones; an interactive one that finds every slot taken suspends a batch
     line for it), giving each the slot whose cache it continues (else the least recently
     used one), and restoring a longer prefix from another slot, the host-memory cache or
     the prompt cache on disk when one holds it;
  2. builds one batch: the next token of every generating slot, then prompt chunks of the
     slots still reading their prompt, up to n_batch tokens, so a long prompt is read in
     pieces between the other streams' steps instead of freezing them;
  3. runs llama_decode once, then samples each slot's token with its own sampler chain.
A request that arrives joins at the next step. Interactive requests never interrupt one
another; a batch line may be paused for one, and goes on later where it stopped.
llama_decode releases the GIL, so the event loop keeps serving while a step runs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, Literal

import llama_cpp

from hearth.engine.base import (
    EngineOptions,
    Finished,
    GenerationRequest,
    ModelInfo,
    Prompt,
    TextDelta,
)
from hearth.engine.batch import TokenBatch
from hearth.engine.disk_cache import DiskPromptCache
from hearth.engine.draft_model import DraftModel, ModelDrafter
from hearth.engine.embedding import EmbeddingContext
from hearth.engine.errors import (
    ContextExceeded,
    GenerationFailed,
    InvalidTokens,
    ModelLoadError,
    NotStarted,
    QueueFull,
)
from hearth.engine.logprobs import LogprobReader
from hearth.engine.model import LlamaModel
from hearth.engine.sampler import SamplerChain
from hearth.engine.slots import HostCache, Job, Slot, common_prefix
from hearth.engine.speculation import (
    DRAFTERS,
    MIN_ACCEPTANCE,
    NO_GAIN,
    Drafter,
    Speculation,
    StepCost,
    step_budget,
    verify,
)
from hearth.engine.state_key import cache_folder, state_key
from hearth.engine.stream import GenerationStream, Outbox
from hearth.engine.text import StopMatcher, held_overlap

log = logging.getLogger(__name__)

# Saving a sequence to host memory costs a copy of its KV; below this many tokens it is
# cheaper to evaluate the prefix again than to save and restore it.
MIN_TOKENS_WORTH_SAVING = 256

# A prefix held by another slot is copied when that saves at least this many prompt tokens
# (a copy costs about 9 us per KV cell on a 2-core CPU, evaluating a prompt token about
# 5 ms) and its state is at most COPY_LIMIT_BYTES, the host memory a copy may borrow.
MIN_TOKENS_WORTH_COPYING = 16
COPY_LIMIT_BYTES = 256 << 20

# A prompt state on disk is read instead of evaluating its tokens when it holds at least
# this many more than the best prefix in memory: reading it costs a file read and a copy of
# its whole state (about 23 KB a token for SmolLM2-135M, some milliseconds a thousand
# tokens), evaluating a token about 5 ms on a 2-core CPU.
MIN_TOKENS_WORTH_READING = 32

# Prompt tokens evaluated per step while other slots are generating. A step costs roughly
# its token count; on a small CPU 512 prompt tokens take seconds, which would stall every
# other stream for that long.
PREFILL_CHUNK_WHILE_DECODING = 128

# A draft model whose guesses cost at least this share of a target step each, in drafting
# alone, is let go once DRAFT_PROPOSALS_BEFORE_VERDICT steady steps have measured it:
# with about as much again to verify each guessed row (on a CPU), even guesses always
# taken would lose.
DRAFT_COST_LIMIT = 0.5
DRAFT_PROPOSALS_BEFORE_VERDICT = 4

# Tokenized prompts kept for the admission that follows their fitting (see _tokenize).
RECENT_PROMPTS = 8


class LlamaEngine:
    def __init__(self, options: EngineOptions) -> None:
        self._options = options
        self._max_queue = options.max_queue
        self._model: LlamaModel | None = None
        self._info: ModelInfo | None = None
        self._slots: list[Slot] = []
        self._waiting: deque[Job] = deque()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._host_cache = HostCache(options.cache_ram_bytes)
        self._disk_cache = DiskPromptCache(None, 0, {})
        self._draft_model: DraftModel | None = None
        # Slots (seq ids) holding what a request left and the disk cache has not been
        # offered yet (see _store_due).
        self._disk_due: set[int] = set()
        self._outbox = Outbox(options.stream_interval)
        self._recent_prompts: dict[Prompt, tuple[int, ...]] = {}
        self._recent_lock = threading.Lock()
        self.stats = EngineStats()
        self._embedding: EmbeddingContext | None = None
        self._embedding_lock = threading.Lock()
        self._embedding_requests = 0
        self._devices: list[dict[str, object]] = []

    # ---- lifecycle ----------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def active(self) -> int:
        busy = sum(slot.busy for slot in self._slots) + self._pending()
        return busy + self._embedding_requests

    def _pending(self) -> int:
        """Jobs waiting for a slot, the choices held behind their first one included."""
        jobs = [*self._waiting, *(slot.job for slot in self._slots if slot.job is not None)]
        return len(self._waiting) + sum(len(job.followers) for job in jobs)

    @property
    def failure(self) -> Exception | None:
        return None  # in process: a failure that ends the engine ends the server

    @property
    def info(self) -> ModelInfo:
        if self._info is None:
            raise NotStarted("The model is still loading.")
        return self._info

    @property
    def options(self) -> EngineOptions:
        return self._options

    async def start(self) -> None:
        """Load the model (off the event loop) and start the scheduler thread."""
        self._model = await asyncio.to_thread(LlamaModel, self._options)
        self._info = self._model.info()
        self._devices = self._model.device_report()
        self._disk_cache = await asyncio.to_thread(self._open_disk_cache, self._model)
        self._slots = [Slot(seq_id=i) for i in range(self._options.n_seq)]
        self._batch = TokenBatch(self._options.n_batch)
        self._speculate = self._options.speculate and self._model.drops_tails()
        if self._speculate and self._options.draft_model is not None:
            try:
                self._draft_model = await asyncio.to_thread(
                    DraftModel, self._options.draft_model, self._model, self._options
                )
            except ModelLoadError:
                self._model.close()
                self._model = None
                raise
        self._step_cost = StepCost()
        self._break_even = MIN_ACCEPTANCE
        if self._options.speculate and not self._speculate:
            log.info(
                "speculation is off for %s: its memory cannot drop guessed tokens",
                self._options.name,
            )
        self._logprobs = LogprobReader(self._model.n_vocab, self._model.piece)
        self._thread = threading.Thread(target=self._run, name="hearth-scheduler", daemon=True)
        self._thread.start()

    async def embed(self, inputs: list[Prompt | list[int]]) -> tuple[list[list[float]], int]:
        """Each input's pooled, normalized embedding, and the tokens read."""
        if self._model is None:
            raise NotStarted("The model is still loading.")
        with self._embedding_lock:
            if self._embedding is None:
                self._embedding = EmbeddingContext(
                    self._model, self._options.n_ctx, self._options.threads
                )
        vectors, used = [], 0
        self._embedding_requests += 1  # counted as active: the model is not unloaded under it
        try:
            for item in inputs:
                tokens = self._tokenize(item) if isinstance(item, Prompt) else list(item)
                if not isinstance(item, Prompt):
                    self._pieces_of(tokens)  # refuses ids outside the vocabulary
                vector = await asyncio.to_thread(self._embedding.embed, tokens)
                vectors.append(vector.tolist())
                used += len(tokens)
        finally:
            self._embedding_requests -= 1
        return vectors, used

    async def close(self) -> None:
        if self._embedding is not None:
            self._embedding.close()
            self._embedding = None
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        # After the scheduler: the turns it finished on its way out are written too.
        await asyncio.to_thread(self._disk_cache.close)
        if self._draft_model is not None:
            self._draft_model.close()
            self._draft_model = None
        if self._model is not None:
            self._model.close()
            self._model = None

    # ---- requests (event loop) ----------------------------------------------------------

    def count_tokens(self, prompt: Prompt) -> int:
        return len(self._tokenize(prompt))

    def tokenize(self, prompt: Prompt) -> list[int]:
        return self._tokenize(prompt)

    def detokenize(self, tokens: list[int]) -> str:
        return b"".join(self._pieces_of(tokens)).decode("utf-8", errors="replace")

    def token_piece(self, token: int) -> str:
        return self._pieces_of([token])[0].decode("utf-8", errors="replace")

    def control_text(self, token: int) -> str | None:
        if self._pieces_of([token])[0]:
            return None  # a token with text of its own is no control token
        assert self._model is not None
        return self._model.special_piece(token).decode("utf-8", errors="replace") or None

    def _pieces_of(self, tokens: list[int]) -> list[bytes]:
        if self._model is None:
            raise NotStarted("The model is still loading.")
        model = self._model
        wrong = [t for t in tokens if not 0 <= t < model.n_vocab]
        if wrong:
            raise InvalidTokens(
                f"token id {wrong[0]} is outside the vocabulary (0 to {model.n_vocab - 1})"
            )
        return [model.piece(t) for t in tokens]

    def _tokenize(self, prompt: Prompt) -> list[int]:
        """The prompt's tokens, from the few most recent prompts when it is one of them.

        The HTTP layer tokenizes a prompt in a worker thread (for a long conversation that
        takes seconds) and submits it on the event loop a moment later; the submit takes
        the tokens from here. Any thread may call this; the lock guards only the dict, never
        the tokenizing. A prompt longer than the context is not kept: it is never admitted,
        and eight of them would hold hundreds of megabytes.
        """
        if self._model is None:
            raise NotStarted("The model is still loading.")
        with self._recent_lock:
            tokens = self._recent_prompts.pop(prompt, None)
        if tokens is None:
            tokens = tuple(
                self._model.tokenize_prompt(
                    prompt.text,
                    prompt.pieces,
                    add_special=prompt.add_special,
                    parse_special=prompt.parse_special,
                )
            )
        if len(tokens) < self._options.n_ctx:
            with self._recent_lock:
                self._recent_prompts[prompt] = tokens
                while len(self._recent_prompts) > RECENT_PROMPTS:
                    del self._recent_prompts[next(iter(self._recent_prompts))]
        return list(tokens)

    def submit(self, request: GenerationRequest) -> GenerationStream:
        return self.submit_choices(request, 1)[0]

    def submit_choices(self, request: GenerationRequest, n: int) -> list[GenerationStream]:
        if not self.ready:
            raise NotStarted("The model is still loading.")
        tokens = self._tokenize(request.prompt)
        limit = self.info.n_ctx
        room = limit - len(tokens)
        if not tokens or room < 1 or (request.max_tokens and request.max_tokens > room):
            raise ContextExceeded(
                limit=limit, prompt_tokens=len(tokens), max_tokens=request.max_tokens
            )
        loop = asyncio.get_running_loop()
        jobs = [
            Job(
                request=_choice(request, index),
                prompt=tokens,
                stream=GenerationStream(loop, self._outbox, len(tokens), self._notify),
                max_new_tokens=min(request.max_tokens or room, room),
            )
            for index in range(n)
        ]
        leader = jobs[0]
        leader.followers = jobs[1:]
        with self._wake:
            queued = self._queued()
            if queued >= self._max_queue:
                raise QueueFull(
                    f"The server is busy: {queued} requests are waiting. Try again shortly.",
                    retry_after=2,
                )
            self._waiting.append(leader)
            self._wake.notify()
        return [job.stream for job in jobs]

    def _queued(self) -> int:
        """Waiting requests that no free slot will take at the next step (under the lock).

        The first `free` waiting requests are as good as in a slot: the scheduler moves
        them at its next step. Counting them as queued as well made a burst of 32 against
        4 free slots and --max-queue 8 admit 8 (or 9, racing the scheduler), not 12.
        """
        free = sum(not slot.busy for slot in self._slots)
        return max(0, self._pending() - free)

    def _notify(self) -> None:
        with self._wake:
            self._wake.notify()

    def load(self) -> dict[str, Any]:
        """A snapshot for /health: slots, queue, cache, and where step time goes."""
        return {
            "slots": len(self._slots),
            "slots_busy": sum(slot.busy for slot in self._slots),
            "waiting": self._pending(),
            "host_cache_entries": len(self._host_cache),
            "host_cache_bytes": self._host_cache.used,
            **self._disk_cache.report(),
            "engine": self.stats.as_dict(),
            **({"devices": self._devices} if self._devices else {}),
        }

    # ---- scheduler thread ---------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._stopping and not self._has_work():
                    self._wake.wait()
                if self._stopping:
                    break
                admitted = self._admit()
            try:
                for slot in admitted:
                    self._start_job(slot)
                self._drop_cancelled()
                self._end_asked()
                if any(slot.busy for slot in self._slots):
                    self._step()
            except Exception:
                log.exception("scheduler step failed; failing the running requests")
                self._reset_all()
            # What the steps produced goes to the event loop as one hand-off, so its HTTP
            # work overlaps the next llama_decode; text may wait for the stream interval,
            # and nothing waits once the engine has nothing left to do (see stream.Outbox).
            idle = not self._has_work()
            self._outbox.flush(now=idle)
            if self._disk_due and idle:
                self._store_due(self._slots)  # idle: no stream waits for the copies
        for slot in self._slots:
            if slot.job is not None:
                self._finish(slot, GenerationFailed("The server is shutting down."))
        self._outbox.flush(now=True)
        self._store_due(self._slots)

    def _has_work(self) -> bool:
        return bool(self._waiting) or any(slot.busy for slot in self._slots)

    def _admit(self) -> list[Slot]:
        """Pair waiting jobs with free slots (called under the lock).

        Interactive jobs go first, oldest first; batch jobs (the Batch API's lines) follow,
        suspended ones first, then oldest first, and take any free slot, so a batch alone
        runs on every slot. An interactive job that finds no slot free takes a batch
        line's (`_suspend`) instead of waiting for one to end, which could take a whole
        reply. (Keeping the last slot free for it instead cost a batch alone a quarter of
        the engine's throughput with 4 slots.) A batch job never suspends another.
        """
        admitted: list[Slot] = []
        while True:
            job = self._next_waiting()
            if job is None:
                break
            free = [slot for slot in self._slots if not slot.busy]
            if not free and job.request.priority != "batch":
                victim = self._batch_victim(admitted)
                if victim is not None:
                    self._suspend(victim)
                    free = [victim]
            if not free:
                break
            self._waiting.remove(job)
            slot = self._choose_slot(free, job.resume or job.prompt)
            slot.job = job
            admitted.append(slot)
        return admitted

    def _next_waiting(self) -> Job | None:
        """The oldest interactive waiting job, else the oldest batch one; cancelled jobs go."""
        for job in [job for job in self._waiting if job.stream.cancelled]:
            self._waiting.remove(job)
            self._release_followers(job)
            if job.sampler is not None:  # a suspended batch line's
                job.sampler.close()
        return next(
            (job for job in self._waiting if job.request.priority != "batch"),
            self._waiting[0] if self._waiting else None,
        )

    def _batch_victim(self, admitted: list[Slot]) -> Slot | None:
        """The running batch line that loses least by pausing: the one whose slot holds
        the fewest tokens, which is what it may have to read again (usually the one that
        started last). Lines admitted in this same round have not started yet."""
        lines = [
            slot
            for slot in self._slots
            if slot.job is not None
            and slot.job.request.priority == "batch"
            and slot not in admitted
            and not slot.job.stream.done
        ]
        return min(lines, key=lambda slot: len(slot.tokens), default=None)

    def _suspend(self, slot: Slot) -> None:
        """Pause a batch line and free its slot (called under the lock).

        Not a cancel: its stream has delivered text, so running it again would repeat it.
        The job keeps its sampler chain, stop matcher, text state and counters, and goes
        back to the queue ahead of other batch work with `resume` set to the tokens it had
        reached: prompt, generated tokens, and the sampled token not yet evaluated.

        Its KV goes to the host cache whatever its length (a copy takes about 9 us a
        token, reading it again about 5 ms a token; and a sequence read again in other
        batch splits can round differently, where a restored one goes on bit for bit).
        The copy is made here, under the lock, for a few milliseconds. Without a host
        cache the slot keeps its tokens for whatever prefix logic can still reuse.
        """
        job = slot.job
        assert job is not None and self._model is not None
        ahead = [slot.next_token] if slot.next_token is not None else []
        job.resume = slot.tokens + slot.pending + ahead
        if slot.tokens and self._host_cache.budget > 0 and self._host_cache.save(self._model, slot):
            slot.tokens = []  # the saved copy is what it resumes from; the slot starts clean
        slot.job = None
        slot.pending = []
        slot.next_token = None
        slot.last_used = time.monotonic()
        self._waiting.appendleft(job)
        self.stats.suspended_batch_lines += 1
        log.debug("suspended a batch line at %d tokens for an interactive one", len(job.resume))

    @staticmethod
    def _choose_slot(free: list[Slot], prompt: list[int]) -> Slot:
        """The free slot whose cache this prompt continues, else the least recently used.

        A slot counts as continued when the shared prefix is at least half of what the slot
        holds (the same conversation one turn later) or half of the prompt (the same prompt
        again, as a regenerate sends it, or a long system prompt shared by many requests).
        A few tokens in common, such as a chat template's first line, are no reason to
        overwrite another conversation's cache: doing so made users who take turns evict
        one another.
        """
        shared, slot = max(((common_prefix(s.tokens, prompt), s) for s in free), key=_by_share)
        if shared > 0 and (2 * shared >= len(slot.tokens) or 2 * shared >= len(prompt)):
            return slot
        return min(free, key=lambda s: s.last_used)

    def _start_job(self, slot: Slot) -> None:
        job = slot.job
        assert job is not None and self._model is not None
        if job.resume is not None:
            self._resume(slot)
            return
        reuse = self._place_prefix(slot, job.prompt)
        job.cached_tokens = reuse
        lazy = job.request.grammar_trigger is not None
        job.sampler = SamplerChain(
            job.request.sampling,
            self._model.n_vocab,
            None if lazy else job.request.grammar,
            self._model.vocab,
        )
        job.trigger_tail = "" if lazy else None
        job.insert_watch = "" if job.request.insert is not None else None
        job.stops = StopMatcher(job.request.stop)
        for token in job.prompt[-job.request.sampling.repeat_last_n :]:
            job.sampler.accept(token)
        self.stats.cached_tokens += reuse

    def _resume(self, slot: Slot) -> None:
        """Rebuild a suspended batch line's KV in its new slot; the job goes on from there.

        Nothing of the job is made again (the sampler has seen its prompt and its tokens,
        penalties included). The longest prefix at hand is restored and the rest is read
        as a prompt, down to the sampled token the line stopped at: its logits are what
        the line samples from next, exactly as the step it missed would have given them.
        """
        job = slot.job
        assert job is not None and job.resume is not None
        tokens, job.resume = job.resume, None
        self._place_prefix(slot, tokens)
        job.speculation = None  # its drafter may belong to the slot it left

    def _place_prefix(self, slot: Slot, tokens: list[int]) -> int:
        """Make the slot hold the longest prefix of `tokens` at hand, and queue the rest.

        The prefix comes from the slot's own cache, another slot, the host-memory cache
        or the prompt cache on disk, whichever holds most. Returns the tokens reused.
        """
        assert self._model is not None
        own = common_prefix(slot.tokens, tokens)
        if own < len(slot.tokens):
            self._store_due([slot])  # about to be cut or replaced
        saved, saved_len = self._host_cache.best_match(tokens)
        donor = self._best_donor(slot, tokens, max(own + MIN_TOKENS_WORTH_COPYING, saved_len))
        in_memory = max(own, saved_len, common_prefix(donor.tokens, tokens) if donor else 0)
        if not self._restore_from_disk(slot, tokens, better_than=in_memory):
            lent = self._model.read_state(donor.seq_id, COPY_LIMIT_BYTES) if donor else bytearray()
            if donor is not None and lent:
                self._load(slot, donor.tokens, lent)
            elif saved is not None and saved_len > own:
                self._load(slot, saved.tokens, self._host_cache.take(saved))
            else:
                self._save_if_worthwhile(slot, keep=own)
        # At least one token is evaluated, so there are logits to sample from.
        reuse = min(common_prefix(slot.tokens, tokens), len(tokens) - 1)
        if not llama_cpp.llama_memory_seq_rm(self._model.memory, slot.seq_id, reuse, -1):
            llama_cpp.llama_memory_seq_rm(self._model.memory, slot.seq_id, -1, -1)
            reuse = 0
        slot.tokens = tokens[:reuse]
        slot.pending = tokens[reuse:]
        slot.next_token = None
        return reuse

    def _load(self, slot: Slot, tokens: Sequence[int], state: bytearray) -> None:
        """Put a longer prefix than its own into the slot: the state of another slot's
        sequence, or of one saved in host memory (LlamaModel.read_state)."""
        assert self._model is not None
        self._save_if_worthwhile(slot, keep=0)
        loaded = self._model.write_state(slot.seq_id, state)
        slot.tokens = list(tokens) if loaded else []

    def _restore_from_disk(self, slot: Slot, prompt: list[int], better_than: int) -> bool:
        """Load the prompt cache's file with the longest prefix of prompt into the slot, when
        it beats what memory holds. A file that is gone, damaged or refused by llama.cpp is
        skipped (the damaged and refused ones deleted), and the prompt is read as usual."""
        stored, length = self._disk_cache.best_match(prompt)
        if stored is None or length < better_than + MIN_TOKENS_WORTH_READING:
            return False
        started = time.perf_counter()
        state = self._disk_cache.read(stored)
        if state is None:
            return False
        read = time.perf_counter()
        self._load(slot, stored.tokens, state)
        if not slot.tokens:
            self._disk_cache.discard(stored, "llama.cpp did not take its state")
            return False
        restored = min(length, len(prompt) - 1)
        self._disk_cache.stats.hits += 1
        self._disk_cache.stats.restored_tokens += restored
        log.debug(
            "restored %d prompt tokens from disk: file read in %.3f s, loaded in %.3f s",
            restored,
            read - started,
            time.perf_counter() - read,
        )
        return True

    def _store_due(self, slots: list[Slot]) -> None:
        """Offer what these released slots hold (prompt and reply, or the part of a prompt
        read before a cancel) to the prompt cache on disk.

        The state is copied on the scheduler thread, which alone may touch the context
        (the writing is not): about 70 ms for 2,400 tokens of SmolLM2-135M on two busy
        cores, during which no stream advances. So it waits for a moment nobody waits on:
        the scheduler idle, or the slot about to be cut or replaced by another prompt. A
        slot whose next request continues it is not copied at all: that request's end
        offers the longer state.
        """
        for slot in slots:
            if slot.seq_id not in self._disk_due:
                continue
            self._disk_due.discard(slot.seq_id)
            if not self._disk_cache.wants(slot.tokens):
                continue
            assert self._model is not None
            try:
                state = self._model.read_state(slot.seq_id, self._disk_cache.room())
            except Exception:  # a lost cache write must not stop the scheduler
                log.exception("copying a prompt state for the disk cache failed")
                continue
            self._disk_cache.put(slot.tokens, state)

    def _open_disk_cache(self, model: LlamaModel) -> DiskPromptCache:
        options = self._options
        if options.cache_dir is None or options.cache_disk_bytes <= 0:
            return DiskPromptCache(None, 0, {})
        key = state_key(model)
        folder = cache_folder(options.cache_dir, options.path, key)
        cache = DiskPromptCache(folder, options.cache_disk_bytes, key)
        cache.open()
        return cache

    def _best_donor(self, slot: Slot, prompt: list[int], at_least: int) -> Slot | None:
        """The other slot, busy or not, whose cache shares the longest prefix with prompt,
        if that prefix is at least `at_least` tokens. (Its state is copied only if it is
        at most COPY_LIMIT_BYTES; see _start_job.)

        Many requests open the same way: one system prompt for a whole household, the
        same question asked by several clients at once. Such a prefix is read once and
        then copied between slots. (A slot's tokens are exactly what its KV holds between
        steps, so a busy slot can lend its prefix too. llama_memory_seq_cp between the
        separate KV streams of non-unified slots copies the whole stream: 38 ms where the
        state of the same 42-token prefix took under 2 ms.)
        """
        best, best_len = None, 0
        for other in self._slots:
            if other is not slot:
                length = common_prefix(other.tokens, prompt)
                if length > best_len:
                    best, best_len = other, length
        return best if best_len >= at_least else None

    def _save_if_worthwhile(self, slot: Slot, keep: int) -> None:
        """Before a slot's cached tokens are overwritten, keep them in host memory."""
        if self._host_cache.budget <= 0 or len(slot.tokens) - keep < MIN_TOKENS_WORTH_SAVING:
            return
        assert self._model is not None
        self._host_cache.save(self._model, slot)

    def _drop_cancelled(self) -> None:
        for slot in self._slots:
            if slot.job is not None and slot.job.stream.cancelled:
                self._release(slot)

    def _end_asked(self) -> None:
        """Finish the generations whose consumer asked to end now, as max_tokens would."""
        for slot in self._slots:
            job = slot.job
            if job is not None and job.stream.end_asked and not job.stream.done:
                if job.stops is not None:
                    self._flush(job)
                self._finish(slot, "length")

    def _step(self) -> None:
        assert self._model is not None
        batch = self._batch
        batch.clear()
        started = time.perf_counter()
        generating = []
        for slot in self._slots:
            slot.output_index = -1
            slot.draft = []
            if slot.job is not None and slot.next_token is not None:
                slot.tokens.append(slot.next_token)
                generating.append(slot)
        if self._speculate:
            self._guess(generating)
        # What a row costs is measured on the steps that may guess: one slot, no prompt.
        measured = self._speculate and len(generating) == 1 and not self._prefilling()
        for slot in generating:
            assert slot.next_token is not None
            rows = [slot.next_token, *slot.draft]
            last = batch.add(rows, len(slot.tokens) - 1, slot.seq_id, True, bool(slot.draft))
            slot.output_index = last - len(slot.draft)
            slot.next_token = None
        # While other streams are generating, prompt chunks stay small so that each step,
        # and so each of their tokens, is not held up by a long prompt for seconds.
        limit = batch.capacity
        if batch.size:
            limit = min(limit, batch.size + PREFILL_CHUNK_WHILE_DECODING)
        for slot in self._prefilling():
            room = limit - batch.size
            if room <= 0:
                break
            chunk = slot.pending[:room]
            last = len(chunk) == len(slot.pending)
            index = batch.add(chunk, len(slot.tokens), slot.seq_id, last)
            slot.output_index = index if last else -1
            slot.tokens.extend(chunk)
            slot.pending = slot.pending[len(chunk) :]
        if batch.size == 0:
            return
        decode_started = time.perf_counter()
        status = batch.decode(self._model.ctx)
        decoded = time.perf_counter()
        if status != 0:
            self._fail_batch(status)
            return
        if measured:
            self._step_cost.record(batch.size, len(generating), decoded - decode_started)
        for slot in self._slots:
            if slot.job is not None and slot.output_index >= 0:
                self._sample(slot)
        self.stats.record(
            batch.size,
            decode_started - started,
            decoded - decode_started,
            time.perf_counter() - decoded,
        )

    def _prefilling(self) -> list[Slot]:
        return [slot for slot in self._slots if slot.job is not None and slot.pending]

    def _guess(self, generating: list[Slot]) -> None:
        """Give the generating slots their guesses for this step, within its budget.

        Each slot that wants to guess may take an even share of the budget (at least one
        token), the jobs whose guesses are taken most often first; a share one leaves
        unused goes to those after it. A job writing an insert guesses nothing (its next
        tokens are known), nor one with no room left in its max_tokens: row j samples its
        (generated + j + 1)-th token.
        """
        budget = step_budget(len(generating), bool(self._prefilling()))
        if budget <= 0:
            return
        self._break_even = self._step_cost.break_even(len(generating))
        if self._break_even >= NO_GAIN:
            return
        if self._draft_model is not None and not self._step_cost.probing:
            # A draft model's guesses cost its own decodes too: the share of them that must
            # be taken rises by what a guess costs against a target step. A draft about as
            # costly as the target never pays: it is let go for the n-gram lookup.
            # Its first steady guesses are made freely, to measure it.
            share = self._draft_model.seconds_per_guess / max(self._step_cost.seconds(1), 1e-6)
            if self._draft_model.proposals >= DRAFT_PROPOSALS_BEFORE_VERDICT:
                self._keep_draft_model_if_it_pays(share)
                if self._draft_model is not None:
                    self._break_even += share
                    if self._break_even >= NO_GAIN:
                        return
        wanting = []
        for slot in generating:
            job = slot.job
            assert job is not None
            if job.speculation is None:
                job.speculation = Speculation(self._drafter(slot), self._options.draft_max)
            room = job.max_new_tokens - job.generated - 1
            wanted = min(job.speculation.wanted(job.generated), room)
            if wanted > 0 and not job.forced and not _seeded_draws(job):
                wanting.append((job.speculation.rate, wanted, slot))
        wanting.sort(key=lambda entry: -entry[0])
        for place, (_, wanted, slot) in enumerate(wanting):
            share = max(1, budget // (len(wanting) - place))
            wanted = min(wanted, share)
            assert slot.job is not None and slot.job.speculation is not None
            slot.draft = slot.job.speculation.drafter.propose(slot.tokens, wanted)
            slot.job.speculation.drafted += len(slot.draft)
            budget -= len(slot.draft)
            if budget <= 0:
                break

    def _keep_draft_model_if_it_pays(self, share: float) -> None:
        """Let the draft model go, for the n-gram lookup, when a guess costs at least
        DRAFT_COST_LIMIT of a target step in drafting alone (`share`): on a CPU its rows
        cost about as much again to verify, so such guesses lose however often taken."""
        draft = self._draft_model
        assert draft is not None
        if share < DRAFT_COST_LIMIT:
            return
        log.warning(
            "the draft model spends %.1f ms a guess against %.1f ms a token for %s itself: "
            "it cannot pay for its guesses here, so it is unloaded and guesses come from the "
            "n-gram lookup (a draft pays when it is several times faster than the target)",
            1000 * draft.seconds_per_guess,
            1000 * self._step_cost.seconds(1),
            self._options.name,
        )
        self._draft_model = None
        draft.close()
        for slot in self._slots:
            if slot.job is not None and slot.job.speculation is not None:
                slot.job.speculation.drafter = DRAFTERS["ngram"]()

    def _drafter(self, slot: Slot) -> Drafter:
        """A new job's drafter: the draft model's sequence for its slot, else n-grams."""
        if self._draft_model is not None:
            return ModelDrafter(self._draft_model, slot.seq_id)
        return DRAFTERS["ngram"]()

    def _sample(self, slot: Slot) -> None:
        """Sample the slot's row, and its guess's rows while the guess holds (speculation.verify);
        then drop from the KV what was decoded and not taken."""
        job = slot.job
        assert job is not None and self._model is not None
        # This job's prompt is read: the other choices of its request can start from it.
        self._release_followers(job)
        draft, first = slot.draft, slot.output_index
        slot.draft = []
        if not draft:
            slot.next_token = self._emit(slot, first)
            return
        decoded_to = len(slot.tokens) + len(draft)
        speculation = job.speculation
        assert speculation is not None

        def emit(row: int) -> int | None:
            if row > 0:  # the guessed token before this row was taken: the KV holds it
                slot.tokens.append(draft[row - 1])
                speculation.accepted += 1
            return self._emit(slot, first + row)

        def go_on() -> bool:
            return not (job.stream.cancelled or job.stream.end_asked)

        taken, slot.next_token = verify(draft, emit, go_on)
        speculation.record(len(draft), taken, job.generated, self._break_even)
        self.stats.draft_tokens += len(draft)
        self.stats.accepted_draft_tokens += taken
        if len(slot.tokens) < decoded_to and not llama_cpp.llama_memory_seq_rm(
            self._model.memory, slot.seq_id, len(slot.tokens), -1
        ):
            raise GenerationFailed("llama.cpp could not drop the unconfirmed guessed tokens")

    def _emit(self, slot: Slot, row: int) -> int | None:
        """Sample one token from a row and send it on its way: the job's ordinary
        per-token path. Returns the token, or None when it ended the generation."""
        job = slot.job
        assert job is not None and job.sampler is not None and job.stops is not None
        assert self._model is not None
        token = self._forced_token(job)
        if token is None:
            token = job.sampler.sample(self._model.ctx, row)
        if self._model.is_end_of_generation(token):
            self._flush(job)
            self._finish(slot, "stop")
            return None
        job.generated += 1
        if job.request.logprobs is not None:
            job.logprobs.append(
                self._logprobs.read(self._model.ctx, row, token, job.request.logprobs)
            )
        written = job.utf8.feed(self._model.piece(token))
        if job.trigger_tail is not None and written:
            self._watch_trigger(job, written)
        if job.insert_watch is not None:
            self._watch_insert(job, written)
        text, stopped = job.stops.feed(written)
        if text:
            job.stream.push(_delta(job, text))
        if stopped:
            self._finish(slot, "stop", job.stops.matched)
        elif job.generated >= job.max_new_tokens:
            self._flush(job)
            self._finish(slot, "length")
        else:
            return token
        return None

    def _watch_trigger(self, job: Job, written: str) -> None:
        """Hand the reply to its lazy grammar once the trigger appears in what was written."""
        assert job.trigger_tail is not None and job.sampler is not None and self._model
        trigger, grammar = job.request.grammar_trigger, job.request.grammar
        assert trigger and grammar
        tail = job.trigger_tail + written
        start = tail.find(trigger)
        if start < 0:
            # Keep what could be the trigger's beginning: its length less one character.
            job.trigger_tail = tail[max(0, len(tail) - len(trigger) + 1) :]
            return
        job.trigger_tail = None
        replay = self._model.tokenize(tail[start:], add_special=False, parse_special=False)
        if not job.sampler.constrain(grammar, self._model.vocab, replay):
            log.info("the lazy grammar does not fit the reply's start; it stays free")

    @staticmethod
    def _forced_token(job: Job) -> int | None:
        """The next token of an insert being written, if the grammar takes it."""
        assert job.sampler is not None
        if not job.forced:
            return None
        token = job.forced.pop(0)
        if job.sampler.force(token):
            return token
        log.info("the request's grammar refuses the inserted text; it is dropped")
        job.forced.clear()
        return None

    def _watch_insert(self, job: Job, written: str) -> None:
        """Decide, once the reply has its `after_tokens`, whether the insert is written.

        Only what the decision reads is kept, not the whole reply: a budget of 32,000
        tokens (what Claude Code asks for) would otherwise have the reply copied and
        searched again on every token.
        """
        insert = job.request.insert
        assert insert is not None and job.insert_watch is not None and self._model
        tail = job.insert_watch + written
        if insert.unless in tail:
            job.insert_watch = None
            return
        if len(job.insert_head.lstrip()) < len(insert.requires):
            job.insert_head += written
        if job.generated < insert.after_tokens:
            job.insert_watch = tail[-max(len(insert.unless), len(insert.text)) :]
            return
        job.insert_watch = None
        if job.insert_head.lstrip().startswith(insert.requires):
            # The model may be partway through writing the text itself: only the rest
            # is inserted (the whole would not fit the grammar, nor read right).
            rest = insert.text[held_overlap(tail, insert.text) :]
            job.forced = self._model.tokenize(rest, add_special=False, parse_special=True)

    @staticmethod
    def _flush(job: Job) -> None:
        """The generation ends without a stop sequence: release held-back text."""
        assert job.stops is not None
        tail, _ = job.stops.feed(job.utf8.flush())
        tail += job.stops.flush()
        if tail:
            job.stream.push(_delta(job, tail))

    def _finish(
        self,
        slot: Slot,
        outcome: Literal["stop", "length"] | Exception,
        stop_sequence: str | None = None,
    ) -> None:
        job = slot.job
        assert job is not None
        if isinstance(outcome, Exception):
            job.stream.push(outcome)
        else:
            job.stream.push(
                Finished(
                    reason=outcome,
                    prompt_tokens=len(job.prompt),
                    completion_tokens=job.generated,
                    cached_tokens=job.cached_tokens,
                    stop_sequence=stop_sequence,
                    draft_tokens=job.speculation.drafted if job.speculation else 0,
                    accepted_draft_tokens=job.speculation.accepted if job.speculation else 0,
                )
            )
        self._release(slot)

    def _release_followers(self, job: Job) -> None:
        """Queue the other choices of job's request first in line (they keep its turn)."""
        if job.followers:
            with self._wake:
                self._waiting.extendleft(reversed(job.followers))
            job.followers = []

    def _release(self, slot: Slot) -> None:
        job = slot.job
        if job is not None:
            # A first choice that ended before its prompt was read (cancelled, failed) still
            # lets the others run: each reads the prompt itself then.
            self._release_followers(job)
        if job is not None and job.sampler is not None:
            job.sampler.close()
        # A prompt cut short by a cancel: the KV holds only what was evaluated.
        slot.pending = []
        slot.job = None
        slot.next_token = None
        slot.last_used = time.monotonic()
        if self._disk_cache.enabled and slot.tokens:
            self._disk_due.add(slot.seq_id)

    def _fail_batch(self, status: int) -> None:
        """llama_decode refused the batch: fail its requests, keep serving the next ones."""
        log.error("llama_decode failed with status %d", status)
        self._reset_all(f"llama.cpp failed to decode (status {status}).")

    def _reset_all(self, reason: str = "The engine failed on this request.") -> None:
        """Fail every running request and forget what the slots held: their KV is suspect."""
        assert self._model is not None
        for slot in self._slots:
            llama_cpp.llama_memory_seq_rm(self._model.memory, slot.seq_id, -1, -1)
            slot.tokens = []
            if slot.job is not None:
                self._finish(slot, GenerationFailed(reason))
        self._disk_due.clear()


def _choice(request: GenerationRequest, index: int) -> GenerationRequest:
    """Choice `index` of a request: with a seed, seed + index, else the request itself."""
    seed = request.sampling.seed
    if index == 0 or seed is None:
        return request
    sampling = dataclasses.replace(request.sampling, seed=(seed + index) % (1 << 32))
    return dataclasses.replace(request, sampling=sampling)


def _delta(job: Job, text: str) -> TextDelta:
    """A text delta carrying the log probabilities of the tokens that made its text."""
    if not job.logprobs:
        return TextDelta(text)
    delta = TextDelta(text, tuple(job.logprobs))
    job.logprobs.clear()
    return delta


def _seeded_draws(job: Job) -> bool:
    """Whether the job samples with a seed: such a reply must come out the same on every
    run, and a row decoded beside guessed rows can round differently from one decoded
    alone, which may move a draw to the next token (seen with a grammar-bound tool call
    that then ran to max_tokens). Greedy replies guess on: their tests hold them equal."""
    sampling = job.request.sampling
    return sampling.seed is not None and not sampling.greedy


def _by_share(candidate: tuple[int, Slot]) -> tuple[int, float]:
    shared, slot = candidate
    return shared, -slot.last_used


class EngineStats:
    """Counters for the profile of a decode step: where the time of the hot loop goes."""

    def __init__(self) -> None:
        self.steps = 0
        self.tokens = 0
        self.cached_tokens = 0
        self.suspended_batch_lines = 0
        self.build_seconds = 0.0
        self.decode_seconds = 0.0
        self.sample_seconds = 0.0
        self.draft_tokens = 0  # guessed tokens decoded (engine/speculation.py)
        self.accepted_draft_tokens = 0  # of those, the ones sampling confirmed

    def record(self, tokens: int, build: float, decode: float, sample: float) -> None:
        self.steps += 1
        self.tokens += tokens
        self.build_seconds += build
        self.decode_seconds += decode
        self.sample_seconds += sample

    def as_dict(self) -> dict[str, float]:
        return {
            "steps": self.steps,
            "batch_tokens": self.tokens,
            "cached_prompt_tokens": self.cached_tokens,
            "suspended_batch_lines": self.suspended_batch_lines,
            "build_seconds": round(self.build_seconds, 4),
            "decode_seconds": round(self.decode_seconds, 4),
            "sample_seconds": round(self.sample_seconds, 4),
            "draft_tokens": self.draft_tokens,
            "accepted_draft_tokens": self.accepted_draft_tokens,
        }
