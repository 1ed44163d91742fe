-- Idempotency-Keys are forgotten after Idempotency:RetentionDays (the service's retention job). The job
-- finds the oldest records by creation time; without this index every run would read the whole table.
-- Records arrive in time order, so each keyed write adds its entry to the index's last page, one that is
-- already in memory, not to a page picked at random. On a large table the build blocks keyed writes
-- while it runs: apply it in a quiet hour.
CREATE INDEX ix_idempotency_keys_created ON idempotency_keys (created_at);
