"""Group commit: threads that arrive together share one write, and each gets its own answer."""

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
    while len(group._waiting) < len(items):  # the test waits until all of them are queued
        threading.Event().wait(0.01)
    writer.release.set()
    first.join(5)
    others.join(10)
    return answers


def leader_writing(group: GroupCommit, writer: "Writer") -> threading.Thread:
    """A thread named "leader" whose item "lead" is being written, held until released."""
    writer.release.clear()
    leader = threading.Thread(target=group.submit, args=("lead",), name="leader")
    leader.start()
    assert writer.holding.wait(5)
    return leader


def test_a_lone_item_is_written_at_once_in_a_batch_of_its_own():
    writer = Writer()

    assert GroupCommit(writer).submit(1) == "answer 1"
    assert writer.batches == [[1]]


def test_items_arriving_while_a_batch_is_written_share_the_next_batch():
    writer = Writer()
    items = list(range(1, 10))

    answers = arriving_while_a_batch_is_written(GroupCommit(writer), writer, items)

    assert writer.batches == [[0], items]
    assert answers == {item: f"answer {item}" for item in items}


def test_batches_are_capped_and_every_item_is_written_exactly_once():
    writer = Writer()
    items = list(range(1, 11))

    answers = arriving_while_a_batch_is_written(GroupCommit(writer, largest=4), writer, items)

    written = sorted(item for batch in writer.batches for item in batch)
    assert written == list(range(11))
    assert [len(batch) for batch in writer.batches] == [1, 4, 4, 2]
    assert answers == {item: f"answer {item}" for item in items}


def test_the_leader_leaves_once_its_own_batch_is_written():
    """A thread does not keep writing for others after its own item is done."""
    writer = Writer()
    group = GroupCommit(writer)
    leader = leader_writing(group, writer)
    follower = threading.Thread(target=group.submit, args=("next",), name="follower")
    follower.start()
    while len(group._waiting) < 1:
        threading.Event().wait(0.01)
    writer.release.set()
    leader.join(5)
    assert not leader.is_alive()
    follower.join(5)

    assert writer.batches == [["lead"], ["next"]]
    # The follower's item is written by the follower itself, not by the leader staying on.
    assert writer.writers == ["leader", "follower"]


def test_a_failed_batch_is_written_again_item_by_item_and_only_its_owner_sees_an_error():
    writer = Writer(fail_batches=True, fail_item=3)

    answers = arriving_while_a_batch_is_written(GroupCommit(writer), writer, [1, 2, 3, 4])

    assert writer.batches == [[0], [1, 2, 3, 4], [1], [2], [3], [4]]
    assert isinstance(answers.pop(3), ValueError)
    assert answers == {1: "answer 1", 2: "answer 2", 4: "answer 4"}


def test_a_batch_stopped_by_the_process_stopping_is_done_for_nobody():
    """Not an error of the items (no writing them again): every thread of the batch sees it."""
    writer = Writer(stop_batches=True)

    answers = arriving_while_a_batch_is_written(GroupCommit(writer), writer, [1, 2])

    assert writer.batches == [[0], [1, 2]]
    assert all(isinstance(answer, KeyboardInterrupt) for answer in answers.values())
    assert sorted(answers) == [1, 2]


def test_an_error_of_a_lone_item_reaches_its_thread():
    with pytest.raises(ValueError, match="item 7 failed"):
        GroupCommit(Writer(fail_item=7)).submit(7)


def test_a_write_that_answers_the_wrong_number_of_items_is_an_error_for_all():
    group = GroupCommit(lambda items: [])

    with pytest.raises(RuntimeError, match="0 answers for 1 items"):
        group.submit("x")


def test_after_an_error_the_next_item_leads_again():
    writer = Writer(fail_item=1)
    group = GroupCommit(writer)
    with pytest.raises(ValueError, match="item 1 failed"):
        group.submit(1)

    assert group.submit(2) == "answer 2"


# --- Handing in without waiting (`enqueue`, then `result`) --------------------------------------


def test_an_item_handed_in_without_leading_waits_for_its_owner_or_another_writer():
    writer = Writer()
    group = GroupCommit(writer)

    first, second = group.enqueue(1, lead=False), group.enqueue(2, lead=False)
    assert writer.batches == []

    assert group.result(first) == "answer 1"
    assert writer.batches == [[1, 2]]  # the owner wrote what else waited with its own
    assert group.result(second) == "answer 2"
    assert writer.batches == [[1, 2]]


def test_an_item_handed_in_while_nobody_writes_is_written_at_once():
    writer = Writer()
    group = GroupCommit(writer)

    ticket = group.enqueue(1)

    assert writer.batches == [[1]]
    assert group.result(ticket) == "answer 1"
    assert writer.batches == [[1]]


def test_a_thread_hands_in_during_a_batch_and_goes_on_and_the_next_leader_writes_its_item():
    writer = Writer()
    group = GroupCommit(writer)
    leader = leader_writing(group, writer)

    ticket = group.enqueue("handed in")  # returns at once: somebody is writing
    assert writer.batches == []
    follower = threading.Thread(target=group.submit, args=("waits",), name="follower")
    follower.start()
    while not any(slot.waited_for for slot in group._waiting):  # the follower waits
        threading.Event().wait(0.01)
    writer.release.set()
    leader.join(5)
    follower.join(5)

    # The leader handed over to the thread waiting, which wrote the item handed in with its own.
    assert writer.batches == [["lead"], ["handed in", "waits"]]
    assert writer.writers == ["leader", "follower"]
    assert ticket.finished
    assert group.result(ticket) == "answer handed in"


def test_items_whose_threads_do_not_wait_are_written_by_the_leader_staying_on():
    """Nobody waits to take over: the leader writes what threads gone on with their work
    handed in meanwhile, rather than leave it queued until someone comes by."""
    writer = Writer()
    group = GroupCommit(writer)
    leader = leader_writing(group, writer)
    ticket = group.enqueue("handed in")
    writer.release.set()
    leader.join(5)

    assert writer.batches == [["lead"], ["handed in"]]
    assert writer.writers == ["leader", "leader"]
    assert ticket.finished
    assert group.result(ticket) == "answer handed in"
    assert not group._leader_busy


def test_an_error_of_an_item_handed_in_reaches_its_owner_when_it_asks():
    group = GroupCommit(Writer(fail_item=7))

    ticket = group.enqueue(7)

    with pytest.raises(ValueError, match="item 7 failed"):
        group.result(ticket)
    assert group.submit(8) == "answer 8"


def test_a_process_stopping_while_items_are_written_one_by_one_leaves_none_taken_as_done():
    """The batch failed, and the process stops while its items are written again alone: the
    item not written yet must not read as written (with no answer and no error)."""

    def write_batch(items):
        if len(items) > 1:
            raise RuntimeError("the batch failed")
        raise KeyboardInterrupt

    group = GroupCommit(write_batch)
    first, second = group.enqueue("a", lead=False), group.enqueue("b", lead=False)

    with pytest.raises(KeyboardInterrupt):
        group.result(first)

    assert first.finished
    assert second.finished
    assert isinstance(first.error, KeyboardInterrupt)
    assert isinstance(second.error, KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        group.result(second)


def test_an_item_handed_in_before_a_fork_is_an_error_in_the_child_not_a_hang():
    group = GroupCommit(Writer())
    ticket = group.enqueue(1, lead=False)

    group._reset()  # what a forked child runs: the parent's queue is not the child's

    with pytest.raises(RuntimeError, match="handed in by the parent process"):
        group.result(ticket)
