-- A lot's pending state is not stored (see db/postgres/0006): live lots say 'active' and ripen with no write.
-- SQLite keeps the ledger keyed by its rowid: (member_id, id) as the key would make the table a second B-tree
-- of its own (WITHOUT ROWID) for no entry saved, as its member index is the only one it has besides the rowid.
DROP INDEX ix_point_lots_pending;
UPDATE point_lots SET status = 'active' WHERE status IN ('pending', 'available');
