"""Group commit: the threads of a process hand their items to one writer thread, which writes
what arrives together in one batch and gives each item its own answer."""

import threading
from collections.abc import Sequence

import pytest

from apps.provisioning.group_commit import GroupCommit


class Writer:
    """A write_batch that records its batches; it can hold a batch until released."""

    def __init__(
        self, *, fail_batches: bool = False, fail_item: object = None, stop_batches: bool = False
    ) -> None:
        self.batches: list[list] = []
        self.writers: list[str] = []  # the name of the thread that wrote each batch
        self.fail_batches = fail_batches
        self.stop_batches = stop_batches
        self.fail_item = fail_item
        self.holding = threading.Event()  # set once a batch is being written
        self.release = threading.Event()
        self.release.set()

    def __call__(self, items: Sequence) -> list:
        self.holding.set()
        self.release.wait(10)
        self.batches.append(list(items))
        self.writers.append(threading.current_thread().name)
        if self.fail_batches and len(items) > 1:
            raise RuntimeError("the batch failed")
        if self.stop_batches and len(items) > 1:
            raise KeyboardInterrupt
        if self.fail_item in items:
            raise ValueError(f"item {self.fail_item} failed")
        return [f"answer {item}" for item in items]


def until(condition) -> None:
    """Wait (at most 5 s) until `condition()` holds."""
    for _ in range(500):
        if condition():
            return
        threading.Event().wait(0.01)
    raise AssertionError("timed out")


def raised(group: GroupCommit, ticket) -> BaseException | None:
    """What asking for the ticket's answer raised, or None."""
    try:
        group.result(ticket)
    except BaseException as error:
        return error
    return None


