package storage_test

import (
	"database/sql"
	"errors"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bufferd/bufferd/internal/testenv"
	"github.com/bufferd/bufferd/storage"
	"gorm.io/gorm/schema"
)

func TestMigrateUpConcurrent(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	url := testenv.Postgres(t)

	cur, latest, err := storage.MigrateStatus(ctx, url)
	if err != nil {
		t.Fatalf("MigrateStatus: %v", err)
	}
	if cur != 0 || latest < 1 {
		t.Fatalf("fresh database: status = %d/%d, want 0/>=1", cur, latest)
	}

	var wg sync.WaitGroup
	errs := make([]error, 5)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = storage.MigrateUp(ctx, url)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("MigrateUp #%d: %v", i, err)
		}
	}
	cur, latest2, err := storage.MigrateStatus(ctx, url)
	if err != nil || cur != latest || latest2 != latest {
		t.Fatalf("after MigrateUp: status = %d/%d, %v; want %d/%d", cur, latest2, err, latest, latest)
	}

	s, err := storage.Open(ctx, url)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer func() { _ = s.Close() }()
	countVersions := func() int64 {
		var n int64
		if err := s.DB().WithContext(ctx).Raw("SELECT COUNT(*) FROM goose_db_version").Scan(&n).Error; err != nil {
			t.Fatalf("count versions: %v", err)
		}
		return n
	}
	before := countVersions()
	if before != latest+1 { // version 0 plus one row per migration, each applied once
		t.Fatalf("goose_db_version has %d rows, want %d", before, latest+1)
	}
	if err := storage.MigrateUp(ctx, url); err != nil {
		t.Fatalf("MigrateUp again: %v", err)
	}
	if after := countVersions(); after != before {
		t.Fatalf("second MigrateUp changed goose_db_version: %d -> %d rows", before, after)
	}
}

func TestOpenUnmigrated(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	url := testenv.Postgres(t)
	_, err := storage.Open(ctx, url)
	if !errors.Is(err, storage.ErrNotMigrated) {
		t.Fatalf("Open on an empty database: err = %v, want ErrNotMigrated", err)
	}
	if !strings.Contains(err.Error(), "bufferd migrate up") {
		t.Errorf("error %q does not tell how to fix it", err)
	}
	// Neither Open nor the status check may have written anything.
	if _, _, err := storage.MigrateStatus(ctx, url); err != nil {
		t.Fatalf("MigrateStatus: %v", err)
	}
	raw, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = raw.Close() }()
	var tables int
	if err := raw.QueryRowContext(ctx, `SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema()`).Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != 0 {
		t.Fatalf("Open/MigrateStatus created %d tables in an unmigrated database", tables)
	}
	if err := storage.MigrateUp(ctx, url); err != nil {
		t.Fatalf("MigrateUp: %v", err)
	}
	s, err := storage.Open(ctx, url)
	if err != nil {
		t.Fatalf("Open after migrate: %v", err)
	}
	_ = s.Close()
}

func TestOpenBadURL(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"", "mysql://x", "redis://127.0.0.1:6379", "sqlite://"} {
		if _, err := storage.Open(testCtx(t), u); !errors.Is(err, storage.ErrBadURL) {
			t.Errorf("Open(%q): err = %v, want ErrBadURL", u, err)
		}
	}
	if err := storage.MigrateUp(testCtx(t), "sqlite:///tmp/x.db"); !errors.Is(err, storage.ErrBadURL) {
		t.Errorf("MigrateUp(sqlite): err = %v, want ErrBadURL", err)
	}
	if _, err := storage.EnsureDatabase(testCtx(t), "sqlite:///tmp/x.db"); !errors.Is(err, storage.ErrBadURL) {
		t.Errorf("EnsureDatabase(sqlite): err = %v, want ErrBadURL", err)
	}
}

// TestSchemaMatchesModels checks that the goose migrations create exactly the
// columns (type, nullability, default), indexes and check constraints the gorm
// models describe, plus the foreign keys the models cannot express.
func TestSchemaMatchesModels(t *testing.T) {
	t.Parallel()
	checkSchema(t, openPostgres(t))
}

