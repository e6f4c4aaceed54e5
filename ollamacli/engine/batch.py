"""Continuous batching: one generation loop per loaded model decodes every request together.

Invariants (read before changing anything here):

- **Ownership.** The loop thread is the only thread that calls into the `NativeContext` (decode,
  logits, KV-cache edits) and the only one that touches slots, jobs in flight and samplers once
  a job was submitted. Other threads talk to it through `submit` (an inbox queue) and read a
  job's events from its own outbox queue; they may cancel a job (a `CancelToken`) at any time.
- **Slots.** The context holds `n_seq` sequences; slot `i` owns sequence id `i`. A slot is *free*
  or serves one job. `slot.cached` lists the tokens whose keys and values are in the cache for
  its sequence, from position 0 on, with no gaps; a free slot keeps its tokens so that the next
  request with the same beginning (a continued chat) evaluates only what is new.
- **Admission.** Waiting jobs are admitted first come, first served while a slot is free. A job
  takes the free slot whose cached tokens share the longest prefix with its prompt. When another
  slot (free or busy) holds a longer prefix of the prompt, those cells are shared into the new
  sequence (`NativeContext.share`: a copy of the source's KV stream, cut to the prefix; nothing
  is evaluated again); when a slot that is still reading its prompt
  will hold a much longer common prefix, the new job waits for it instead of evaluating the same
  tokens side by side (agents send one long system prompt with every request). A slot about to
  lose a long cached prompt saves its sequence to the loop's `PromptCache` first, and a job whose
  beginning is saved there restores it into its slot; neither touches a sequence that a stream
  copy scheduled this step reads or writes. The last prompt token is always evaluated again: its
  logits choose the first answer token.
- **A step.** One `llama_decode` over one batch: first the next token of every generating job,
  then prompt chunks of jobs still reading their prompt, oldest first, up to `n_batch` tokens in
  all (a long prompt never stops the others for more than one batch). After the decode every job
  with logits in the batch samples with its own sampler chain at its own batch index and applies
  its stop strings, `num_predict`, context limit and cancellation.
- **Failures stay local.** An error while sampling ends that job only. A failed decode ends the
  jobs that had tokens in that batch (their slots are emptied) and the loop goes on.
- **Cancellation.** A cancelled job leaves at the start of the next step: while it reads its
  prompt it ends with `RequestCancelledError`, once it generates it ends normally (`stop`).
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from ollamacli.engine.base import (
    CancelToken,
    Completion,
    DoneReason,
    GenerationEvent,
    SamplingConfig,
)
from ollamacli.engine.llamalib import SamplerChain
from ollamacli.engine.logprobs import PendingLogprobs, token_logprob
from ollamacli.engine.native import NativeContext
from ollamacli.engine.promptcache import DEFAULT_BUDGET, PromptCache, SavedPrompt, common_prefix
from ollamacli.engine.streaming import TextStream
from ollamacli.errors import EngineError, RequestCancelledError

logger = logging.getLogger(__name__)

JobEvent = GenerationEvent | BaseException
"""What a job's outbox carries: text chunks, then a `Completion` or an exception."""

_SHARE_MIN = 16
"""Tokens: a shorter common prefix is evaluated again rather than shared (not worth it)."""
_WAIT_MIN = 64
"""Tokens: a new job waits for a prompt being read only when it would save this many."""
_SAVE_MIN = 256
"""Tokens: a sequence is saved to the prompt cache before it is overwritten, and a saved
prompt restored, only when that keeps at least this many from being read again."""


@dataclass(frozen=True, slots=True)
class LoopShape:
    """How many sequences a loop serves, each one's context, and tokens per decode."""

    n_seq: int
    n_ctx_seq: int
    n_batch: int


@dataclass(eq=False)
class Job:
    """One generation request, from `submit` to its `Completion`."""

    tokens: list[int]  # the prompt, already fitted to the context
    sampling: SamplingConfig
    sampler: SamplerChain  # owned by the loop once submitted; freed when the job ends
    cancel: CancelToken
    truncated: bool = False
    outbox: queue.SimpleQueue[JobEvent] = field(default_factory=queue.SimpleQueue)
    # Loop-thread state:
    state: Literal["queued", "waiting", "prompt", "generating", "done"] = "queued"
    slot: Slot | None = None
    fed: int = 0  # prompt tokens in the cache
    chunk: int = 0  # prompt tokens in the batch being decoded
    evaluated: int = 0  # prompt tokens this job evaluated itself (prompt_eval_count)
    next_token: int = -1  # the sampled token to evaluate in the next step
    generated: list[int] = field(default_factory=list)
    stream: TextStream | None = None
    logprobs: PendingLogprobs = field(default_factory=PendingLogprobs)
    waiting_for: Slot | None = None
    wait_until: int = 0
    started: int = 0  # perf_counter_ns when admitted
    finished_prompt_at: int = 0
    reason: DoneReason = "stop"
    stop_sequence: str | None = None


