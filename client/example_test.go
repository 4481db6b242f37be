package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/bufferd/bufferd/client"
)

// The examples talk to `bufferd dev` (the whole service in one process, with
// a simulated node and the demo pool 1 of 24 UTXOs worth 0.5 to 12 BTM) at
// its default address; against a deployment only the URL changes. They are
// compiled here, not run: this module has no server to run them against.
// The root module's clientcheck package runs the same flows, under the same
// names, against devstack and checks their output.

// apiURL is where `bufferd dev` listens.
const apiURL = "http://127.0.0.1:3100"

const btm = 100_000_000 // neu in a BTM

// signAndSend stands for the DApp's wallet: it builds a transaction spending
// the UTXOs, signs it, sends it to the node and returns its id.
func signAndSend(ctx context.Context, utxos []client.UTXO) (string, error) {
	return "", errors.New("the DApp's wallet goes here")
}

// Reserve a UTXO worth at least 1 BTM, look at it, and release it.
func Example() {
	ctx := context.Background()
	c := client.New(apiURL, client.WithOwner("alice"))
	res, err := c.Reserve(ctx, client.ReserveRequest{Pool: 1, Amount: 1 * btm, TTL: time.Minute})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.State, res.Owner, res.Total())

	got, err := c.Get(ctx, res.ID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(got.State, got.UTXOs[0].Hash == res.UTXOs[0].Hash)

	released, err := c.Release(ctx, res.ID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(released.State)
}

// Each request mode: the smallest UTXO worth an amount, a count of the
// smallest, several UTXOs that cover an amount together, exact hashes.
func ExampleClient_Reserve() {
	ctx := context.Background()
	c := client.New(apiURL)
	const pool = 1

	one, err := c.Reserve(ctx, client.ReserveRequest{Pool: pool, Amount: 120_000_000})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("amount:", one.Total())

	two, err := c.Reserve(ctx, client.ReserveRequest{Pool: pool, Count: 2})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("count:", two.UTXOs[0].Amount, two.UTXOs[1].Amount)

	// No single UTXO is worth 20 BTM; with Combine the fewest that cover it.
	_, err = c.Reserve(ctx, client.ReserveRequest{Pool: pool, Amount: 20 * btm})
	fmt.Println("20 BTM alone:", errors.Is(err, client.ErrNoUTXOAvailable))
	combined, err := c.Reserve(ctx, client.ReserveRequest{Pool: pool, Amount: 20 * btm, Combine: true})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("combined:", len(combined.UTXOs), combined.Total() >= 20*btm)

	// A UTXO another reservation holds cannot be reserved by hash.
	_, err = c.Reserve(ctx, client.ReserveRequest{Pool: pool, Hashes: []string{one.UTXOs[0].Hash}})
	fmt.Println("held hash:", errors.Is(err, client.ErrUTXOLocked))
}

// Hold keeps a short reservation alive while the transaction is built, and
// Submit hands it to the chain: the reservation then holds its UTXO until the
// transaction is mined (spent) or fails.
func ExampleClient_Hold() {
	ctx := context.Background()
	c := client.New(apiURL)

	// A 30 s TTL, extended every third of it by the lease.
	lease, err := c.Hold(ctx, client.ReserveRequest{Pool: 1, Amount: 2 * btm, TTL: 30 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = lease.Release(context.Background()) }() // does nothing once submitted

	// Build the transaction under lease.Context(): it ends the moment the
	// hold may be lost.
	txID, err := signAndSend(lease.Context(), lease.Reservation().UTXOs)
	if err != nil {
		fmt.Println("not sent:", errors.Join(err, lease.Err())) // lease.Err(): why the lease ended, if it did
		return
	}
	res, err := lease.Submit(ctx, txID)
	if err != nil {
		fmt.Println("not submitted:", err)
		return
	}
	fmt.Println(res.State, res.Total())
	fmt.Println(lease.Err())
}

// The whole life of a reservation on the chain: reserved, submitted, mined,
// then recorded with its transaction, whose change output is offered again.
func ExampleClient_ListTransactions() {
	ctx := context.Background()
	c := client.New(apiURL)

	res, err := c.Reserve(ctx, client.ReserveRequest{Pool: 1, Amount: 3 * btm})
	if err != nil {
		log.Fatal(err)
	}
	txID, err := signAndSend(ctx, res.UTXOs)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := c.Submit(ctx, res.ID, txID); err != nil {
		log.Fatal(err)
	}
	// Once a block has the transaction, the service sees it within a sync
	// interval: the reservation ends spent and the pool's history records it.
	var page *client.TransactionPage
	for {
		if res, err = c.Get(ctx, res.ID); err != nil {
			log.Fatal(err)
		}
		if page, err = c.ListTransactions(ctx, client.ListTransactionsRequest{Pool: 1}); err != nil {
			log.Fatal(err)
		}
		if res.State == client.StateSpent && len(page.Transactions) > 0 {
			break
		}
		time.Sleep(time.Second)
	}
	fmt.Println(res.State)
	tx := page.Transactions[0]
	fmt.Println(tx.TxID == txID, tx.Inputs[0].Amount, tx.Outputs[0].Amount)
}

// Page through a pool's UTXOs; AllUTXOs fetches the pages as the loop goes.
func ExampleClient_AllUTXOs() {
	ctx := context.Background()
	c := client.New(apiURL)

	var n int
	var sum uint64
	for u, err := range c.AllUTXOs(ctx, client.ListUTXOsRequest{Pool: 1, State: client.UTXOAvailable, Limit: 10}) {
		if err != nil {
			log.Fatal(err)
		}
		n++
		sum += u.Amount
	}
	fmt.Println(n, "available UTXOs worth", sum/btm, "BTM")

	detail, err := c.GetPool(ctx, 1)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(detail.Counts.Available, "available,", detail.Counts.Reserved, "reserved")
}

// Register a pool: an admin route, which needs the admin token.
func ExampleClient_CreatePool() {
	ctx := context.Background()
	req := client.CreatePoolRequest{
		Asset:   "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", // BTM
		Program: "00204e2e5b4e2c33b5c7e3bbc8e5e2b1b0c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8",
	}
	_, _, err := client.New(apiURL).CreatePool(ctx, req)
	fmt.Println("without the token:", errors.Is(err, client.ErrUnauthorized))

	admin := client.New(apiURL, client.WithAdminToken("s3cret"))
	pool, created, err := admin.CreatePool(ctx, req)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(pool.ID, created)
	// Registering it again finds the same pool.
	again, created, err := admin.CreatePool(ctx, req)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(again.ID, created)
}

// The chain as the service last saw it, and each pool's place in it.
func ExampleClient_Status() {
	ctx := context.Background()
	st, err := client.New(apiURL).Status(ctx)
	if err != nil {
		log.Fatal(err)
	}
	if st.Chain != nil {
		fmt.Println("tip:", st.Chain.TipHeight)
	}
	for _, p := range st.Pools {
		if index := p.Sync["index"]; index.BlocksBehind != nil {
			fmt.Println("pool", p.ID, "at", index.Height, "blocks behind:", *index.BlocksBehind)
		}
	}
}

// List the live reservations of every pool, as an operator would (admin
// token), like bitcoind's listlockunspent.
func ExampleClient_ListReservations() {
	ctx := context.Background()
	c := client.New(apiURL, client.WithAdminToken("s3cret"))
	for r, err := range c.AllReservations(ctx, client.ListReservationsRequest{State: client.StateLive, Owner: "alice", Limit: 100}) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(r.ID, r.Owner, r.State, r.Total())
	}
}