// checkSchema compares the schema of s's PostgreSQL database with the models.
func checkSchema(t *testing.T, s *storage.Store) {
	t.Helper()
	ctx := testCtx(t)
	db := s.DB().WithContext(ctx)

	wantType := map[schema.DataType]string{
		schema.Int: "int8", schema.String: "text", schema.Bool: "bool", schema.Time: "timestamptz",
		"numeric": "numeric", // storage.Amount: NUMERIC(20,0), every uint64 exactly
	}
	var tables []string
	for _, m := range storage.Models() {
		sch, err := schema.Parse(m, &sync.Map{}, schema.NamingStrategy{})
		if err != nil {
			t.Fatalf("parse %T: %v", m, err)
		}
		tables = append(tables, sch.Table)

		// Columns.
		var cols []struct {
			ColumnName       string
			UdtName          string
			IsNullable       string
			ColumnDefault    *string
			NumericPrecision *int
			NumericScale     *int
		}
		err = db.Raw(`SELECT column_name, udt_name, is_nullable, column_default, numeric_precision, numeric_scale
			FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = ?`, sch.Table).Scan(&cols).Error
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]int{}
		for i, c := range cols {
			got[c.ColumnName] = i
		}
		for _, f := range sch.Fields {
			i, ok := got[f.DBName]
			if !ok {
				t.Errorf("%s.%s: column missing", sch.Table, f.DBName)
				continue
			}
			delete(got, f.DBName)
			c := cols[i]
			want, known := wantType[f.DataType]
			if !known {
				t.Errorf("%s.%s: the test does not know the model's type %q", sch.Table, f.DBName, f.DataType)
			}
			if c.UdtName != want {
				t.Errorf("%s.%s: type %s, want %s", sch.Table, f.DBName, c.UdtName, want)
			}
			if want == "numeric" && (c.NumericPrecision == nil || *c.NumericPrecision != 20 || c.NumericScale == nil || *c.NumericScale != 0) {
				t.Errorf("%s.%s: numeric(%v,%v), want numeric(20,0)", sch.Table, f.DBName, deref(c.NumericPrecision), deref(c.NumericScale))
			}
			wantNull := !f.NotNull && !f.PrimaryKey
			if (c.IsNullable == "YES") != wantNull {
				t.Errorf("%s.%s: nullable %s, model says nullable=%v", sch.Table, f.DBName, c.IsNullable, wantNull)
			}
			def, hasDef := f.TagSettings["DEFAULT"]
			switch {
			case f.AutoIncrement && f.PrimaryKey:
				if c.ColumnDefault == nil || !strings.HasPrefix(*c.ColumnDefault, "nextval(") {
					t.Errorf("%s.%s: not a serial column", sch.Table, f.DBName)
				}
			case hasDef:
				if c.ColumnDefault == nil || strings.TrimSuffix(*c.ColumnDefault, "::text") != def {
					t.Errorf("%s.%s: default %v, model says %s", sch.Table, f.DBName, derefStr(c.ColumnDefault), def)
				}
			case c.ColumnDefault != nil:
				t.Errorf("%s.%s: default %s, model has none", sch.Table, f.DBName, *c.ColumnDefault)
			}
		}
		for name := range got {
			t.Errorf("%s.%s: column not in the model", sch.Table, name)
		}

		// Indexes, including the primary key, and the condition of partial ones.
		want := map[string]string{}
		var pk []string
		for _, f := range sch.PrimaryFields {
			pk = append(pk, f.DBName)
		}
		want[sch.Table+"_pkey"] = "unique " + strings.Join(pk, ",")
		for _, idx := range sch.ParseIndexes() {
			var fs []string
			for _, f := range idx.Fields {
				fs = append(fs, f.DBName)
			}
			kind := "index"
			if idx.Class == "UNIQUE" {
				kind = "unique"
			}
			want[idx.Name] = kind + " " + strings.Join(fs, ",")
			if idx.Where != "" {
				want[idx.Name] += " where " + normPredicate(idx.Where)
			}
		}
		var idxs []struct {
			Name string
			Uniq bool
			Cols string
			Pred *string
		}
		err = db.Raw(`SELECT i.relname AS name, ix.indisunique AS uniq,
				array_to_string(ARRAY(SELECT a.attname FROM unnest(ix.indkey) WITH ORDINALITY AS k(attnum, ord)
					JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum ORDER BY k.ord), ',') AS cols,
				pg_get_expr(ix.indpred, ix.indrelid) AS pred
			FROM pg_class t JOIN pg_index ix ON ix.indrelid = t.oid JOIN pg_class i ON i.oid = ix.indexrelid
			WHERE t.relname = ? AND t.relnamespace = current_schema()::regnamespace`, sch.Table).Scan(&idxs).Error
		if err != nil {
			t.Fatal(err)
		}
		gotIdx := map[string]string{}
		for _, ix := range idxs {
			kind := "index"
			if ix.Uniq {
				kind = "unique"
			}
			gotIdx[ix.Name] = kind + " " + ix.Cols
			if ix.Pred != nil {
				gotIdx[ix.Name] += " where " + normPredicate(*ix.Pred)
			}
		}
		if !maps.Equal(gotIdx, want) {
			t.Errorf("%s indexes:\n got  %v\n want %v", sch.Table, gotIdx, want)
		}

		// Check constraints, by name.
		var wantChecks []string
		for name := range sch.ParseCheckConstraints() {
			wantChecks = append(wantChecks, name)
		}
		var gotChecks []string
		err = db.Raw(`SELECT conname FROM pg_constraint WHERE contype = 'c' AND conrelid = (current_schema() || '.' || ?)::regclass`,
			sch.Table).Scan(&gotChecks).Error
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(wantChecks)
		slices.Sort(gotChecks)
		if !slices.Equal(gotChecks, wantChecks) {
			t.Errorf("%s checks: got %v, want %v", sch.Table, gotChecks, wantChecks)
		}
	}

	// The utxo state check is the models' (reserved is no longer stored).
	var def string
	if err := db.Raw(`SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'utxos_state_check'`).Scan(&def).Error; err != nil {
		t.Fatal(err)
	}
	for _, st := range []string{"available", "immature", "spent", "invalidated"} {
		if !strings.Contains(def, "'"+st+"'") {
			t.Errorf("utxos_state_check %s lacks %s", def, st)
		}
	}
	if strings.Contains(def, "reserved") {
		t.Errorf("utxos_state_check %s still allows reserved", def)
	}

	// No table the models do not know (besides goose's own).
	var all []string
	if err := db.Raw(`SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_name <> 'goose_db_version'`).Scan(&all).Error; err != nil {
		t.Fatal(err)
	}
	slices.Sort(all)
	slices.Sort(tables)
	if !slices.Equal(all, tables) {
		t.Errorf("tables: got %v, models have %v", all, tables)
	}

	// Foreign keys (not expressed in the models): child -> parent, ON DELETE CASCADE.
	var fks []string
	if err := db.Raw(`SELECT conrelid::regclass::text || '->' || confrelid::regclass::text || ':' || confdeltype::text
		FROM pg_constraint WHERE contype = 'f' ORDER BY 1`).Scan(&fks).Error; err != nil {
		t.Fatal(err)
	}
	wantFKs := []string{"reservation_utxos->reservations:c", "reservations->pools:c", "transaction_addresses->transactions:c",
		"transactions->pools:c", "utxos->pools:c"}
	if !slices.Equal(fks, wantFKs) {
		t.Errorf("foreign keys: got %v, want %v", fks, wantFKs)
	}
}

