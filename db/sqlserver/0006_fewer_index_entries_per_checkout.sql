-- Two index entries fewer per checkout (see db/postgres/0006).
-- 1. A lot's pending state is not stored: live lots say 'active' and ripen with no write.
DROP INDEX ix_point_lots_pending ON dbo.point_lots;
UPDATE dbo.point_lots SET status = 'active' WHERE status IN ('pending', 'available');
GO

-- 2. The ledger is read by member, never by id alone: its clustered key becomes (member_id, id) and the
--    member index goes. The 0001 key was declared inline, so its name comes from the catalog.
DECLARE @ddl nvarchar(max) = N'';
SELECT @ddl = N'ALTER TABLE dbo.ledger_entries DROP CONSTRAINT ' + QUOTENAME(kc.name) + N';'
FROM sys.key_constraints AS kc
WHERE kc.parent_object_id = OBJECT_ID(N'dbo.ledger_entries') AND kc.type = 'PK';
EXEC sys.sp_executesql @ddl;
GO
DROP INDEX ix_ledger_entries_member ON dbo.ledger_entries;
ALTER TABLE dbo.ledger_entries ADD CONSTRAINT pk_ledger_entries PRIMARY KEY CLUSTERED (member_id, id);
