-- +goose Up
-- One row per leader-elected job: the epoch of its current term, which only
-- grows, and who holds it since when.
CREATE TABLE leader_terms (
    job       TEXT        PRIMARY KEY,
    epoch     BIGINT      NOT NULL,
    leader_id TEXT        NOT NULL,
    since     TIMESTAMPTZ NOT NULL,
    CONSTRAINT leader_terms_epoch_check CHECK (epoch > 0)
);

-- +goose Down
DROP TABLE leader_terms;
