package storage

import (
	"database/sql"
	"errors"
	"strings"
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
	n    int   // rows
	cols []any // column i: a []string, []int64 or []time.Time
}

func newColumns(rows int) *columns { return &columns{n: rows} }

// appendColumn appends v to column i of c.
func appendColumn[T any](c *columns, i int, v T) *columns {
	for len(c.cols) <= i {
		c.cols = append(c.cols, nil)
	}
	col, _ := c.cols[i].([]T)
	if col == nil {
		col = make([]T, 0, c.n)
	}
	c.cols[i] = append(col, v)
	return c
}

func (c *columns) text(i int, v string) *columns    { return appendColumn(c, i, v) }
func (c *columns) int(i int, v int64) *columns      { return appendColumn(c, i, v) }
func (c *columns) time(i int, v time.Time) *columns { return appendColumn(c, i, v) }

// args returns the columns in order, each a slice pgx sends as an array.
func (c *columns) args() []any { return c.cols }

// pgExec runs a statement on tx's connection.
func pgExec(tx *gorm.DB, q string, args ...any) error {
	_, err := tx.Statement.ConnPool.ExecContext(tx.Statement.Context, q, args...)
	return err
}

// pgScanRows runs a query on tx's connection and hands each row to scan.
func pgScanRows(tx *gorm.DB, q string, scan func(*sql.Rows) error, args ...any) (err error) {
	rows, err := tx.Statement.ConnPool.QueryContext(tx.Statement.Context, q, args...)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, rows.Close()) }()
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

// insertRows returns the statement "head VALUES (?, ...), ... tail" for
// rows, and its arguments: each row's values as row gives them.
func insertRows[T any](head string, rows []T, tail string, row func(T) []any) (string, []any) {
	var sb strings.Builder
	sb.WriteString(head)
	sb.WriteString(" VALUES ")
	var args []any
	for i, r := range rows {
		vals := row(r)
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteByte('(')
		sb.WriteString(strings.Repeat("?,", len(vals)-1))
		sb.WriteString("?)")
		args = append(args, vals...)
	}
	sb.WriteByte(' ')
	sb.WriteString(tail)
	return sb.String(), args
}
