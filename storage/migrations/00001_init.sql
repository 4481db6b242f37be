-- +goose Up
-- The initial schema. It must agree with the gorm models in ../models.go
-- (TestSchemaMatchesModels checks every column, index and check constraint).

CREATE TABLE pools (
    id         BIGSERIAL   PRIMARY KEY,
    asset      TEXT        NOT NULL,
    program    TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX pools_asset_program_key ON pools (asset, program);

CREATE TABLE utxos (
    id         BIGSERIAL   PRIMARY KEY,
    hash       TEXT        NOT NULL,
    pool_id    BIGINT      NOT NULL REFERENCES pools (id) ON DELETE CASCADE,
    asset      TEXT        NOT NULL,
    amount     BIGINT      NOT NULL,
    state      TEXT        NOT NULL,
    confirmed  BOOLEAN     NOT NULL,
    created_tx TEXT        NOT NULL DEFAULT '',
    spent_tx   TEXT        NOT NULL DEFAULT '',
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    spent_at   TIMESTAMPTZ,
    CONSTRAINT utxos_state_check CHECK (state IN ('available', 'reserved', 'spent', 'invalidated')),
    CONSTRAINT utxos_amount_check CHECK (amount >= 0)
);
CREATE UNIQUE INDEX utxos_hash_key ON utxos (hash);
CREATE INDEX utxos_pool_state_idx ON utxos (pool_id, state);

CREATE TABLE reservations (
    id         TEXT        PRIMARY KEY,
    pool_id    BIGINT      NOT NULL REFERENCES pools (id) ON DELETE CASCADE,
    fence      BIGINT      NOT NULL,
    owner      TEXT        NOT NULL DEFAULT '',
    hashes     TEXT        NOT NULL,
    state      TEXT        NOT NULL,
    tx_id      TEXT        NOT NULL DEFAULT '',
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    CONSTRAINT reservations_state_check CHECK (state IN ('held', 'submitted', 'released', 'expired', 'spent', 'invalidated')),
    CONSTRAINT reservations_fence_check CHECK (fence > 0),
    CONSTRAINT reservations_hashes_check CHECK (hashes <> '')
);
CREATE INDEX reservations_pool_state_idx ON reservations (pool_id, state);
-- A fencing token is never reused within a pool.
CREATE UNIQUE INDEX reservations_pool_fence_key ON reservations (pool_id, fence);

CREATE TABLE balances (
    id          BIGSERIAL   PRIMARY KEY,
    address     TEXT        NOT NULL,
    asset       TEXT        NOT NULL,
    amount      BIGINT      NOT NULL,
    tx_id       TEXT        NOT NULL,
    state       TEXT        NOT NULL,
    status_fail BOOLEAN     NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    CONSTRAINT balances_state_check CHECK (state IN ('pending', 'confirmed', 'rejected', 'expired'))
);
CREATE INDEX balances_address_asset_idx ON balances (address, asset);
CREATE INDEX idx_balances_tx_id ON balances (tx_id);

CREATE TABLE transactions (
    id          BIGSERIAL   PRIMARY KEY,
    pool_id     BIGINT      NOT NULL REFERENCES pools (id) ON DELETE CASCADE,
    tx_id       TEXT        NOT NULL,
    height      BIGINT      NOT NULL,
    block_hash  TEXT        NOT NULL DEFAULT '',
    block_time  TIMESTAMPTZ NOT NULL,
    status_fail BOOLEAN     NOT NULL,
    inputs      TEXT        NOT NULL DEFAULT '[]',
    outputs     TEXT        NOT NULL DEFAULT '[]',
    created_at  TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX transactions_pool_tx_key ON transactions (pool_id, tx_id);

-- pool_id 0 is allowed for jobs that are not tied to one pool (the block
-- crawler), so there is no foreign key here.
CREATE TABLE sync_cursors (
    pool_id      BIGINT      NOT NULL,
    job          TEXT        NOT NULL,
    height       BIGINT      NOT NULL DEFAULT 0,
    block_hash   TEXT        NOT NULL DEFAULT '',
    epoch        BIGINT      NOT NULL DEFAULT 0,
    last_success TIMESTAMPTZ,
    last_error   TEXT        NOT NULL DEFAULT '',
    updated_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (pool_id, job)
);

-- +goose Down
DROP TABLE sync_cursors;
DROP TABLE transactions;
DROP TABLE balances;
DROP TABLE reservations;
DROP TABLE utxos;
DROP TABLE pools;