@dataclass(eq=False)
class Slot:
    """One sequence of the context."""

    seq_id: int
    cached: list[int] = field(default_factory=list)
    job: Job | None = None
    last_used: int = 0


class BatchLoop:
    """The generation loop of one loaded model (see the module's invariants)."""

    def __init__(
        self,
        context: NativeContext,
        shape: LoopShape,
        *,
        piece: Callable[[int, bool], bytes],
        cache_budget: int = DEFAULT_BUDGET,
    ) -> None:
        self._model = context.model
        self._context = context
        self._n_ctx_seq = shape.n_ctx_seq
        self._piece = piece
        self._batch = context.new_batch(max(shape.n_batch, shape.n_seq))
        self._slots = [Slot(seq_id) for seq_id in range(shape.n_seq)]
        self._inbox: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._waiting: deque[Job] = deque()
        self._clock = 0  # steps, for least-recently-used slots
        self._saved = PromptCache(cache_budget)
        # Sequences whose KV stream a copy scheduled this step reads or writes (llama.cpp copies
        # at the next decode): their states must not be saved or overwritten before it.
        self._copying: set[int] = set()
        self.widest = 0  # most sequences one decode has carried (tests and debugging)
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="ollamacli-batch", daemon=True)
        self._thread.start()
        _RUNNING.add(self)

    def submit(self, job: Job) -> None:
        """Hand a job to the loop (its events arrive in `job.outbox`)."""
        if self._closed:
            job.sampler.close()
            raise RequestCancelledError("the model was unloaded")
        self._inbox.put(job)

    def close(self) -> None:
        """Stop the loop; jobs still running end with `RequestCancelledError`."""
        if not self._closed:
            self._closed = True
            self._inbox.put(None)
            self._thread.join()
            self._batch.close()

    def cached_tokens(self) -> list[list[int]]:
        """Each slot's cached tokens (for tests and debugging; racy while jobs run)."""
        return [list(slot.cached) for slot in self._slots]

    # The loop ---------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while self._take_new(block=not self._busy()):
                self._drop_cancelled()
                self._admit()
                if any(slot.job is not None for slot in self._slots):
                    self._step()
        except BaseException as exc:  # a bug here must not leave clients waiting forever
            logger.exception("the batch loop failed")
            self._fail_all(EngineError(f"the generation loop failed: {exc}"))
            return
        self._fail_all(RequestCancelledError("the model was unloaded"))

    def _busy(self) -> bool:
        return bool(self._waiting) or any(slot.job is not None for slot in self._slots)

    def _take_new(self, *, block: bool) -> bool:
        """Move submitted jobs to the waiting line; False once the loop must stop."""
        try:
            item = self._inbox.get(block=block)
            while True:
                if item is None:
                    return False
                self._waiting.append(item)
                item = self._inbox.get_nowait()
        except queue.Empty:
            return True

    def _drop_cancelled(self) -> None:
        for job in [j for j in self._waiting if j.cancel.cancelled]:
            self._waiting.remove(job)
            self._end(job, RequestCancelledError())
        for slot in self._slots:
            running = slot.job
            if running is None or not running.cancel.cancelled:
                continue
            if running.state == "generating":
                self._complete(running)
            else:
                self._end(running, RequestCancelledError())

    def _admit(self) -> None:
        while self._waiting:
            free = [slot for slot in self._slots if slot.job is None]
            if not free:
                return
            job = self._waiting.popleft()
            prompt = job.tokens[:-1]
            slot = max(free, key=lambda s: (common_prefix(s.cached, prompt), -s.last_used))
            slot.job, job.slot = job, slot
            job.started = time.perf_counter_ns()
            self._place(job)

    def _place(self, job: Job) -> None:
        """Put the job's prompt into its slot: keep, share, restore or wait for the cached
        prefix."""
        slot = _slot_of(job)
        prompt = job.tokens[:-1]
        own = common_prefix(slot.cached, prompt)
        source, shared = slot, own
        for other in self._slots:
            if other is not slot:
                length = common_prefix(other.cached, prompt)
                if length > shared:
                    source, shared = other, length
        entry, restorable = self._saved.best(prompt)
        promised, promiser = 0, None
        for other in self._slots:
            other_job = other.job
            if other is not slot and other_job is not None and other_job.state == "prompt":
                length = common_prefix(other_job.tokens[:-1], prompt)
                if length > promised:
                    promised, promiser = length, other
        if promiser is not None and promised - max(shared, own, restorable) >= _WAIT_MIN:
            job.state, job.waiting_for, job.wait_until = "waiting", promiser, promised
            return
        self._keep(slot, own)
        if entry is not None and restorable - shared >= _SAVE_MIN and self._restore(slot, entry):
            self._forget(slot, restorable)
        elif source is not slot and shared - own >= _SHARE_MIN:
            self._forget(slot, 0)
            self._context.share(source.seq_id, slot.seq_id, shared)
            self._copying.update((source.seq_id, slot.seq_id))
            slot.cached = prompt[:shared]
        else:
            self._forget(slot, own)
        job.fed = len(slot.cached)
        job.state = "prompt"

    def _keep(self, slot: Slot, own: int) -> None:
        """Save the slot's sequence to the prompt cache when a long part of it is about to go
        (and no saved prompt holds it already)."""
        if self._saved.budget <= 0 or slot.seq_id in self._copying:
            return
        if len(slot.cached) - own < _SAVE_MIN:
            return
        if self._saved.covers(slot.cached, _SAVE_MIN):
            return
        state, size = self._context.save(slot.seq_id)
        self._saved.add(SavedPrompt(list(slot.cached), state, size))

    def _restore(self, slot: Slot, entry: SavedPrompt) -> bool:
        """Load a saved prompt into the slot's sequence; False when it cannot be."""
        if slot.seq_id in self._copying:
            return False
        self._forget(slot, 0)
        if not self._context.restore(slot.seq_id, entry.state, entry.size):
            self._context.forget(slot.seq_id, 0)
            return False
        self._saved.use(entry)
        slot.cached = list(entry.tokens)
        return True

    def _forget(self, slot: Slot, start: int) -> None:
        if start < len(slot.cached) and not self._context.forget(slot.seq_id, start):
            self._context.forget(slot.seq_id, 0)  # e.g. recurrent models: all or nothing
            start = 0
        del slot.cached[start:]

    def _release_waiters(self) -> None:
        """Place waiting jobs whose source has read the promised prefix (or gave up)."""
        for slot in self._slots:
            job = slot.job
            if job is None or job.state != "waiting" or job.waiting_for is None:
                continue
            source = job.waiting_for
            source_job = source.job
            read = len(source.cached) >= job.wait_until
            if read or source_job is None or source_job.state != "prompt":
                self._place(job)  # may wait again when another prompt promises more

    def _step(self) -> None:
        self._release_waiters()
        entries, members = self._fill_batch()
        if self._batch.size == 0:
            time.sleep(0.001)  # only jobs waiting for a prefix whose source just left
            return
        status = self._context.decode(self._batch)
        self._copying.clear()  # llama.cpp made the scheduled stream copies before the batch
        if status != 0:
            error = EngineError(f"llama.cpp could not evaluate the batch (status {status})")
            for job in members:
                slot = job.slot
                self._end(job, error)
                if slot is not None:
                    self._context.forget(slot.seq_id, 0)
                    slot.cached.clear()
            return
        self._clock += 1
        self.widest = max(self.widest, len(members))
        self._record_fed(members)
        for job, index in entries:
            try:
                self._sample(job, index)
            except Exception as exc:  # this job's grammar or sampler failed: it alone ends
                logger.debug("a sequence failed", exc_info=True)
                self._end(job, exc if isinstance(exc, EngineError) else EngineError(str(exc)))

    def _fill_batch(self) -> tuple[list[tuple[Job, int]], list[Job]]:
        """Next tokens of generating jobs, then prompt chunks; (jobs with logits and their
        batch index, every job in the batch).

        Room goes to generating jobs first, then to prompts oldest first; the entries are laid
        out in sequence order, as llama.cpp splits a batch over per-sequence streams into
        micro-batches of consecutive sequence ids."""
        batch = self._batch
        batch.clear()
        chunks = self._prompt_chunks(batch.capacity)
        entries: list[tuple[Job, int]] = []
        members: list[Job] = []
        for slot in self._slots:
            job = slot.job
            if job is not None and job.state == "generating":
                index = batch.add(job.next_token, len(slot.cached), slot.seq_id, logits=True)
                entries.append((job, index))
                members.append(job)
            elif job is not None and slot.seq_id in chunks:
                size = chunks[slot.seq_id]
                for position in range(job.fed, job.fed + size):
                    index = batch.add(job.tokens[position], position, slot.seq_id, logits=False)
                if job.fed + size == len(job.tokens):
                    batch.want_logits(index)
                    entries.append((job, index))
                job.chunk = size
                members.append(job)
        return entries, members

    def _prompt_chunks(self, capacity: int) -> dict[int, int]:
        """Prompt tokens each reading sequence gets this step (by seq_id): the room left by the
        generating jobs, oldest prompt first."""
        jobs = [slot.job for slot in self._slots if slot.job is not None]
        room = capacity - sum(job.state == "generating" for job in jobs)
        chunks: dict[int, int] = {}
        for job in sorted((j for j in jobs if j.state == "prompt"), key=lambda j: j.started):
            if room <= 0:
                break
            chunk = min(room, len(job.tokens) - job.fed)
            chunks[_slot_of(job).seq_id] = chunk
            room -= chunk
        return chunks

    def _record_fed(self, members: list[Job]) -> None:
        """After a decode: the slots' caches hold what the batch carried."""
        for job in members:
            slot = _slot_of(job)
            if job.state == "generating":
                slot.cached.append(job.next_token)
                continue
            slot.cached.extend(job.tokens[job.fed : job.fed + job.chunk])
            job.evaluated += job.chunk
            job.fed += job.chunk
            if job.fed == len(job.tokens):
                job.finished_prompt_at = time.perf_counter_ns()
                job.state = "generating"
                job.stream = TextStream(job.sampling.stop)
                job.sampler.accept_history(job.tokens)

    def _sample(self, job: Job, index: int) -> None:
        slot, stream, sampling = _slot_of(job), job.stream, job.sampling
        assert stream is not None
        logits = self._context.logits(index).copy() if sampling.logprobs else None
        token = job.sampler.sample(self._context.handle, index)
        if self._model.is_eog(token):
            self._complete(job)
            return
        if logits is not None:
            job.logprobs.add(token_logprob(logits, token, sampling.top_logprobs, self._shown))
        job.generated.append(token)
        text = stream.push(self._piece(token, sampling.special_tokens))
        if text:
            job.outbox.put(job.logprobs.chunk(text))
        if stream.stopped:
            job.stop_sequence = stream.matched
            self._complete(job)
            return
        limit = sampling.num_predict
        if len(job.generated) == limit or len(slot.cached) >= self._n_ctx_seq:
            job.reason = "length"  # the last token is not evaluated: nothing follows it
            self._complete(job)
            return
        job.next_token = token

    def _shown(self, token: int) -> bytes:
        """A token's bytes as logprobs show it: control tokens by name (`<|im_end|>`)."""
        return self._piece(token, True)

    def _complete(self, job: Job) -> None:
        """End a generating job normally, with its statistics."""
        stream = job.stream
        last = job.logprobs.finish(stream.finish() if stream is not None else "")
        if last is not None:
            job.outbox.put(last)
        now = time.perf_counter_ns()
        prompt_end = job.finished_prompt_at or now
        job.outbox.put(
            Completion(
                done_reason=job.reason,
                prompt_eval_count=job.evaluated,
                prompt_eval_duration=prompt_end - job.started,
                eval_count=len(job.generated),
                eval_duration=now - prompt_end,
                context=(*job.tokens, *job.generated),
                truncated=job.truncated,
                stop_sequence=job.stop_sequence,
            )
        )
        self._finish(job)

    def _end(self, job: Job, error: BaseException) -> None:
        """End a job with an error."""
        job.outbox.put(error)
        self._finish(job)

    def _finish(self, job: Job) -> None:
        job.state = "done"
        job.sampler.close()
        slot = job.slot
        if slot is not None:
            slot.job = None
            slot.last_used = self._clock
            job.slot = None

    def _fail_all(self, error: BaseException) -> None:
        for slot in self._slots:
            if slot.job is not None:
                self._end(slot.job, error)
        while self._waiting:
            self._end(self._waiting.popleft(), error)
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                self._end(item, error)


_RUNNING: weakref.WeakSet[BatchLoop] = weakref.WeakSet()


@atexit.register
def _stop_running_loops() -> None:
    """Stop every loop before the interpreter goes: a loop thread still inside llama.cpp
    while the process tears its libraries down crashed (`run ... | head -c 1` died of SIGSEGV
    when the pipe closed mid-answer)."""
    for loop in list(_RUNNING):
        loop.close()


def _slot_of(job: Job) -> Slot:
    slot = job.slot
    if slot is None:
        raise EngineError("internal error: a running job has no slot")
    return slot
