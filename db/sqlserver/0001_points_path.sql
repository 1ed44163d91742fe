-- SQL Server: business keys (receipt, refund and card numbers, idempotency keys) use a binary
-- collation so they compare exactly as on PostgreSQL and SQLite, and nvarchar so no character is lost.
-- The POS points path: program, merchants, stores, API clients, members, cards, purchases,
-- refunds, point lots, the append-only ledger and idempotency records.
-- Hot tables are keyed by member first so that a member's rows can live on one shard later.

CREATE TABLE program_settings (
    id                     integer     NOT NULL PRIMARY KEY,
    currency               varchar(3)  NOT NULL,
    time_zone              varchar(64) NOT NULL,
    earn_rate_bps          integer     NOT NULL,
    point_value_minor      integer     NOT NULL,
    max_redeem_share_bps   integer     NOT NULL,
    activation_delay_days  integer     NOT NULL,
    points_lifetime_days   integer     NOT NULL,
    expiry_rounding        varchar(16) NOT NULL,
    welcome_bonus_points   integer     NOT NULL,
    updated_at             datetime2 NOT NULL
);

INSERT INTO program_settings (id, currency, time_zone, earn_rate_bps, point_value_minor, max_redeem_share_bps,
    activation_delay_days, points_lifetime_days, expiry_rounding, welcome_bonus_points, updated_at)
VALUES (1, 'USD', 'UTC', 10000, 1, 5000, 14, 365, 'EndOfDay', 0, '2026-01-01T00:00:00');

CREATE TABLE merchants (
    id          bigint IDENTITY(1,1) PRIMARY KEY,
    name        nvarchar(200) NOT NULL,
    kind        varchar(16)  NOT NULL,
    created_at  datetime2  NOT NULL
);

CREATE TABLE stores (
    id           bigint IDENTITY(1,1) PRIMARY KEY,
    merchant_id  bigint       NOT NULL REFERENCES merchants (id),
    code         varchar(64)  NOT NULL,
    name         nvarchar(200) NOT NULL,
    created_at   datetime2  NOT NULL,
    CONSTRAINT ux_stores_merchant_code UNIQUE (merchant_id, code)
);

CREATE TABLE api_clients (
    id           bigint IDENTITY(1,1) PRIMARY KEY,
    name         nvarchar(200) NOT NULL,
    role         varchar(16)  NOT NULL,
    merchant_id  bigint       NULL REFERENCES merchants (id),
    store_id     bigint       NULL REFERENCES stores (id),
    key_prefix   varchar(16)  NOT NULL,
    key_hash     varchar(64)  NOT NULL,
    created_at   datetime2  NOT NULL,
    revoked_at   datetime2  NULL,
    CONSTRAINT ux_api_clients_key_prefix UNIQUE (key_prefix)
);

CREATE TABLE members (
    id                     bigint IDENTITY(1,1) PRIMARY KEY,
    external_id            varchar(100) NULL,
    phone                  varchar(20)  NULL,
    email                  varchar(254) NULL,
    name                   nvarchar(200) NULL,
    birth_date             varchar(10)  NULL,
    referral_code          varchar(16)  NOT NULL,
    referred_by_member_id  bigint       NULL REFERENCES members (id),
    status                 varchar(16)  NOT NULL,
    enrolled_at            datetime2  NOT NULL
);
CREATE UNIQUE INDEX ux_members_external_id ON members (external_id) WHERE external_id IS NOT NULL;
CREATE UNIQUE INDEX ux_members_phone ON members (phone) WHERE phone IS NOT NULL;
CREATE UNIQUE INDEX ux_members_email ON members (email) WHERE email IS NOT NULL;
CREATE UNIQUE INDEX ux_members_referral_code ON members (referral_code);

-- One row per member: the lock every points write takes first, and the debt left by refunds.
CREATE TABLE point_accounts (
    member_id    bigint      NOT NULL PRIMARY KEY REFERENCES members (id),
    debt_points  bigint      NOT NULL,
    version      bigint      NOT NULL,
    updated_at   datetime2 NOT NULL
);

CREATE TABLE cards (
    id                   bigint IDENTITY(1,1) PRIMARY KEY,
    card_number          varchar(32) COLLATE Latin1_General_100_BIN2  NOT NULL,
    member_id            bigint       NOT NULL REFERENCES members (id),
    status               varchar(16)  NOT NULL,
    issued_at            datetime2  NOT NULL,
    blocked_at           datetime2  NULL,
    block_reason         nvarchar(200) NULL,
    replaced_by_card_id  bigint       NULL,
    CONSTRAINT ux_cards_card_number UNIQUE (card_number)
);
CREATE INDEX ix_cards_member ON cards (member_id);

