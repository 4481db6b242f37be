package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/bufferd/bufferd/storage"
)

func newMigrateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Manage the database schema (safe to run from several replicas at once)",
	}
	up := &cobra.Command{
		Use:   "up",
		Short: "Create the database if it is missing and the role may, then apply every pending migration",
		Args:  cobra.NoArgs,
	}
	cu := loadConfig(up, "database-url")
	up.RunE = func(cmd *cobra.Command, _ []string) error {
		log, err := newLogger(cu)
		if err != nil {
			return err
		}
		ctx, stop := signalContext()
		defer stop()
		created, err := storage.EnsureDatabase(ctx, cu.DatabaseURL)
		if err != nil {
			return err
		}
		if created {
			log.Info("database created")
		}
		if err := storage.MigrateUp(ctx, cu.DatabaseURL); err != nil {
			return err
		}
		cur, latest, err := storage.MigrateStatus(ctx, cu.DatabaseURL)
		if err != nil {
			return err
		}
		log.Info("schema migrated", "version", cur, "latest", latest)
		return nil
	}
	status := &cobra.Command{
		Use:   "status",
		Short: "Print the current and the latest schema version",
		Args:  cobra.NoArgs,
	}
	cs := loadConfig(status, "database-url")
	status.RunE = func(cmd *cobra.Command, _ []string) error {
		ctx, stop := signalContext()
		defer stop()
		cur, latest, err := storage.MigrateStatus(ctx, cs.DatabaseURL)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(cmd.OutOrStdout(), "current %d, latest %d\n", cur, latest)
		return err
	}
	cmd.AddCommand(up, status)
	return cmd
}
