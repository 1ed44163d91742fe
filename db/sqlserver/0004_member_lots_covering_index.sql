-- A member's balance is summed from the member's live lots at every scan, quote and purchase: the
-- index those reads use carries the two columns they sum, so they never look up the lot rows
-- (see db/postgres/0004 for the measurements). Same key, same name.
DROP INDEX ix_point_lots_member_expiry ON dbo.point_lots;
CREATE INDEX ix_point_lots_member_expiry ON dbo.point_lots (member_id, expires_at) INCLUDE (available_at, remaining_points);