// normPredicate writes an index condition the way the model and
// pg_get_expr can be compared: without casts, outer parentheses and spaces.
func normPredicate(p string) string {
	p = strings.ReplaceAll(p, "::text", "")
	p = strings.ReplaceAll(p, " ", "")
	for strings.HasPrefix(p, "(") && strings.HasSuffix(p, ")") {
		p = p[1 : len(p)-1]
	}
	return p
}

func deref(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}

func derefStr(p *string) any {
	if p == nil {
		return nil
	}
	return *p
}

// migrationStatus returns the schema version of the database at url.
func migrationStatus(t *testing.T, url string) int64 {
	t.Helper()
	cur, _, err := storage.MigrateStatus(testCtx(t), url)
	if err != nil {
		t.Fatalf("MigrateStatus: %v", err)
	}
	return cur
}

// Every migration's Down undoes its Up: a database taken down to nothing and
// up again has the models' schema.
func TestMigrateDownAndUpAgain(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	url := testenv.Postgres(t)
	if err := storage.MigrateUp(ctx, url); err != nil {
		t.Fatal(err)
	}
	if err := storage.MigrateDownTo(ctx, url, 0); err != nil {
		t.Fatalf("down to 0: %v", err)
	}
	if v := migrationStatus(t, url); v != 0 {
		t.Fatalf("after down to 0: version %d", v)
	}
	raw, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = raw.Close() }()
	var tables int
	if err := raw.QueryRowContext(ctx, `SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema()
		AND table_name <> 'goose_db_version'`).Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != 0 {
		t.Errorf("%d tables left after every Down", tables)
	}
	if err := storage.MigrateUp(ctx, url); err != nil {
		t.Fatalf("up again: %v", err)
	}
	s, err := storage.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	checkSchema(t, s)
}

