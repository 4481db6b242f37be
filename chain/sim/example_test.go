package sim_test

import (
	"fmt"
	"strings"

	"github.com/bufferd/bufferd/chain/sim"
)

func ExampleChain() {
	c := sim.New()
	asset := strings.Repeat("ee", 32)
	program := "0014" + strings.Repeat("ab", 20)

	// Fund the contract with two UTXOs (mined at once in block 1, after its coinbase).
	funded, _ := c.AddUTXOs(asset, program, []uint64{500, 300})

	// A user spends the first one, locking the change back into the contract.
	txID, change, _ := c.Spend(funded[:1], []sim.Output{{Asset: asset, Program: program, Amount: 450}}, false)
	fmt.Println("pending view:", len(c.UTXOs(asset, program, true)), "utxos, change is", change[0] == c.UTXOs(asset, program, true)[1].Hash)
	fmt.Println("confirmed view:", len(c.UTXOs(asset, program, false)), "utxos")

	tip, _ := c.Mine(1)
	tx, _ := c.Tx(txID)
	blk, _ := c.Block(tip.Height)
	fmt.Println("tip height:", tip.Height, "tx confirmed:", tx.Confirmed(), "at", tx.Height, "after the coinbase:", blk.Txs[0].Coinbase())
	for _, u := range c.UTXOs(asset, program, false) {
		fmt.Println(u.Amount, u.Confirmed)
	}
	// Output:
	// pending view: 2 utxos, change is true
	// confirmed view: 2 utxos
	// tip height: 2 tx confirmed: true at 2 after the coinbase: true
	// 300 true
	// 450 true
}
