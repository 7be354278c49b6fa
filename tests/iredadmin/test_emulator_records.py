"""The emulator's store keeps its indexes right through every change."""

from apps.iredadmin.emulator_records import Domain, Mailbox, Store


def mailbox(address: str, quota: int) -> Mailbox:
    return Mailbox(username=address, domain=address.rpartition("@")[2], password="x", quota=quota)


def filled_store() -> Store:
    store = Store()
    store.add_domain(Domain(domain="a.example"))
    store.add_domain(Domain(domain="b.example"))
    store.add_mailbox(mailbox("one@a.example", 100))
    store.add_mailbox(mailbox("two@a.example", 250))
    store.add_mailbox(mailbox("three@b.example", 40))
    return store


def test_it_counts_mailboxes_and_quota_per_domain():
    store = filled_store()

    assert (store.count_in("a.example"), store.allocated_in("a.example")) == (2, 350)
    assert (store.count_in("b.example"), store.allocated_in("b.example")) == (1, 40)
    assert (store.count_in("c.example"), store.allocated_in("c.example")) == (0, 0)


def test_removing_a_mailbox_frees_its_quota_and_only_once():
    store = filled_store()

    assert store.remove_mailbox("two@a.example") is True
    assert store.remove_mailbox("two@a.example") is False

    assert (store.count_in("a.example"), store.allocated_in("a.example")) == (1, 100)
    assert sorted(store.mailboxes) == ["one@a.example", "three@b.example"]


def test_removing_a_domain_removes_exactly_its_mailboxes():
    store = filled_store()

    removed = store.remove_domain("a.example")

    assert sorted(removed) == ["one@a.example", "two@a.example"]
    assert list(store.mailboxes) == ["three@b.example"]
    assert (store.count_in("a.example"), store.allocated_in("a.example")) == (0, 0)
    assert store.allocated_in("b.example") == 40


def test_a_reloaded_state_rebuilds_the_indexes():
    store = filled_store()
    copy = Store()

    copy.load_state(store.to_state())

    assert copy.to_state() == store.to_state()
    assert (copy.count_in("a.example"), copy.allocated_in("a.example")) == (2, 350)
    assert [m.username for m in copy.mailboxes_of("b.example")] == ["three@b.example"]
