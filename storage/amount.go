package storage

import (
	"database/sql/driver"
	"fmt"
	"strconv"

	"gorm.io/gorm"
	"gorm.io/gorm/schema"
)

// Amount is an amount of an asset as stored: a uint64, exact up to 2^64-1,
// kept as NUMERIC(20,0) in PostgreSQL and as decimal text in SQLite (whose
// integers stop at 2^63-1), and never passed through a float.
type Amount uint64

// GormDataType is the column kind gorm parses it as.
func (Amount) GormDataType() string { return "numeric" }

// GormDBDataType is its column type on each dialect.
func (Amount) GormDBDataType(db *gorm.DB, _ *schema.Field) string {
	if db.Dialector.Name() == dialectSQLite {
		return "text"
	}
	return "numeric(20,0)"
}

// Value writes the amount as a decimal string.
func (a Amount) Value() (driver.Value, error) { return strconv.FormatUint(uint64(a), 10), nil }

// Scan reads an amount from a decimal string or an integer.
func (a *Amount) Scan(v any) error {
	var s string
	switch x := v.(type) {
	case int64:
		if x < 0 {
			return fmt.Errorf("storage: negative amount %d", x)
		}
		*a = Amount(x)
		return nil
	case string:
		s = x
	case []byte:
		s = string(x)
	default:
		return fmt.Errorf("storage: cannot read an amount from %T", v)
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return fmt.Errorf("storage: bad amount %q: %w", s, err)
	}
	*a = Amount(n)
	return nil
}
