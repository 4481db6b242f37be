package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/bufferd/bufferd/storage"
)

func newPoolCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pool",
		Short: "Manage pools directly in the database (like POST /v1/pools, without the API)",
	}
	add := &cobra.Command{
		Use:   "add",
		Short: "Register the pool of an asset and a contract program (idempotent)",
		Args:  cobra.NoArgs,
	}
	asset := add.Flags().String("asset", "", "asset id (64 hex characters)")
	program := add.Flags().String("program", "", "control program of the contract (hex)")
	fromHeight := add.Flags().Int64("from-height", 0, "with a bytomd node: the block the chain index starts the pool from (0: BUFFERD_INDEX_START_DEPTH blocks below the tip)")
	unconfirmed := add.Flags().Bool("unconfirmed", true, "offer outputs of pending transactions (false: wait for their block)")
	c := loadConfig(add, "database-url")
	add.RunE = func(cmd *cobra.Command, _ []string) (err error) {
		if err := checkPoolArgs(*asset, *program); err != nil {
			return &usageError{err: err}
		}
		if *fromHeight < 0 {
			return &usageError{err: errors.New("--from-height must not be negative")}
		}
		ctx, stop := signalContext()
		defer stop()
		store, err := storage.Open(ctx, c.DatabaseURL)
		if err != nil {
			return err
		}
		defer func() { err = errors.Join(err, store.Close()) }()
		p, created, err := store.EnsurePool(ctx, *asset, *program,
			storage.PoolOptions{FromHeight: *fromHeight, Unconfirmed: unconfirmed})
		if err != nil {
			return err
		}
		what := "exists"
		if created {
			what = "created"
		}
		_, err = fmt.Fprintf(cmd.OutOrStdout(), "pool %d %s: asset %s program %s\n", p.ID, what, p.Asset, p.Program)
		return err
	}
	cmd.AddCommand(add)
	return cmd
}

// checkPoolArgs applies the API's rules: a 64-character hex asset id and a
// non-empty, even-length hex program.
func checkPoolArgs(asset, program string) error {
	if len(asset) != 64 || !isHexString(asset) {
		return errors.New("--asset must be 64 hex characters")
	}
	if program == "" || len(program)%2 != 0 || len(program) > 20000 || !isHexString(program) {
		return errors.New("--program must be an even number of hex characters (at most 20000)")
	}
	return nil
}

func isHexString(s string) bool {
	return strings.Trim(strings.ToLower(s), "0123456789abcdef") == ""
}
