-- Idempotency-Keys are forgotten after Idempotency:RetentionDays; the retention job finds the oldest
-- records by creation time (see db/postgres/0008).
CREATE INDEX ix_idempotency_keys_created ON idempotency_keys (created_at);
