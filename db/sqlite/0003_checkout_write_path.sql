-- The checkout write path (see db/postgres/0003 for the measurements).
-- The tables every checkout writes carry no foreign keys, as on PostgreSQL and SQL Server: the
-- service writes these rows only inside the transaction that checked their parents, nothing is
-- deleted, and the test suite checks after every test that no row points at nothing. SQLite cannot
-- drop a constraint, so each table is rebuilt (children first, so no remaining key refers to a
-- table being dropped). Ids need no change: INTEGER PRIMARY KEY accepts the ids a purchase takes
-- up front (MAX(id) + 1 under the write lock).

CREATE TABLE refund_lines_rebuilt (
    refund_id     bigint  NOT NULL,
    line_no       integer NOT NULL,
    quantity      integer NOT NULL,
    amount_minor  bigint  NOT NULL,
    PRIMARY KEY (refund_id, line_no)
);
INSERT INTO refund_lines_rebuilt (refund_id, line_no, quantity, amount_minor)
SELECT refund_id, line_no, quantity, amount_minor FROM refund_lines;
DROP TABLE refund_lines;
ALTER TABLE refund_lines_rebuilt RENAME TO refund_lines;

CREATE TABLE redemption_allocations_rebuilt (
    id              INTEGER PRIMARY KEY,
    member_id       bigint      NOT NULL,
    purchase_id     bigint      NOT NULL,
    lot_id          bigint      NOT NULL,
    points          bigint      NOT NULL,
    returned_points bigint      NOT NULL,
    expires_at      TEXT NOT NULL
);
INSERT INTO redemption_allocations_rebuilt (id, member_id, purchase_id, lot_id, points, returned_points, expires_at)
SELECT id, member_id, purchase_id, lot_id, points, returned_points, expires_at FROM redemption_allocations;
DROP TABLE redemption_allocations;
ALTER TABLE redemption_allocations_rebuilt RENAME TO redemption_allocations;
CREATE INDEX ix_redemption_allocations_purchase ON redemption_allocations (purchase_id);

CREATE TABLE purchase_lines_rebuilt (
    purchase_id        bigint       NOT NULL,
    line_no            integer      NOT NULL,
    sku                varchar(64)  NOT NULL,
    category           varchar(64)  NULL,
    quantity           integer      NOT NULL,
    amount_minor       bigint       NOT NULL,
    refunded_quantity  integer      NOT NULL,
    refunded_minor     bigint       NOT NULL,
    PRIMARY KEY (purchase_id, line_no)
);
INSERT INTO purchase_lines_rebuilt (purchase_id, line_no, sku, category, quantity, amount_minor, refunded_quantity, refunded_minor)
SELECT purchase_id, line_no, sku, category, quantity, amount_minor, refunded_quantity, refunded_minor FROM purchase_lines;
DROP TABLE purchase_lines;
ALTER TABLE purchase_lines_rebuilt RENAME TO purchase_lines;

CREATE TABLE ledger_entries_rebuilt (
    id           INTEGER PRIMARY KEY,
    member_id    bigint       NOT NULL,
    entry_type   varchar(24)  NOT NULL,
    points       bigint       NOT NULL,
    lot_id       bigint       NULL,
    purchase_id  bigint       NULL,
    refund_id    bigint       NULL,
    reason       varchar(500) NULL,
    actor        varchar(100) NOT NULL,
    created_at   TEXT  NOT NULL
);
INSERT INTO ledger_entries_rebuilt (id, member_id, entry_type, points, lot_id, purchase_id, refund_id, reason, actor, created_at)
SELECT id, member_id, entry_type, points, lot_id, purchase_id, refund_id, reason, actor, created_at FROM ledger_entries;
DROP TABLE ledger_entries;
ALTER TABLE ledger_entries_rebuilt RENAME TO ledger_entries;
CREATE INDEX ix_ledger_entries_member ON ledger_entries (member_id, id);

