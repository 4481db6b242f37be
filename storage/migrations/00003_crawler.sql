-- +goose Up
-- The block crawler: the hash of every block it applied to a pool (to find
-- the fork point of a reorganisation; pruned to the reorganisation window),
-- and the addresses of each recorded transaction (for lookups by address).
CREATE TABLE crawled_blocks (
    pool_id       BIGINT NOT NULL REFERENCES pools (id) ON DELETE CASCADE,
    height        BIGINT NOT NULL,
    hash          TEXT   NOT NULL,
    previous_hash TEXT   NOT NULL DEFAULT '',
    PRIMARY KEY (pool_id, height)
);

CREATE TABLE transaction_addresses (
    transaction_id BIGINT NOT NULL REFERENCES transactions (id) ON DELETE CASCADE,
    address        TEXT   NOT NULL,
    PRIMARY KEY (transaction_id, address)
);
CREATE INDEX transaction_addresses_address_idx ON transaction_addresses (address, transaction_id);
CREATE INDEX transactions_pool_height_idx ON transactions (pool_id, height);

-- +goose Down
DROP TABLE transaction_addresses;
DROP TABLE crawled_blocks;
DROP INDEX transactions_pool_height_idx;
