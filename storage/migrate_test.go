package storage_test

import (
	"database/sql"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/bufferd/bufferd/storage"
	"github.com/bufferd/bufferd/testenv"
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
	defer s.Close()
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
	defer raw.Close()
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
}

// TestSchemaMatchesModels checks that the goose migrations create exactly the
// columns (type, nullability, default), indexes and check constraints the gorm
// models describe, plus the foreign keys the models cannot express.
func TestSchemaMatchesModels(t *testing.T) {
	t.Parallel()
	s := openPostgres(t)
	ctx := testCtx(t)
	db := s.DB().WithContext(ctx)

	wantType := map[schema.DataType]string{
		schema.Int: "int8", schema.String: "text", schema.Bool: "bool", schema.Time: "timestamptz",
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
			ColumnName    string
			UdtName       string
			IsNullable    string
			ColumnDefault *string
		}
		err = db.Raw(`SELECT column_name, udt_name, is_nullable, column_default FROM information_schema.columns
			WHERE table_schema = current_schema() AND table_name = ?`, sch.Table).Scan(&cols).Error
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
			if want := wantType[f.DataType]; c.UdtName != want {
				t.Errorf("%s.%s: type %s, want %s", sch.Table, f.DBName, c.UdtName, want)
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
					t.Errorf("%s.%s: default %v, model says %s", sch.Table, f.DBName, c.ColumnDefault, def)
				}
			case c.ColumnDefault != nil:
				t.Errorf("%s.%s: default %s, model has none", sch.Table, f.DBName, *c.ColumnDefault)
			}
		}
		for name := range got {
			t.Errorf("%s.%s: column not in the model", sch.Table, name)
		}

		// Indexes, including the primary key.
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
		}
		var idxs []struct {
			Name string
			Uniq bool
			Cols string
		}
		err = db.Raw(`SELECT i.relname AS name, ix.indisunique AS uniq,
				array_to_string(ARRAY(SELECT a.attname FROM unnest(ix.indkey) WITH ORDINALITY AS k(attnum, ord)
					JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum ORDER BY k.ord), ',') AS cols
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
	wantFKs := []string{"crawled_blocks->pools:c", "reservations->pools:c", "transaction_addresses->transactions:c",
		"transactions->pools:c", "utxos->pools:c"}
	if !slices.Equal(fks, wantFKs) {
		t.Errorf("foreign keys: got %v, want %v", fks, wantFKs)
	}
}