CREATE TABLE refunds_rebuilt (
    id              INTEGER PRIMARY KEY,
    purchase_id     bigint      NOT NULL,
    member_id       bigint      NOT NULL,
    store_id        bigint      NOT NULL,
    refund_number   varchar(64) NOT NULL,
    occurred_at     TEXT NOT NULL,
    recorded_at     TEXT NOT NULL,
    amount_minor    bigint      NOT NULL,
    points_reversed bigint      NOT NULL,
    points_returned bigint      NOT NULL,
    request_hash    varchar(64) NOT NULL,
    response_json   text        NOT NULL,
    CONSTRAINT ux_refunds_store_number UNIQUE (store_id, refund_number)
);
INSERT INTO refunds_rebuilt (id, purchase_id, member_id, store_id, refund_number, occurred_at, recorded_at, amount_minor, points_reversed, points_returned, request_hash, response_json)
SELECT id, purchase_id, member_id, store_id, refund_number, occurred_at, recorded_at, amount_minor, points_reversed, points_returned, request_hash, response_json FROM refunds;
DROP TABLE refunds;
ALTER TABLE refunds_rebuilt RENAME TO refunds;
CREATE INDEX ix_refunds_purchase ON refunds (purchase_id);

CREATE TABLE point_lots_rebuilt (
    id               INTEGER PRIMARY KEY,
    member_id        bigint      NOT NULL,
    source           varchar(24) NOT NULL,
    purchase_id      bigint      NULL,
    granted_points   bigint      NOT NULL,
    remaining_points bigint      NOT NULL,
    expired_points   bigint      NOT NULL,
    reversed_points  bigint      NOT NULL,
    available_at     TEXT NOT NULL,
    expires_at       TEXT NOT NULL,
    status           varchar(16) NOT NULL,
    created_at       TEXT NOT NULL,
    CONSTRAINT ck_point_lots_remaining CHECK (remaining_points >= 0 AND remaining_points <= granted_points)
);
INSERT INTO point_lots_rebuilt (id, member_id, source, purchase_id, granted_points, remaining_points, expired_points, reversed_points, available_at, expires_at, status, created_at)
SELECT id, member_id, source, purchase_id, granted_points, remaining_points, expired_points, reversed_points, available_at, expires_at, status, created_at FROM point_lots;
DROP TABLE point_lots;
ALTER TABLE point_lots_rebuilt RENAME TO point_lots;
CREATE INDEX ix_point_lots_member_expiry ON point_lots (member_id, expires_at);
CREATE INDEX ix_point_lots_expiry ON point_lots (expires_at, remaining_points);
CREATE INDEX ix_point_lots_pending ON point_lots (available_at, member_id) WHERE status = 'pending';

CREATE TABLE purchases_rebuilt (
    id                    INTEGER PRIMARY KEY,
    member_id             bigint      NOT NULL,
    merchant_id           bigint      NOT NULL,
    store_id              bigint      NOT NULL,
    receipt_number        varchar(64) NOT NULL,
    card_id               bigint      NULL,
    occurred_at           TEXT NOT NULL,
    recorded_at           TEXT NOT NULL,
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
    response_json         text        NOT NULL,
    CONSTRAINT ux_purchases_store_receipt UNIQUE (store_id, receipt_number)
);
INSERT INTO purchases_rebuilt (id, member_id, merchant_id, store_id, receipt_number, card_id, occurred_at, recorded_at, currency, total_minor, amount_due_minor, points_redeemed, redeemed_value_minor, points_earned, earn_lot_id, refunded_minor, points_reversed, points_returned, request_hash, response_json)
SELECT id, member_id, merchant_id, store_id, receipt_number, card_id, occurred_at, recorded_at, currency, total_minor, amount_due_minor, points_redeemed, redeemed_value_minor, points_earned, earn_lot_id, refunded_minor, points_reversed, points_returned, request_hash, response_json FROM purchases;
DROP TABLE purchases;
ALTER TABLE purchases_rebuilt RENAME TO purchases;
CREATE INDEX ix_purchases_member ON purchases (member_id, id);
