package clientcheck_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/bufferd/bufferd/chain/sim"
	"github.com/bufferd/bufferd/client"
	"github.com/bufferd/bufferd/devstack"
)

// These are the client's examples (client/example_test.go, compiled there
// without a server), under the same names, run against devstack with their
// output checked: the whole of bufferd in this process (embedded Redis and
// SQLite, a simulated Bytom node, the demo pool of 24 UTXOs worth 0.5 to 12
// BTM), so they need nothing installed. Against a real deployment, only the
// URL given to client.New changes, and the DApp's wallet replaces spend.
// TestExamplesRunHere keeps the two lists of names the same.

const btm = 100_000_000 // neu in a BTM

// Reserve a UTXO worth at least 1 BTM, look at it, and release it.
func Example() {
	ctx := context.Background()
	srv, err := devstack.Start(ctx, devstack.Options{})
	if err != nil {
		panic(err)
	}
	defer closeDev(srv)

	c := client.New(srv.APIURL, client.WithOwner("alice"))
	res, err := c.Reserve(ctx, client.ReserveRequest{Pool: srv.Pool.ID, Amount: 1 * btm, TTL: time.Minute})
	if err != nil {
		panic(err)
	}
	fmt.Println(res.State, res.Owner, res.Total())

	got, err := c.Get(ctx, res.ID)
	if err != nil {
		panic(err)
	}
	fmt.Println(got.State, got.UTXOs[0].Hash == res.UTXOs[0].Hash)

	released, err := c.Release(ctx, res.ID)
	if err != nil {
		panic(err)
	}
	fmt.Println(released.State)
	// Output:
	// held alice 100000000
	// held true
	// released
}

// Each request mode: the smallest UTXO worth an amount, a count of the
// smallest, several UTXOs that cover an amount together, exact hashes.
func ExampleClient_Reserve() {
	ctx := context.Background()
	srv, err := devstack.Start(ctx, devstack.Options{})
	if err != nil {
		panic(err)
	}
	defer closeDev(srv)
	c := client.New(srv.APIURL)
	pool := srv.Pool.ID

	one, err := c.Reserve(ctx, client.ReserveRequest{Pool: pool, Amount: 120_000_000})
	if err != nil {
		panic(err)
	}
	fmt.Println("amount:", one.Total())

	two, err := c.Reserve(ctx, client.ReserveRequest{Pool: pool, Count: 2})
	if err != nil {
		panic(err)
	}
	fmt.Println("count:", two.UTXOs[0].Amount, two.UTXOs[1].Amount)

	// No single UTXO is worth 20 BTM; with Combine the fewest that cover it.
	_, err = c.Reserve(ctx, client.ReserveRequest{Pool: pool, Amount: 20 * btm})
	fmt.Println("20 BTM alone:", errors.Is(err, client.ErrNoUTXOAvailable))
	combined, err := c.Reserve(ctx, client.ReserveRequest{Pool: pool, Amount: 20 * btm, Combine: true})
	if err != nil {
		panic(err)
	}
	fmt.Println("combined:", len(combined.UTXOs), combined.Total() >= 20*btm)

	// A UTXO another reservation holds cannot be reserved by hash.
	_, err = c.Reserve(ctx, client.ReserveRequest{Pool: pool, Hashes: []string{one.UTXOs[0].Hash}})
	fmt.Println("held hash:", errors.Is(err, client.ErrUTXOLocked))
	// Output:
	// amount: 150000000
	// count: 50000000 100000000
	// 20 BTM alone: true
	// combined: 2 true
	// held hash: true
}