def submit_in_threads(group: GroupCommit, items: list) -> dict:
    """Each item submitted from its own thread: item -> its answer, or the error it raised."""
    answers: dict = {}

    def run(item: object) -> None:
        try:
            answers[item] = group.submit(item)
        except BaseException as error:
            answers[item] = error

    threads = [threading.Thread(target=run, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return answers


def arriving_while_a_batch_is_written(group: GroupCommit, writer: "Writer", items: list) -> dict:
    """Item 0 is being written while `items` arrive, each from its own thread; their answers."""
    writer.release.clear()
    first = threading.Thread(target=group.submit, args=(0,))
    first.start()
    assert writer.holding.wait(5)
    answers: dict = {}
    others = threading.Thread(target=lambda: answers.update(submit_in_threads(group, items)))
    others.start()
    until(lambda: len(group._waiting) == len(items))  # all of them queued behind item 0
    writer.release.set()
    first.join(5)
    others.join(10)
    return answers


def test_a_lone_item_is_written_at_once_in_a_batch_of_its_own():
    writer = Writer()

    assert GroupCommit(writer).submit(1) == "answer 1"
    assert writer.batches == [[1]]
    assert writer.writers == ["maildesk-writer"]


def test_items_arriving_while_a_batch_is_written_share_the_next_batch():
    writer = Writer()
    items = list(range(1, 10))

    answers = arriving_while_a_batch_is_written(GroupCommit(writer), writer, items)

    assert writer.batches == [[0], items]
    assert answers == {item: f"answer {item}" for item in items}
    assert set(writer.writers) == {"maildesk-writer"}


def test_batches_are_capped_and_every_item_is_written_exactly_once():
    writer = Writer()
    items = list(range(1, 11))

    answers = arriving_while_a_batch_is_written(GroupCommit(writer, largest=4), writer, items)

    written = sorted(item for batch in writer.batches for item in batch)
    assert written == list(range(11))
    assert [len(batch) for batch in writer.batches] == [1, 4, 4, 2]
    assert answers == {item: f"answer {item}" for item in items}


def test_items_handed_in_together_are_written_in_one_batch():
    writer = Writer()
    group = GroupCommit(writer)

    tickets = group.enqueue_all(["a", "b", "c"])

    assert [group.result(ticket) for ticket in tickets] == ["answer a", "answer b", "answer c"]
    assert writer.batches == [["a", "b", "c"]]


def test_a_thread_hands_in_and_goes_on_while_the_writer_writes():
    """Handing in never waits for a write: not for another thread's batch, not for its own."""
    writer = Writer()
    writer.release.clear()
    group = GroupCommit(writer)

    first = group.enqueue("first")  # the writer takes it and is held writing it
    assert writer.holding.wait(5)
    second = group.enqueue("second")  # returns at once, queued behind the batch held
    assert not first.finished.is_set()
    assert not second.finished.is_set()

    writer.release.set()
    assert group.result(second) == "answer second"
    assert group.result(first) == "answer first"
    assert writer.batches == [["first"], ["second"]]
    assert writer.writers == ["maildesk-writer", "maildesk-writer"]


def test_a_failed_batch_is_written_again_item_by_item_and_only_its_owner_sees_an_error():
    writer = Writer(fail_batches=True, fail_item=3)

    answers = arriving_while_a_batch_is_written(GroupCommit(writer), writer, [1, 2, 3, 4])

    assert writer.batches == [[0], [1, 2, 3, 4], [1], [2], [3], [4]]
    assert isinstance(answers.pop(3), ValueError)
    assert answers == {1: "answer 1", 2: "answer 2", 4: "answer 4"}


def test_a_batch_stopped_by_the_process_stopping_is_done_for_nobody_and_the_writer_goes_on():
    """Not an error of the items (no writing them again): every thread of the batch sees it;
    and the writer thread is still there for the items after it."""
    writer = Writer(stop_batches=True)
    group = GroupCommit(writer)

    answers = arriving_while_a_batch_is_written(group, writer, [1, 2])

    assert writer.batches == [[0], [1, 2]]
    assert all(isinstance(answer, KeyboardInterrupt) for answer in answers.values())
    assert sorted(answers) == [1, 2]
    assert group.submit(3) == "answer 3"


def test_an_error_of_a_lone_item_reaches_its_thread_and_the_next_item_is_written():
    group = GroupCommit(Writer(fail_item=7))

    with pytest.raises(ValueError, match="item 7 failed"):
        group.submit(7)
    assert group.submit(8) == "answer 8"


def test_a_write_that_answers_the_wrong_number_of_items_is_an_error_for_all():
    group = GroupCommit(lambda items: [])

    with pytest.raises(RuntimeError, match="0 answers for 1 items"):
        group.submit("x")


def test_a_process_stopping_while_items_are_written_one_by_one_leaves_none_taken_as_done():
    """The batch failed, and the process stops while its items are written again alone: the
    item not written yet must not read as written (with no answer and no error)."""

    def write_batch(items):
        if len(items) > 1:
            raise RuntimeError("the batch failed")
        raise KeyboardInterrupt

    group = GroupCommit(write_batch)
    first, second = group.enqueue_all(["a", "b"])

    with pytest.raises(KeyboardInterrupt):
        group.result(first)
    with pytest.raises(KeyboardInterrupt):
        group.result(second)


def test_the_writer_prepares_before_each_batch_and_a_failed_preparation_fails_only_its_batch():
    writer = Writer()
    prepared: list[str] = []

    def before_batch() -> None:
        prepared.append(threading.current_thread().name)
        if len(prepared) == 1:
            raise ConnectionError("the database went away")

    group = GroupCommit(writer, before_batch=before_batch)

    with pytest.raises(ConnectionError):
        group.submit(1)
    assert group.submit(2) == "answer 2"
    assert prepared == ["maildesk-writer", "maildesk-writer"]
    assert writer.batches == [[2]]


def test_a_caller_in_a_transaction_of_its_own_writes_in_its_own_thread():
    writer = Writer()
    group = GroupCommit(writer, write_here=lambda: True)

    assert group.submit(1) == "answer 1"
    ticket = group.enqueue(2)
    assert ticket.finished.is_set()  # written before enqueue returned
    assert group.result(ticket) == "answer 2"
    assert writer.writers == [threading.current_thread().name] * 2
    assert group._writer is None  # no writer thread was needed


def test_an_item_handed_in_before_a_fork_is_an_error_in_the_child_not_a_hang():
    writer = Writer()
    writer.release.clear()
    group = GroupCommit(writer)
    group.enqueue(0)
    assert writer.holding.wait(5)
    ticket = group.enqueue(1)

    group._reset()  # what a forked child runs: the parent's queue and writer are not the child's

    with pytest.raises(RuntimeError, match="handed in by the parent process"):
        group.result(ticket)
    writer.release.set()


def test_items_handed_in_together_are_never_parted_by_the_cap():
    writer = Writer()
    group = GroupCommit(writer, largest=4)
    writer.release.clear()
    group.enqueue("first")
    assert writer.holding.wait(5)
    singles = [group.enqueue(n) for n in (1, 2, 3)]
    pair = group.enqueue_all(["a", "b"])  # the cap of 4 falls between them
    writer.release.set()

    for ticket in [*singles, *pair]:
        group.result(ticket)
    assert writer.batches == [["first"], [1, 2, 3, "a", "b"]]


def test_each_thread_of_a_failed_batch_raises_its_own_exception():
    """One exception object raised by several threads at once would gather their tracebacks."""
    writer = Writer(stop_batches=True)

    answers = arriving_while_a_batch_is_written(GroupCommit(writer), writer, [1, 2])

    assert answers[1] is not answers[2]
    assert answers[1].__cause__ is answers[2].__cause__
    assert isinstance(answers[1].__cause__, KeyboardInterrupt)


def test_a_write_that_answers_nothing_fails_its_batch_and_the_writer_goes_on():
    answers = iter([None, ["fine"]])
    group = GroupCommit(lambda items: next(answers))

    with pytest.raises(RuntimeError, match="None for 1 items"):
        group.submit("x")
    assert group.submit("y") == "fine"


def test_a_writer_thread_that_cannot_be_started_fails_the_items_not_the_caller(monkeypatch):
    group = GroupCommit(Writer())
    start = threading.Thread.start

    def refuse(thread):
        monkeypatch.setattr(threading.Thread, "start", start)  # once
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    ticket = group.enqueue(1)

    with pytest.raises(RuntimeError, match="can't start new thread"):
        group.result(ticket)
    assert group.submit(2) == "answer 2"  # the next item starts a writer


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_writer_thread_that_died_is_an_error_for_its_items_not_a_hang():
    group = GroupCommit(Writer())

    def die(batch):
        raise SystemExit  # ends the writer thread, as no exception of a batch may

    group._write = die
    lost = group.enqueue(1)  # taken into a batch by the writer that dies
    until(lambda: not group._writer.is_alive())
    del group._write  # the class's own again
    assert group.submit(2) == "answer 2"  # the next item starts a new writer

    answer: dict = {}
    asking = threading.Thread(target=lambda: answer.setdefault("error", raised(group, lost)))
    asking.start()
    asking.join(10)
    assert not asking.is_alive(), "result() hangs"
    assert "writer thread stopped" in str(answer["error"])