// Migration 4 on a database with data of schema 3: reserved rows become
// available (held ones stay reserved, derived), the reservations' hashes
// become reservation_utxos rows, crawl cursors become index cursors, pools
// are synced, amounts are kept; Down takes it back to schema 3 (refusing
// amounts BIGINT cannot hold), and Up again works.
func TestMigration4KeepsData(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	url := testenv.Postgres(t)
	if err := storage.MigrateUpTo(ctx, url, 3); err != nil {
		t.Fatal(err)
	}
	raw, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = raw.Close() }()
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := raw.ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	u := func(i int) string { return hashOf(1, i) }
	now := time.Now().UTC()
	later := now.Add(time.Hour)
	exec(`INSERT INTO pools (id, asset, program, created_at, updated_at) VALUES (1, $1, $2, $3, $3), (2, $1, $4, $3, $3)`,
		assetA, programA, now, programB)
	exec(`SELECT setval('pools_id_seq', 2)`)
	for i, row := range []struct {
		state  string
		amount int64
	}{{"reserved", 10}, {"reserved", 11}, {"available", 12}, {"spent", 13}, {"invalidated", 14}, {"available", math.MaxInt64}} {
		exec(`INSERT INTO utxos (hash, pool_id, asset, amount, state, confirmed, created_tx, created_at, updated_at)
			VALUES ($1, 1, $2, $3, $4, true, $5, $6, $6)`, u(i), assetA, row.amount, row.state, txOf(1, i), now)
	}
	exec(`INSERT INTO utxos (hash, pool_id, asset, amount, state, confirmed, created_at, updated_at)
		VALUES ($1, 2, $2, 5, 'reserved', false, $3, $3)`, hashOf(2, 0), assetA, now)
	r1, r2, r3, r4 := strings.Repeat("1", 32), strings.Repeat("2", 32), strings.Repeat("3", 32), strings.Repeat("4", 32)
	for _, r := range []struct {
		id      string
		pool    int
		fence   int
		hashes  string
		state   string
		tx      string
		expires time.Time
	}{
		{r1, 1, 1, u(0), "held", "", later},                  // live: u(0) stays reserved
		{r2, 1, 2, u(1) + "," + u(2), "released", "", later}, // ended: u(1) was left reserved
		{r3, 1, 3, u(3), "spent", txOf(1, 33), later},
		{r4, 2, 1, hashOf(2, 0), "submitted", txOf(2, 1), later},
	} {
		exec(`INSERT INTO reservations (id, pool_id, fence, owner, hashes, state, tx_id, created_at, expires_at, updated_at)
			VALUES ($1, $2, $3, 'o', $4, $5, $6, $7, $8, $7)`, r.id, r.pool, r.fence, r.hashes, r.state, r.tx, now, r.expires)
	}
	exec(`INSERT INTO sync_cursors (pool_id, job, height, block_hash, epoch, updated_at) VALUES
		(1, 'crawl', 10, $1, 3, $2), (2, 'crawl', 8, $3, 3, $2), (1, 'utxo', 5, '', 1, $2)`, blockHash(1, 10), now, blockHash(1, 8))
	exec(`INSERT INTO crawled_blocks (pool_id, height, hash, previous_hash) VALUES (1, 10, $1, $2)`, blockHash(1, 10), blockHash(1, 9))
	exec(`INSERT INTO transactions (id, pool_id, tx_id, height, block_hash, block_time, status_fail, inputs, outputs, created_at)
		VALUES (1, 1, $1, 10, $2, $3, false, '[]', '[]', $3)`, txOf(1, 33), blockHash(1, 10), now)
	exec(`INSERT INTO transaction_addresses (transaction_id, address) VALUES (1, 'bm1qalice')`)
	exec(`INSERT INTO balances (address, asset, amount, tx_id, state, status_fail, created_at, updated_at)
		VALUES ('bm1qalice', $1, 7, 'tx', 'pending', false, $2, $2)`, assetA, now)

	if _, err := storage.Open(ctx, url); !errors.Is(err, storage.ErrNotMigrated) {
		t.Fatalf("Open at version 3: err = %v, want ErrNotMigrated", err)
	}
	if err := storage.MigrateUp(ctx, url); err != nil {
		t.Fatalf("MigrateUp from 3: %v", err)
	}
	s, err := storage.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	checkSchema(t, s)

	// After Up (and after Down and Up again): the migrated picture.
	checkMigrated := func(when string) {
		t.Helper()
		wantStates(t, when+": stored states", statesOf(t, s, u(0), u(1), u(2), u(3), u(4), u(5), hashOf(2, 0)), map[string]string{
			u(0): storage.StateAvailable, u(1): storage.StateAvailable, u(2): storage.StateAvailable, u(3): storage.StateSpent,
			u(4): storage.StateInvalidated, u(5): storage.StateAvailable, hashOf(2, 0): storage.StateAvailable})
		wantStates(t, when+": listed states", listedStates(t, s, 1), map[string]string{
			u(0): storage.StateReserved, u(1): storage.StateAvailable, u(2): storage.StateAvailable})
		if c := mustCounts(t, s, 1); c != (storage.Counts{Available: 3, Reserved: 1, Spent: 1, Invalidated: 1}) {
			t.Errorf("%s: pool 1 counts %+v", when, c)
		}
		if c := mustCounts(t, s, 2); c != (storage.Counts{Reserved: 1}) {
			t.Errorf("%s: pool 2 counts %+v", when, c)
		}
		if got := mustUTXO(t, s, u(5)); uint64(got.Amount) != math.MaxInt64 || got.Height != 0 || got.SpentHeight != 0 {
			t.Errorf("%s: utxo %+v", when, got)
		}
		var rows []string
		if err := s.DB().Raw(`SELECT reservation_id || ':' || hash || ':' || pool_id FROM reservation_utxos ORDER BY 1`).Scan(&rows).Error; err != nil {
			t.Fatal(err)
		}
		want := []string{r1 + ":" + u(0) + ":1", r2 + ":" + u(1) + ":1", r2 + ":" + u(2) + ":1", r3 + ":" + u(3) + ":1",
			r4 + ":" + hashOf(2, 0) + ":2"}
		if !slices.Equal(rows, want) {
			t.Errorf("%s: reservation_utxos = %v, want %v", when, rows, want)
		}
		cs := mustCursors(t, s)
		if c := cs[1]; c.Height != 10 || c.BlockHash != blockHash(1, 10) || c.Epoch != 3 {
			t.Errorf("%s: index cursor of pool 1: %+v", when, c)
		}
		if c := cs[2]; c.Height != 8 || c.BlockHash != blockHash(1, 8) {
			t.Errorf("%s: index cursor of pool 2: %+v", when, c)
		}
		if c, err := s.Cursor(ctx, 1, "utxo"); err != nil || c.Height != 5 {
			t.Errorf("%s: the lister's cursor: %+v, %v", when, c, err)
		}
		if _, err := s.Cursor(ctx, 1, "crawl"); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("%s: a crawl cursor is left: %v", when, err)
		}
		pools, err := s.ListPools(ctx)
		if err != nil || len(pools) != 2 {
			t.Fatalf("%s: pools %+v, %v", when, pools, err)
		}
		for _, p := range pools {
			if !p.Unconfirmed || p.FromHeight != 0 || p.SyncedAt == nil {
				t.Errorf("%s: pool %+v; want unconfirmed, from height 0 and synced (it ran before)", when, p)
			}
		}
		if got, err := s.ListTransactions(ctx, 1, "bm1qalice", 0, 10); err != nil || len(got) != 1 || got[0].TxID != txOf(1, 33) {
			t.Errorf("%s: history %+v, %v", when, got, err)
		}
		if got := mustReservation(t, s, r1); got.State != storage.ResHeld || got.IdempotencyKey != "" || got.Fingerprint != "" {
			t.Errorf("%s: reservation %+v", when, got)
		}
		if g, err := s.Genesis(ctx); err != nil || g != "" {
			t.Errorf("%s: genesis %q, %v; the chain index starts empty", when, g, err)
		}
	}
	checkMigrated("after up")

	// Down refuses an amount BIGINT cannot hold, and changes nothing.
	exec(`INSERT INTO utxos (hash, pool_id, asset, amount, state, confirmed, created_at, updated_at)
		VALUES ($1, 1, $2, 18446744073709551615, 'immature', true, $3, $3)`, u(9), assetA, now)
	if err := storage.MigrateDownTo(ctx, url, 3); err == nil {
		t.Fatal("down to 3 with an amount above 2^63-1 succeeded")
	}
	if v := migrationStatus(t, url); v != 4 {
		t.Fatalf("a failed down left version %d", v)
	}
	if got := mustUTXO(t, s, u(9)); uint64(got.Amount) != math.MaxUint64 || got.State != storage.StateImmature {
		t.Errorf("a failed down changed %+v", got)
	}
	exec(`UPDATE utxos SET amount = 15 WHERE hash = $1`, u(9))
	if err := storage.MigrateDownTo(ctx, url, 3); err != nil {
		t.Fatalf("down to 3: %v", err)
	}
	var (
		amountType, crawlJob string
		tables               []string
	)
	if err := raw.QueryRowContext(ctx, `SELECT udt_name FROM information_schema.columns WHERE table_name = 'utxos'
		AND column_name = 'amount' AND table_schema = current_schema()`).Scan(&amountType); err != nil {
		t.Fatal(err)
	}
	if amountType != "int8" {
		t.Errorf("amount after down: %s, want int8", amountType)
	}
	if err := raw.QueryRowContext(ctx, `SELECT job FROM sync_cursors WHERE pool_id = 1 AND height = 10`).Scan(&crawlJob); err != nil ||
		crawlJob != "crawl" {
		t.Errorf("cursor job after down: %q, %v; want crawl", crawlJob, err)
	}
	rows, err := raw.QueryContext(ctx, `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, name)
	}
	_ = rows.Close()
	if !slices.Contains(tables, "crawled_blocks") || slices.Contains(tables, "reservation_utxos") || slices.Contains(tables, "chain_blocks") {
		t.Errorf("tables after down: %v", tables)
	}
	var state string
	if err := raw.QueryRowContext(ctx, `SELECT state FROM utxos WHERE hash = $1`, u(9)).Scan(&state); err != nil || state != "available" {
		t.Errorf("an immature utxo after down: %q, %v; want available (schema 3 has no immature)", state, err)
	}
	exec(`UPDATE utxos SET state = 'reserved' WHERE hash = $1`, u(0)) // schema 3 stores reserved again
	exec(`DELETE FROM utxos WHERE hash = $1`, u(9))

	if err := storage.MigrateUp(ctx, url); err != nil {
		t.Fatalf("up again: %v", err)
	}
	checkSchema(t, s)
	checkMigrated("after down and up")

	// The migrated journal works: the chain spends the held UTXO.
	spend(t, s, 1, txOf(1, 50), 0, u(0))
	settled, err := s.Settle(ctx, 1, []string{u(0)})
	if err != nil || len(settled) != 1 || settled[0].ID != r1 || settled[0].State != storage.ResSpent || settled[0].TxID != txOf(1, 50) {
		t.Errorf("Settle on migrated data = %+v, %v", settled, err)
	}
}