CREATE TABLE purchases (
    id                    bigint IDENTITY(1,1) PRIMARY KEY,
    member_id             bigint      NOT NULL REFERENCES members (id),
    merchant_id           bigint      NOT NULL REFERENCES merchants (id),
    store_id              bigint      NOT NULL REFERENCES stores (id),
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
    response_json         nvarchar(max)        NOT NULL,
    CONSTRAINT ux_purchases_store_receipt UNIQUE (store_id, receipt_number)
);
CREATE INDEX ix_purchases_member ON purchases (member_id, id);

CREATE TABLE purchase_lines (
    purchase_id        bigint       NOT NULL REFERENCES purchases (id),
    line_no            integer      NOT NULL,
    sku                varchar(64)  NOT NULL,
    category           varchar(64)  NULL,
    quantity           integer      NOT NULL,
    amount_minor       bigint       NOT NULL,
    refunded_quantity  integer      NOT NULL,
    refunded_minor     bigint       NOT NULL,
    PRIMARY KEY (purchase_id, line_no)
);

CREATE TABLE point_lots (
    id               bigint IDENTITY(1,1) PRIMARY KEY,
    member_id        bigint      NOT NULL REFERENCES members (id),
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
    CONSTRAINT ck_point_lots_remaining CHECK (remaining_points >= 0 AND remaining_points <= granted_points)
);
CREATE INDEX ix_point_lots_member_expiry ON point_lots (member_id, expires_at);
CREATE INDEX ix_point_lots_expiry ON point_lots (expires_at, remaining_points);

CREATE TABLE ledger_entries (
    id           bigint IDENTITY(1,1) PRIMARY KEY,
    member_id    bigint       NOT NULL REFERENCES members (id),
    entry_type   varchar(24)  NOT NULL,
    points       bigint       NOT NULL,
    lot_id       bigint       NULL,
    purchase_id  bigint       NULL,
    refund_id    bigint       NULL,
    reason       nvarchar(500) NULL,
    actor        varchar(100) NOT NULL,
    created_at   datetime2  NOT NULL
);
CREATE INDEX ix_ledger_entries_member ON ledger_entries (member_id, id);

-- Which lots each redemption consumed, so a refund can give points back with their original expiry.
CREATE TABLE redemption_allocations (
    id              bigint IDENTITY(1,1) PRIMARY KEY,
    member_id       bigint      NOT NULL REFERENCES members (id),
    purchase_id     bigint      NOT NULL REFERENCES purchases (id),
    lot_id          bigint      NOT NULL REFERENCES point_lots (id),
    points          bigint      NOT NULL,
    returned_points bigint      NOT NULL,
    expires_at      datetime2 NOT NULL
);
CREATE INDEX ix_redemption_allocations_purchase ON redemption_allocations (purchase_id);

CREATE TABLE refunds (
    id              bigint IDENTITY(1,1) PRIMARY KEY,
    purchase_id     bigint      NOT NULL REFERENCES purchases (id),
    member_id       bigint      NOT NULL REFERENCES members (id),
    store_id        bigint      NOT NULL REFERENCES stores (id),
    refund_number   nvarchar(64) COLLATE Latin1_General_100_BIN2 NOT NULL,
    occurred_at     datetime2 NOT NULL,
    recorded_at     datetime2 NOT NULL,
    amount_minor    bigint      NOT NULL,
    points_reversed bigint      NOT NULL,
    points_returned bigint      NOT NULL,
    request_hash    varchar(64) NOT NULL,
    response_json   nvarchar(max)        NOT NULL,
    CONSTRAINT ux_refunds_store_number UNIQUE (store_id, refund_number)
);
CREATE INDEX ix_refunds_purchase ON refunds (purchase_id);

CREATE TABLE refund_lines (
    refund_id     bigint  NOT NULL REFERENCES refunds (id),
    line_no       integer NOT NULL,
    quantity      integer NOT NULL,
    amount_minor  bigint  NOT NULL,
    PRIMARY KEY (refund_id, line_no)
);

CREATE TABLE idempotency_keys (
    client_key     nvarchar(64) COLLATE Latin1_General_100_BIN2  NOT NULL,
    idem_key       nvarchar(200) COLLATE Latin1_General_100_BIN2 NOT NULL,
    operation      varchar(64)  NOT NULL,
    request_hash   varchar(64)  NOT NULL,
    status_code    integer      NOT NULL,
    response_json  nvarchar(max)         NOT NULL,
    created_at     datetime2  NOT NULL,
    PRIMARY KEY (client_key, idem_key)
);
