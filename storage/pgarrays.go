package storage

import (
	"database/sql"
	"time"

	"gorm.io/gorm"
)

// The journal's INSERTs on PostgreSQL take their rows as arrays (unnest):
// their text does not depend on how many rows a batch has, so pgx prepares
// each once per connection and PostgreSQL parses it once, where a multi-row
// VALUES list is parsed and planned anew for every batch size. They run on
// the transaction's connection directly: gorm would expand a slice argument
// into a list. Statements that look rows up in a growing table keep VALUES
// lists instead: a prepared statement's generic plan, made while the table
// was small, would scan it (measured: 5 ms a batch instead of 0.1 ms).

// columns gathers the rows of a statement column by column; column i holds
// texts, ints or times, whichever it is given.
type columns struct {
	n     int
	texts map[int][]string
	ints  map[int][]int64
	times map[int][]time.Time
	order int // number of columns
}

func newColumns(rows int) *columns {
	return &columns{n: rows, texts: map[int][]string{}, ints: map[int][]int64{}, times: map[int][]time.Time{}}
}

func (c *columns) seen(i int) {
	c.order = max(c.order, i+1)
}

func (c *columns) text(i int, v string) *columns {
	c.seen(i)
	if c.texts[i] == nil {
		c.texts[i] = make([]string, 0, c.n)
	}
	c.texts[i] = append(c.texts[i], v)
	return c
}

func (c *columns) int(i int, v int64) *columns {
	c.seen(i)
	if c.ints[i] == nil {
		c.ints[i] = make([]int64, 0, c.n)
	}
	c.ints[i] = append(c.ints[i], v)
	return c
}

func (c *columns) time(i int, v time.Time) *columns {
	c.seen(i)
	if c.times[i] == nil {
		c.times[i] = make([]time.Time, 0, c.n)
	}
	c.times[i] = append(c.times[i], v)
	return c
}

// args returns the columns in order, each a slice pgx sends as an array.
func (c *columns) args() []any {
	out := make([]any, c.order)
	for i := range out {
		switch {
		case c.texts[i] != nil:
			out[i] = c.texts[i]
		case c.ints[i] != nil:
			out[i] = c.ints[i]
		default:
			out[i] = c.times[i]
		}
	}
	return out
}

// pgExec runs a statement on tx's connection.
func pgExec(tx *gorm.DB, q string, args ...any) error {
	_, err := tx.Statement.ConnPool.ExecContext(tx.Statement.Context, q, args...)
	return err
}

// pgScanRows runs a query on tx's connection and hands each row to scan.
func pgScanRows(tx *gorm.DB, q string, scan func(*sql.Rows) error, args ...any) error {
	rows, err := tx.Statement.ConnPool.QueryContext(tx.Statement.Context, q, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// pgScan runs a query of one text column on tx's connection into out.
func pgScan(tx *gorm.DB, out *[]string, q string, args ...any) error {
	return pgScanRows(tx, q, func(r *sql.Rows) error {
		var v string
		if err := r.Scan(&v); err != nil {
			return err
		}
		*out = append(*out, v)
		return nil
	}, args...)
}
