package storage

import (
	"context"
	"database/sql"
	"errors"

	"gorm.io/gorm"
)

// pgConn is what a gorm transaction runs its statements on: with it, hot
// bulk statements pass whole columns as PostgreSQL arrays (one parameter per
// column, unnested in SQL) instead of one parameter per value, which gorm
// would expand and rewrite one by one.
type pgConn interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// errNoConn means a gorm handle has no connection to run raw statements on.
var errNoConn = errors.New("storage: no sql connection under the gorm handle")

// bulk returns the connection of tx for array-parameter statements, or nil
// on SQLite (which has no arrays: the callers then use multi-row VALUES).
func bulk(tx *gorm.DB) (pgConn, error) {
	if tx.Dialector.Name() != dialectPostgres {
		return nil, nil
	}
	c, ok := tx.Statement.ConnPool.(pgConn)
	if !ok {
		return nil, errNoConn
	}
	return c, nil
}
