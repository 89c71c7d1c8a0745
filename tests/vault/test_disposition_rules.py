"""The rules of disposition: what blocks it, a proposal's shape, who approves, in what order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from vault.domain.disposition import (
    DispositionOutOfTurn,
    DispositionStatus,
    NotDisposable,
    blocked_by,
    check_approval,
    check_execution,
    parse_proposal,
)
from vault.domain.errors import Forbidden, InvalidRequest
from vault.domain.models import Actor, DocumentType, Role
from vault.domain.retention import DocumentRetention, RetentionMode

NOW = datetime(2031, 6, 1, 12, 0, tzinfo=UTC)


def retained_until(until: datetime) -> DocumentRetention:
    return DocumentRetention(
        document_id=uuid4(), document_type=DocumentType.KYC, policy_version=1,
        mode=RetentionMode.COMPLIANCE, retain_until=until, uploaded_at=until - timedelta(days=1),
    )


class TestBlockedBy:
    def test_retention_blocks_while_it_runs_and_not_from_its_end(self) -> None:
        assert blocked_by(retained_until(NOW + timedelta(seconds=1)), [], NOW) == ["retention"]
        assert blocked_by(retained_until(NOW), [], NOW) == []
        assert blocked_by(None, [], NOW) == []

    def test_each_hold_blocks_by_name(self) -> None:
        holds = [uuid4(), uuid4()]
        assert blocked_by(retained_until(NOW - timedelta(days=1)), holds, NOW) == [
            f"hold:{holds[0]}", f"hold:{holds[1]}"
        ]


class TestProposal:
    def test_ids_are_kept_once_in_order(self) -> None:
        a, b = uuid4(), uuid4()
        proposal = parse_proposal({"document_ids": [str(a), str(b), str(a)], "reason": " due "})
        assert proposal.document_ids == (a, b) and proposal.reason == "due"

    @pytest.mark.parametrize(("body", "field"), [
        ([], "body"),
        ({"reason": "x"}, "document_ids"),
        ({"document_ids": [], "reason": "x"}, "document_ids"),
        ({"document_ids": ["nope"], "reason": "x"}, "document_ids"),
        ({"document_ids": [str(uuid4())] * 1001, "reason": "x"}, "document_ids"),
        ({"document_ids": [str(uuid4())]}, "reason"),
        ({"document_ids": [str(uuid4())], "reason": "x", "force": True}, "force"),
    ])
    def test_a_bad_proposal_is_a_422_naming_the_field(self, body: object, field: str) -> None:
        with pytest.raises(InvalidRequest) as raised:
            parse_proposal(body)
        assert raised.value.errors[0]["loc"] == ["body", field]


class TestTurns:
    def test_a_second_person_approves(self) -> None:
        proposer, approver = uuid4(), Actor.user(uuid4(), Role.COMPLIANCE_OFFICER)
        check_approval(DispositionStatus.PROPOSED, proposer, approver)
        with pytest.raises(Forbidden, match="proposer"):
            check_approval(DispositionStatus.PROPOSED, proposer,
                           Actor.user(proposer, Role.ADMIN))

    @pytest.mark.parametrize("status", [DispositionStatus.APPROVED, DispositionStatus.EXECUTED])
    def test_only_a_proposed_one_is_approved(self, status: DispositionStatus) -> None:
        with pytest.raises(DispositionOutOfTurn):
            check_approval(status, uuid4(), Actor.user(uuid4(), Role.ADMIN))

    def test_only_an_approved_one_is_executed(self) -> None:
        check_execution(DispositionStatus.APPROVED)
        with pytest.raises(DispositionOutOfTurn, match="approved first"):
            check_execution(DispositionStatus.PROPOSED)
        with pytest.raises(DispositionOutOfTurn, match="already"):
            check_execution(DispositionStatus.EXECUTED)


def test_not_disposable_names_every_blocked_document() -> None:
    a, b = uuid4(), uuid4()
    error = NotDisposable({a: ["retention"], b: [f"hold:{uuid4()}"]})
    assert (error.status, error.error_code) == (409, "DOCUMENT_NOT_DISPOSABLE")
    assert str(a) in str(error) and "1 more" in str(error)
    assert set(error.extra()["blocked"]) == {str(a), str(b)}
