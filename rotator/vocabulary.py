"""Closed vocabularies: audit actions and outcomes, and the names of log events.

Every audit event and every log event rotator writes is named here, never by a string typed at the
call site, so the trail and the logs can be queried by a fixed set of names.
"""

from __future__ import annotations

from enum import StrEnum


class AuditAction(StrEnum):
    """What an audit event records."""

    ROTATION_STARTED = "rotation.started"
    ROTATION_FAILED = "rotation.failed"
    ROTATION_COMPENSATED = "rotation.compensated"
    KEY_VERIFIED = "key.verified"
    KEY_DELIVERED = "key.delivered"
    KEY_ACTIVATED = "key.activated"
    KEY_UPDATED = "key.updated"
    KEY_UPDATE_FAILED = "key.update_failed"
    KEY_INVALIDATED = "key.invalidated"
    KEY_DRIFTED = "key.drifted"
    SOURCE_REMOVED = "source.removed"
    # purge
    KEYS_PURGED = "keys.purged"
    PURGE_TOMBSTONES_DELETED = "purge.tombstones_deleted"
    # the key inventory (the track job)
    INVENTORY_BASELINED = "inventory.baselined"
    INVENTORY_SCOPE_CHANGED = "inventory.scope_changed"
    INVENTORY_KEY_APPEARED = "inventory.key_appeared"
    INVENTORY_KEY_EXPIRING = "inventory.key_expiring"
    INVENTORY_KEY_EXPIRED = "inventory.key_expired"
    INVENTORY_KEY_INVALIDATED = "inventory.key_invalidated"
    INVENTORY_KEY_DELETED = "inventory.key_deleted"
    INVENTORY_FINDING_RAISED = "inventory.finding_raised"
    INVENTORY_FINDING_CLEARED = "inventory.finding_cleared"
    AUDIT_RETENTION_APPLIED = "audit.retention_applied"
    LEADER_ACQUIRED = "leader.acquired"
    LEADER_LOST = "leader.lost"
    LEADER_RELEASED = "leader.released"


class AuditOutcome(StrEnum):
    """How the recorded change ended."""

    SUCCESS = "success"
    FAILURE = "failure"
    WARNING = "warning"


class LogEvent(StrEnum):
    """The names of rotator's log events (snake_case; the details travel as fields)."""

    ACTION_SUCCEEDED = "action_succeeded"
    ACTION_FAILED = "action_failed"
    ACTION_FAILED_UNEXPECTEDLY = "action_failed_unexpectedly"
    ROTATION_FAILED = "rotation_failed"
    ROTATION_FAILURE_NOT_RECORDED = "rotation_failure_not_recorded"
    ROTATION_UNEXPECTED_ERROR = "rotation_unexpected_error"
    KEY_CREATE_RETRIED = "key_create_retried"
    KEY_CREATE_UNEXPECTED_ERROR = "key_create_unexpected_error"
    LOST_KEY_INVALIDATED = "lost_key_invalidated"
    COMPENSATION_FAILED = "compensation_failed"
    DELIVERY_RETRIED = "delivery_retried"
    KEY_DRIFTED = "key_drifted"
    KEY_EXPIRING_WHILE_FAILING = "key_expiring_while_failing"
    ELASTICSEARCH_CALL_RETRIED = "elasticsearch_call_retried"
    RECOVERY_FAILED = "recovery_failed"
    RECOVERY_UNEXPECTED_ERROR = "recovery_unexpected_error"
    STATUS_WITHOUT_ELASTICSEARCH = "status_without_elasticsearch"
    JOB_STOPPED_LEASE_LOST = "job_stopped_lease_lost"
    JOB_FINISHED = "job_finished"
    NOTICE = "notice"  # a notice for people, as the log notifier writes it
    AUDIT_EVENT = "audit_event"  # every committed audit event, mirrored (event.kind: audit)
    # purge
    PURGE_BATCH_DONE = "purge_batch_done"
    PURGE_KEY_FAILED = "purge_key_failed"
    PURGE_STOPPED = "purge_stopped"
    PURGE_TOMBSTONES_DELETED = "purge_tombstones_deleted"
    # the key inventory (the track job)
    INVENTORY_SCOPE = "inventory_scope"
    INVENTORY_SWEEP_FAILED = "inventory_sweep_failed"
    INVENTORY_DRIFT_HANDED_OVER = "inventory_drift_handed_over"
