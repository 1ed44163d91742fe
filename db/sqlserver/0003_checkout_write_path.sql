-- The checkout write path (see db/postgres/0003 for the measurements).
-- 1. The tables every checkout writes carry no foreign keys: each key is an extra lookup and a
--    shared lock on the parent row per inserted row. The service writes these rows only inside the
--    transaction that checked their parents, nothing is deleted, and the test suite checks that no
--    row points at nothing. The 0001 keys were declared inline, so their names come from the catalog.
DECLARE @drop nvarchar(max) = N'';
SELECT @drop = @drop + N'ALTER TABLE ' + QUOTENAME(OBJECT_SCHEMA_NAME(fk.parent_object_id)) + N'.'
       + QUOTENAME(OBJECT_NAME(fk.parent_object_id)) + N' DROP CONSTRAINT ' + QUOTENAME(fk.name) + N';'
FROM sys.foreign_keys AS fk
WHERE OBJECT_NAME(fk.parent_object_id) IN
      (N'purchases', N'purchase_lines', N'point_lots', N'ledger_entries', N'redemption_allocations', N'refunds', N'refund_lines');
EXEC sys.sp_executesql @drop;
GO

-- 2. A purchase takes its id and its earn lot's id in its first round trip (NEXT VALUE FOR), so the
--    write batch needs no OUTPUT and no follow-up UPDATE. IDENTITY columns refuse explicit ids, so
--    purchases and point_lots move to sequences, starting after the rows they already hold.
DECLARE @ddl nvarchar(max);
DECLARE @next bigint = (SELECT COALESCE(MAX(id), 0) + 1 FROM dbo.purchases);
SET @ddl = N'CREATE SEQUENCE dbo.purchases_id_seq AS bigint START WITH ' + CAST(@next AS nvarchar(20)) + N' CACHE 1000;';
EXEC sys.sp_executesql @ddl;
SET @next = (SELECT COALESCE(MAX(id), 0) + 1 FROM dbo.point_lots);
SET @ddl = N'CREATE SEQUENCE dbo.point_lots_id_seq AS bigint START WITH ' + CAST(@next AS nvarchar(20)) + N' CACHE 1000;';
EXEC sys.sp_executesql @ddl;
GO

CREATE TABLE dbo.purchases_new (
    id                    bigint NOT NULL CONSTRAINT df_purchases_id DEFAULT (NEXT VALUE FOR dbo.purchases_id_seq),
    member_id             bigint      NOT NULL,
    merchant_id           bigint      NOT NULL,
    store_id              bigint      NOT NULL,
    receipt_number        nvarchar(64) COLLATE Latin1_General_100_BIN2 NOT NULL,
    card_id               bigint      NULL,
    occurred_at           datetime2 NOT NULL,
    recorded_at           datetime2 NOT NULL,
    currency              varchar(3)  NOT NULL,
    total_minor           bigint      NOT NULL,
    amount_due_minor      bigint      NOT NULL,
    points_redeemed       bigint      NOT NULL,
    redeemed_value_minor  bigint      NOT NULL,
    points_earned         bigint      NOT NULL,
    earn_lot_id           bigint      NULL,
    refunded_minor        bigint      NOT NULL,
    points_reversed       bigint      NOT NULL,
    points_returned       bigint      NOT NULL,
    request_hash          varchar(64) NOT NULL,
    response_json         nvarchar(max) NOT NULL,
    CONSTRAINT pk_purchases PRIMARY KEY (id)
);
INSERT INTO dbo.purchases_new (id, member_id, merchant_id, store_id, receipt_number, card_id, occurred_at, recorded_at,
    currency, total_minor, amount_due_minor, points_redeemed, redeemed_value_minor, points_earned, earn_lot_id,
    refunded_minor, points_reversed, points_returned, request_hash, response_json)
SELECT id, member_id, merchant_id, store_id, receipt_number, card_id, occurred_at, recorded_at,
    currency, total_minor, amount_due_minor, points_redeemed, redeemed_value_minor, points_earned, earn_lot_id,
    refunded_minor, points_reversed, points_returned, request_hash, response_json
FROM dbo.purchases;
DROP TABLE dbo.purchases;
EXEC sys.sp_rename N'dbo.purchases_new', N'purchases';
ALTER TABLE dbo.purchases ADD CONSTRAINT ux_purchases_store_receipt UNIQUE (store_id, receipt_number);
CREATE INDEX ix_purchases_member ON dbo.purchases (member_id, id);
GO

CREATE TABLE dbo.point_lots_new (
    id               bigint NOT NULL CONSTRAINT df_point_lots_id DEFAULT (NEXT VALUE FOR dbo.point_lots_id_seq),
    member_id        bigint      NOT NULL,
    source           varchar(24) NOT NULL,
    purchase_id      bigint      NULL,
    granted_points   bigint      NOT NULL,
    remaining_points bigint      NOT NULL,
    expired_points   bigint      NOT NULL,
    reversed_points  bigint      NOT NULL,
    available_at     datetime2 NOT NULL,
    expires_at       datetime2 NOT NULL,
    status           varchar(16) NOT NULL,
    created_at       datetime2 NOT NULL,
    CONSTRAINT pk_point_lots PRIMARY KEY (id)
);
INSERT INTO dbo.point_lots_new (id, member_id, source, purchase_id, granted_points, remaining_points, expired_points,
    reversed_points, available_at, expires_at, status, created_at)
SELECT id, member_id, source, purchase_id, granted_points, remaining_points, expired_points,
    reversed_points, available_at, expires_at, status, created_at
FROM dbo.point_lots;
DROP TABLE dbo.point_lots;
EXEC sys.sp_rename N'dbo.point_lots_new', N'point_lots';
ALTER TABLE dbo.point_lots ADD CONSTRAINT ck_point_lots_remaining CHECK (remaining_points >= 0 AND remaining_points <= granted_points);
CREATE INDEX ix_point_lots_member_expiry ON dbo.point_lots (member_id, expires_at);
CREATE INDEX ix_point_lots_expiry ON dbo.point_lots (expires_at, remaining_points);
CREATE INDEX ix_point_lots_pending ON dbo.point_lots (available_at, member_id) WHERE status = 'pending';
