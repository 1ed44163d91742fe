-- A member's balance is summed from the member's live lots at every scan, quote and purchase. The
-- index those reads use now carries the two columns they sum, so PostgreSQL answers them from the
-- index alone (an index-only scan) and visits no lot's page, as long as the page is marked all-visible
-- (vacuum does that; a lot written or spent since is read from its page as before). Measured with
-- pgbench on the bench's seeded program: the card snapshot a quote runs 9 000-12 000 -> 16 000-18 000
-- per second, the live-lot totals alone 16 000-21 000 -> 30 000-36 000. Same key, same name: every
-- query that used the index still does. The rebuild blocks writes to point_lots while it runs: on a
-- large program, run the migration in a quiet hour.
DROP INDEX ix_point_lots_member_expiry;
CREATE INDEX ix_point_lots_member_expiry ON point_lots (member_id, expires_at) INCLUDE (available_at, remaining_points);
