"""Group commit: the threads of a worker process share one transaction for what they write.

Each worker thread claims its request before the call and records the result after it, and
each of those is a transaction of about five round trips to PostgreSQL plus the Python that
builds them. Most of that cost is per transaction, not per row, so when several threads of a
process arrive at once one of them (the leader) writes for all of them in one transaction and
hands each its own answer; the others wait meanwhile. A thread that arrives alone leads a batch
of one, so a lone request waits for nobody; under load, batches grow by themselves to the
number of threads that arrived while the previous batch was being written.

Leadership passes on after each batch to the first thread still waiting, so no thread keeps
writing for others that wait and could write for themselves. A batch that fails is written
again one item at a time, so that one item's trouble (or a batch's) reaches only the thread it
belongs to, exactly as if the threads had written alone.

A thread may also hand in an item without waiting for it (`enqueue`) and ask for its answer
later (`result`): a worker thread running several requests one after the other claims the
next while it calls the API for the current one. Such an item is written by the next batch:
at once by the thread handing it in if nobody is writing, else by the leader, which writes
batch after batch while items are queued and no thread waits to take over. So an item is
never left queued for want of a writer (an outcome left there would outlast its lease).
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
                # Nobody writing, so no batch holds it: gone only if handed in before a fork.
                if not (slot.to_lead or self._leader_busy or slot in self._waiting):
                    raise RuntimeError(
                        "an item handed in by the parent process is not written here"
                    )
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
        """Write batches until a waiting thread takes over or nothing is left queued."""
        while True:
            with self._lock:
                batch = self._waiting[: self._largest]
                del self._waiting[: self._largest]
            try:
                self._write(batch)
            except BaseException:
                self._written(batch, write_on=False)
                raise
            if not self._written(batch, write_on=True):
                return

    def _written(self, batch: list[_Slot[Item, Answer]], *, write_on: bool) -> bool:
        """Wake the threads of a written batch and pass leadership on: to the first thread
        waiting, else (`write_on`) to this one while items are queued. True: write again."""
        with self._lock:
            for slot in batch:
                slot.finished = True
                slot.wake.set()
            waiter = next((slot for slot in self._waiting if slot.waited_for), None)
            if waiter is not None:
                waiter.waited_for = False
                waiter.to_lead = True
                waiter.wake.set()
                return False
            if write_on and self._waiting:  # handed in by threads gone on with their work
                return True
            self._leader_busy = False
            return False

    def _write(self, batch: list[_Slot[Item, Answer]]) -> None:
        try:
            answers = self._write_batch([slot.item for slot in batch])
        except Exception as error:
            if len(batch) == 1:
                batch[0].error = error
                return
            self._write_one_by_one(batch)
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

    def _write_one_by_one(self, batch: list[_Slot[Item, Answer]]) -> None:
        """The batch wrote nothing: each item again on its own, each with its own outcome."""
        for index, slot in enumerate(batch):
            try:
                (slot.answer,) = self._write_batch([slot.item])
            except Exception as error:
                slot.error = error
            except BaseException as error:  # stopping: those not written are done for nobody
                for unwritten in batch[index:]:
                    unwritten.error = error
                raise
