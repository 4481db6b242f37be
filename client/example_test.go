package client_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/bufferd/bufferd/client"
)

func ExampleClient_Reserve() {
	// A real bufferd API on loopback with a pool of three UTXOs (100, 200
	// and 300 neu), on the test Redis and PostgreSQL.
	srv, err := startServer(100, 200, 300)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()

	c := client.New(srv.URL, client.WithOwner("example"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// The smallest UTXO worth at least 150.
	res, err := c.Reserve(ctx, client.ReserveRequest{Pool: srv.Pool.ID, Amount: 150, TTL: time.Minute})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(res.State, res.Owner, res.Total())

	// Nothing free is worth 1000.
	_, err = c.Reserve(ctx, client.ReserveRequest{Pool: srv.Pool.ID, Amount: 1000})
	fmt.Println(errors.Is(err, client.ErrNoUTXOAvailable))

	released, err := c.Release(ctx, res.ID)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(released.State)
	// Releasing again is safe: it answers the final state.
	got, err := c.Release(ctx, res.ID)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(got.State, got.UpdatedAt.Equal(released.UpdatedAt))
	// Output:
	// held example 200
	// true
	// released
	// released true
}

func ExampleClient_Hold() {
	srv, err := startServer(100, 200, 300)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()

	c := client.New(srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// Hold the smallest UTXO with a 1 s TTL: the lease extends it every 1/3 s.
	lease, err := c.Hold(ctx, client.ReserveRequest{Pool: srv.Pool.ID, Count: 1, TTL: time.Second})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer lease.Release(context.Background()) // does nothing once submitted

	// Build the transaction under lease.Context(): it is cancelled the
	// moment the hold may be lost.
	select {
	case <-lease.Context().Done():
		fmt.Println("lost:", lease.Err())
		return
	case <-time.After(1500 * time.Millisecond):
		fmt.Println("still held after 1.5 s")
	}

	txID := strings.Repeat("ab", 32)
	res, err := lease.Submit(ctx, txID)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(res.State, res.UTXOs[0].Amount)
	fmt.Println(lease.Err())
	// Output:
	// still held after 1.5 s
	// submitted 100
	// client: lease submitted
}
