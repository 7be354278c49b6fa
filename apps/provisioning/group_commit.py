"""Group commit: the threads of a worker process share one transaction for what they write.

Each worker thread claims its request before the call and records the result after it, and
each of those is a transaction of about five round trips to PostgreSQL plus the Python that
builds them. Most of that cost is per transaction, not per row, so when several threads of a
process arrive at once one of them (the leader) writes for all of them in one transaction and
hands each its own answer; the others wait meanwhile. A thread that arrives alone leads a batch
of one, so a lone request waits for nobody; under load, batches grow by themselves to the
number of threads that arrived while the previous batch was being written.

Leadership passes on after each batch to the first thread still waiting, so no thread keeps
writing for others while its own task is done. A batch that fails is written again one item
at a time, so that one item's trouble (or a batch's) reaches only the thread it belongs to,
exactly as if the threads had written alone.

A thread may also hand in an item without waiting for it (`enqueue`) and ask for its answer
later (`result`): a worker thread running several requests one after the other claims the
next while it calls the API for the current one. Such an item is written by the next batch:
at once if nobody is writing, else by whichever thread leads next, at the latest by its own
thread when it asks for the answer.
"""

import os
import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Answer = TypeVar("Answer")


class _Slot(Generic[Item, Answer]):
    """One thread's item, and then its answer (or the exception writing it raised)."""

    __slots__ = ("answer", "error", "finished", "item", "to_lead", "waited_for", "wake")

    def __init__(self, item: Item) -> None:
        self.item = item
        self.finished = False
        self.answer: Answer | None = None
        self.error: BaseException | None = None
        # While its thread waits for it: woken when finished, or when that thread is to lead.
        self.waited_for = False
        self.to_lead = False
        self.wake = threading.Event()


# What `enqueue` hands back: the ticket to ask `result` for the item's answer with.
Ticket = _Slot


class GroupCommit(Generic[Item, Answer]):
    """`submit(item)` returns `write_batch([..., item, ...])`'s answer for that item.

    `write_batch(items)` must return one answer per item, in order, and either write all of
    them or (by raising) none: a transaction.
    """

    def __init__(
        self, write_batch: Callable[[Sequence[Item]], list[Answer]], *, largest: int = 32
    ) -> None:
        self._write_batch = write_batch
        self._largest = largest
        self._reset()
        # A forked child must not inherit a lock held, or slots, of the parent's threads.
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._waiting: list[_Slot[Item, Answer]] = []
        self._leader_busy = False

    def submit(self, item: Item) -> Answer:
        return self.result(self.enqueue(item, lead=False))

    def enqueue(self, item: Item, *, lead: bool = True) -> Ticket:
        """Hand in `item` to be written; with `lead`, this thread writes it at once (with
        whatever else waits) if nobody is writing. Its answer: `result(ticket)`."""
        slot: _Slot[Item, Answer] = _Slot(item)
        with self._lock:
            self._waiting.append(slot)
            leads = lead and not self._leader_busy
            self._leader_busy = self._leader_busy or leads
        if leads:
            self._lead()
        return slot

    def result(self, slot: Ticket) -> Answer:
        """The answer for the item of this ticket, once written (this thread writes it, and
        what else waits, if nobody is writing); raises what writing it raised."""
        while True:
            with self._lock:
                if slot.finished:
                    break
                leads = slot.to_lead or not self._leader_busy
                slot.to_lead = False
                slot.waited_for = not leads
                self._leader_busy = True
                slot.wake.clear()
            if leads:
                self._lead()
            else:
                slot.wake.wait()
        if slot.error is not None:
            raise slot.error
        return slot.answer  # type: ignore[return-value]

    def _lead(self) -> None:
        with self._lock:
            batch = self._waiting[: self._largest]
            del self._waiting[: self._largest]
        try:
            self._write(batch)
        finally:
            with self._lock:
                for slot in batch:
                    slot.finished = True
                    slot.wake.set()
                # Leadership passes to the first thread waiting; items whose threads are not
                # waiting yet are left to the next thread that hands one in or waits.
                waiter = next((slot for slot in self._waiting if slot.waited_for), None)
                if waiter is None:
                    self._leader_busy = False
                else:
                    waiter.waited_for = False
                    waiter.to_lead = True
                    waiter.wake.set()

    def _write(self, batch: list[_Slot[Item, Answer]]) -> None:
        try:
            answers = self._write_batch([slot.item for slot in batch])
        except Exception as error:
            if len(batch) == 1:
                batch[0].error = error
                return
            # The batch wrote nothing: each item again on its own, each with its own outcome.
            for slot in batch:
                try:
                    (slot.answer,) = self._write_batch([slot.item])
                except Exception as item_error:
                    slot.error = item_error
            return
        except BaseException as error:  # the process is stopping: nobody may take it as done
            for slot in batch:
                slot.error = error
            raise
        if len(answers) != len(batch):  # a bug: written, but whose answer is which is unknown
            for slot in batch:
                slot.error = RuntimeError(f"{len(answers)} answers for {len(batch)} items")
            return
        for slot, answer in zip(batch, answers, strict=True):
            slot.answer = answer
