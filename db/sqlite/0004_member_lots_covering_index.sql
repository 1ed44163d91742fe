-- A member's balance is summed from the member's live lots at every scan, quote and purchase: the
-- index those reads use carries the two columns they sum, so SQLite answers them from the index alone
-- (see db/postgres/0004 for the measurements). SQLite has no INCLUDE: the two columns join the key,
-- after the member and the expiry, so the index still orders each member's lots by expiry.
DROP INDEX ix_point_lots_member_expiry;
CREATE INDEX ix_point_lots_member_expiry ON point_lots (member_id, expires_at, available_at, remaining_points);
