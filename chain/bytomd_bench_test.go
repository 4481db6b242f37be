package chain_test

import (
	"context"
	"fmt"
	"net"
	"testing"

	"github.com/bufferd/bufferd/chain"
	"github.com/bufferd/bufferd/chain/sim"
)

// BenchmarkBytomdGetBlock is the client's cost of reading one block of 100
// pool transactions from a node over loopback HTTP: the request, the body
// and its decoding (the simulated node's answer is encoded beforehand).
func BenchmarkBytomdGetBlock(b *testing.B) {
	ch := sim.New()
	const txs = 100
	program := "0014" + fmt.Sprintf("%040x", 7)
	amounts := make([]uint64, txs)
	for i := range amounts {
		amounts[i] = 1_000_000 + uint64(i)
	}
	hashes, err := ch.AddUTXOs(chain.BTMAsset, program, amounts)
	if err != nil {
		b.Fatal(err)
	}
	for i, h := range hashes {
		if _, _, err := ch.Spend([]string{h}, []sim.Output{{Asset: chain.BTMAsset, Program: program, Amount: amounts[i] - 1}}, false); err != nil {
			b.Fatal(err)
		}
	}
	tip, err := ch.Mine(1)
	if err != nil {
		b.Fatal(err)
	}
	ch.PrepareBlockAnswers()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	app := ch.Handler()
	go func() { _ = app.Listener(ln) }()
	b.Cleanup(func() { _ = app.Shutdown(); _ = ln.Close() })
	node := chain.NewBytomd("http://" + ln.Addr().String())
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		blk, err := node.GetBlock(ctx, tip.Height)
		if err != nil {
			b.Fatal(err)
		}
		if len(blk.Txs) != txs+1 {
			b.Fatalf("block has %d transactions", len(blk.Txs))
		}
	}
}