// Hold keeps a short reservation alive while the transaction is built, and
// Submit hands it to the chain: the reservation then holds its UTXO until the
// transaction is mined (spent) or fails.
func ExampleClient_Hold() {
	ctx := context.Background()
	srv, err := devstack.Start(ctx, devstack.Options{})
	if err != nil {
		panic(err)
	}
	defer closeDev(srv)
	c := client.New(srv.APIURL)

	// A 1 s TTL, extended every third of it by the lease.
	lease, err := c.Hold(ctx, client.ReserveRequest{Pool: srv.Pool.ID, Amount: 2 * btm, TTL: time.Second})
	if err != nil {
		panic(err)
	}
	defer func() { _ = lease.Release(context.Background()) }() // does nothing once submitted

	// Build the transaction under lease.Context(): it ends the moment the
	// hold may be lost. Here the simulated node plays the wallet.
	select {
	case <-lease.Context().Done():
		panic(fmt.Sprint("lost: ", lease.Err()))
	case <-time.After(1500 * time.Millisecond):
		fmt.Println("still held after 1.5 s")
	}
	txID := spend(srv, lease.Reservation())

	res, err := lease.Submit(ctx, txID)
	if err != nil {
		panic(err)
	}
	fmt.Println(res.State, res.Total())
	fmt.Println(lease.Err())
	// Output:
	// still held after 1.5 s
	// submitted 200000000
	// client: lease submitted
}

