-- +goose Up
-- Every statement that changes a pool's UTXO rows adds one to the pool's
-- version, whoever runs it: a sync that finds the chain's listing and the
-- version as they were when it last found nothing to change can skip reading
-- the pool back (storage.Store.UTXOVersion). It must agree with the gorm
-- model poolUTXOVersion in ../models.go.
CREATE TABLE pool_utxo_versions (
    pool_id BIGINT PRIMARY KEY,
    version BIGINT NOT NULL
);

-- One row update per pool per statement, in pool order; the row lock orders
-- the increments as their transactions commit. Only the sync leader writes
-- UTXO rows, one pool's at a time, so the lock adds no wait in practice;
-- should two transactions ever write one pool's rows in several statements
-- each (an old leader's last write during a handover), PostgreSQL may find a
-- deadlock and abort one, whose job retries at its next pass.
-- +goose StatementBegin
CREATE FUNCTION count_pool_utxo_changes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO pool_utxo_versions AS v (pool_id, version)
            SELECT DISTINCT pool_id, 1 FROM new_utxos ORDER BY pool_id
            ON CONFLICT (pool_id) DO UPDATE SET version = v.version + 1;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO pool_utxo_versions AS v (pool_id, version)
            SELECT pool_id, 1 FROM (SELECT pool_id FROM old_utxos UNION SELECT pool_id FROM new_utxos) p ORDER BY pool_id
            ON CONFLICT (pool_id) DO UPDATE SET version = v.version + 1;
    ELSE
        INSERT INTO pool_utxo_versions AS v (pool_id, version)
            SELECT DISTINCT pool_id, 1 FROM old_utxos ORDER BY pool_id
            ON CONFLICT (pool_id) DO UPDATE SET version = v.version + 1;
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER utxos_count_inserts AFTER INSERT ON utxos REFERENCING NEW TABLE AS new_utxos
    FOR EACH STATEMENT EXECUTE FUNCTION count_pool_utxo_changes();
CREATE TRIGGER utxos_count_updates AFTER UPDATE ON utxos REFERENCING OLD TABLE AS old_utxos NEW TABLE AS new_utxos
    FOR EACH STATEMENT EXECUTE FUNCTION count_pool_utxo_changes();
CREATE TRIGGER utxos_count_deletes AFTER DELETE ON utxos REFERENCING OLD TABLE AS old_utxos
    FOR EACH STATEMENT EXECUTE FUNCTION count_pool_utxo_changes();

-- +goose Down
DROP TRIGGER utxos_count_deletes ON utxos;
DROP TRIGGER utxos_count_updates ON utxos;
DROP TRIGGER utxos_count_inserts ON utxos;
DROP FUNCTION count_pool_utxo_changes();
DROP TABLE pool_utxo_versions;
