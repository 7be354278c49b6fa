"""The database itself keeps the audit log append-only on PostgreSQL, TRUNCATE included."""

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction

from apps.audit.services import audit_record
from tests.conftest import require_postgresql

pytestmark = pytest.mark.django_db


@pytest.fixture
def postgresql() -> None:
    require_postgresql("the database guard exists on PostgreSQL only")


def run_rolled_back(*statements: str) -> None:
    """Run raw SQL in a savepoint; a refusal rolls it back, leaving the test's data as it was."""
    with transaction.atomic(), connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def test_truncate_of_the_audit_log_is_refused(postgresql):
    # The test database lets TRUNCATE through for its own cleanup (tests/conftest.py): arm the
    # production guard again, in a savepoint that the refusal rolls back.
    with pytest.raises(DatabaseError, match="append-only: TRUNCATE refused"):
        run_rolled_back(
            "ALTER TABLE audit_auditevent ENABLE TRIGGER audit_event_no_truncate",
            "TRUNCATE audit_auditevent",
        )


@pytest.mark.parametrize(
    "statement",
    ["UPDATE audit_auditevent SET message = 'rewritten'", "DELETE FROM audit_auditevent"],
)
def test_rows_cannot_be_changed_or_removed_behind_the_model(postgresql, statement):
    event = audit_record(action="test.event", message="as it happened")

    with pytest.raises(DatabaseError, match="append-only"):
        run_rolled_back(statement)

    event.refresh_from_db()
    assert event.message == "as it happened"


def test_a_row_written_without_its_chain_is_refused():
    # What a process of the release before the chains writes (it knows no `chain` column):
    # it must fail loudly rather than land on chain 0 out of turn (migration 0006).
    with pytest.raises(IntegrityError, match="chain"):
        run_rolled_back(
            "INSERT INTO audit_auditevent (occurred_at, actor_label, action, outcome, target,"
            " domain, request_code, ticket, message, details, previous_seal, seal)"
            " VALUES (CURRENT_TIMESTAMP, 'old-release', 'test.event', 'info', '', '', '', '',"
            " '', '{}', '', '')"
        )