// The whole life of a reservation on the chain: reserved, submitted, mined,
// then recorded with its transaction, whose change output is offered again.
func ExampleClient_ListTransactions() {
	ctx := context.Background()
	srv, err := devstack.Start(ctx, devstack.Options{SyncInterval: 100 * time.Millisecond})
	if err != nil {
		panic(err)
	}
	defer closeDev(srv)
	c := client.New(srv.APIURL)

	res, err := c.Reserve(ctx, client.ReserveRequest{Pool: srv.Pool.ID, Amount: 3 * btm})
	if err != nil {
		panic(err)
	}
	txID := spend(srv, *res)
	if _, err := c.Submit(ctx, res.ID, txID); err != nil {
		panic(err)
	}
	if _, err := srv.Chain.Mine(1); err != nil {
		panic(err)
	}
	// The chain index sees the block within a sync interval: the
	// reservation ends spent and the pool's history records the transaction.
	var page *client.TransactionPage
	for {
		if res, err = c.Get(ctx, res.ID); err != nil {
			panic(err)
		}
		if page, err = c.ListTransactions(ctx, client.ListTransactionsRequest{Pool: srv.Pool.ID}); err != nil {
			panic(err)
		}
		if res.State == client.StateSpent && len(page.Transactions) > 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Println(res.State)
	tx := page.Transactions[0]
	fmt.Println(tx.TxID == txID, tx.Inputs[0].Amount, tx.Outputs[0].Amount)
	// Output:
	// spent
	// true 300000000 299000000
}

// Page through a pool's UTXOs; AllUTXOs fetches the pages as the loop goes.
func ExampleClient_AllUTXOs() {
	ctx := context.Background()
	srv, err := devstack.Start(ctx, devstack.Options{})
	if err != nil {
		panic(err)
	}
	defer closeDev(srv)
	c := client.New(srv.APIURL)

	if _, err := c.Reserve(ctx, client.ReserveRequest{Pool: srv.Pool.ID, Count: 3}); err != nil {
		panic(err)
	}
	var n int
	var sum uint64
	for u, err := range c.AllUTXOs(ctx, client.ListUTXOsRequest{Pool: srv.Pool.ID, State: client.UTXOAvailable, Limit: 10}) {
		if err != nil {
			panic(err)
		}
		n++
		sum += u.Amount
	}
	fmt.Println(n, "available UTXOs worth", sum/btm, "BTM")

	detail, err := c.GetPool(ctx, srv.Pool.ID)
	if err != nil {
		panic(err)
	}
	fmt.Println(detail.Counts.Available, "available,", detail.Counts.Reserved, "reserved")
	// Output:
	// 21 available UTXOs worth 147 BTM
	// 21 available, 3 reserved
}

// Register a pool: an admin route, which needs the admin token.
func ExampleClient_CreatePool() {
	ctx := context.Background()
	srv, err := devstack.Start(ctx, devstack.Options{AdminToken: "s3cret"})
	if err != nil {
		panic(err)
	}
	defer closeDev(srv)

	req := client.CreatePoolRequest{
		Asset:   devstack.DemoAsset,
		Program: "00204e2e5b4e2c33b5c7e3bbc8e5e2b1b0c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8",
	}
	_, _, err = client.New(srv.APIURL).CreatePool(ctx, req)
	fmt.Println("without the token:", errors.Is(err, client.ErrUnauthorized))

	admin := client.New(srv.APIURL, client.WithAdminToken("s3cret"))
	pool, created, err := admin.CreatePool(ctx, req)
	if err != nil {
		panic(err)
	}
	fmt.Println(pool.ID, created)
	again, created, err := admin.CreatePool(ctx, req)
	if err != nil {
		panic(err)
	}
	fmt.Println(again.ID, created)
	// Output:
	// without the token: true
	// 2 true
	// 2 false
}

// The chain as the service last saw it, and each pool's place in it.
func ExampleClient_Status() {
	ctx := context.Background()
	srv, err := devstack.Start(ctx, devstack.Options{SyncInterval: 100 * time.Millisecond})
	if err != nil {
		panic(err)
	}
	defer closeDev(srv)
	c := client.New(srv.APIURL)

	// Two new blocks: the status follows the chain within a sync interval.
	if _, err := srv.Chain.Mine(2); err != nil {
		panic(err)
	}
	for {
		st, err := c.Status(ctx)
		if err != nil {
			panic(err)
		}
		if st.Chain != nil && st.Chain.TipHeight == 3 && len(st.Pools) == 1 {
			index := st.Pools[0].Sync["index"]
			if index.BlocksBehind != nil && *index.BlocksBehind == 0 {
				// bufferd dev runs its jobs in one process, without an election.
				fmt.Println("leader elected:", st.Leader != nil)
				fmt.Println("tip:", st.Chain.TipHeight, "pool", st.Pools[0].ID, "at", index.Height)
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Output:
	// leader elected: false
	// tip: 3 pool 1 at 3
}

// spend plays the DApp's wallet: it sends a transaction spending the
// reservation's UTXOs back to the pool's contract, less a fee of 0.01 BTM,
// to the simulated node, and returns its id.
func spend(srv *devstack.Stack, r client.Reservation) string {
	hashes := make([]string, len(r.UTXOs))
	for i, u := range r.UTXOs {
		hashes[i] = u.Hash
	}
	out := sim.Output{Asset: devstack.DemoAsset, Program: devstack.DemoProgram, Amount: r.Total() - btm/100}
	txID, _, err := srv.Chain.Spend(hashes, []sim.Output{out}, false)
	if err != nil {
		panic(err)
	}
	return txID
}

// List the live reservations of every pool, as an operator would (admin
// token), like bitcoind's listlockunspent.
func ExampleClient_ListReservations() {
	ctx := context.Background()
	srv, err := devstack.Start(ctx, devstack.Options{AdminToken: "s3cret"})
	if err != nil {
		panic(err)
	}
	defer closeDev(srv)
	c := client.New(srv.APIURL, client.WithAdminToken("s3cret"))

	for _, owner := range []string{"alice", "bob", "alice"} {
		if _, err := c.Reserve(ctx, client.ReserveRequest{Pool: srv.Pool.ID, Count: 1, Owner: owner}); err != nil {
			panic(err)
		}
	}
	for r, err := range c.AllReservations(ctx, client.ListReservationsRequest{State: client.StateLive, Owner: "alice", Limit: 1}) {
		if err != nil {
			panic(err)
		}
		fmt.Println(r.Owner, r.State, r.UTXOs[0].Amount)
	}
	// Output:
	// alice held 150000000
	// alice held 50000000
}

// closeDev stops an example's service; an example that cannot is broken.
// The client's pooled connections do not hold the drain up (devstack closes
// idle ones, including one net/http dialed and never used), so it ends well
// within the grace; a drain that outlasts the grace on a loaded machine is
// not the example's failure.
func closeDev(srv *devstack.Stack) {
	if err := srv.Shutdown(10 * time.Second); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		panic(err)
	}
}
