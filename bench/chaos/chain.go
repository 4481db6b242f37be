package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"time"
)

// chainActor makes the simulated chain's events: new UTXOs, spends by
// others (of confirmed outputs, of pending outputs, double spends of outputs
// a pending transaction already spends), blocks, reorganisations and
// transactions dropped from the mempool.
type chainActor struct {
	d       *deployment
	rec     *recorder
	foreign string // a program outside every pool
}

func (ch *chainActor) run(ctx context.Context, steps []step) {
	for _, s := range steps {
		if !pause(ctx, s.Delay) {
			return
		}
		ch.rec.step(s, ch.do(ctx, s))
	}
}

func (ch *chainActor) do(ctx context.Context, s step) string {
	switch s.Kind {
	case evFund:
		return ch.fund(ctx, s)
	case evForeignSpend:
		return ch.spendOne(ctx, s, func(unconf, _ []listed) []listed { return unconf })
	case evChildSpend:
		return ch.spendOne(ctx, s, minus)
	case evDoubleSpend:
		return ch.spendOne(ctx, s, func(unconf, conf []listed) []listed { return minus(conf, unconf) })
	case evMine:
		return ch.mine(ctx, s)
	case evReorg:
		return ch.reorg(ctx, s)
	case evDrop:
		return ch.drop(ctx, s)
	}
	return "unknown event"
}

// listed is a UTXO as the simulator's blockcenter listing shows it.
type listed struct {
	Hash   string `json:"hash"`
	Amount uint64 `json:"amount"`
}

// list returns the pool's UTXOs in creation order: with unconfirmed, the
// confirmed ones no pending transaction spends plus the outputs of pending
// transactions no pending transaction spends (what bufferd must offer);
// without, the confirmed ones.
func list(ctx context.Context, d *deployment, pool poolInfo, unconfirmed bool) ([]listed, error) {
	const limit = 1000
	var out []listed
	for start := 0; ; start += limit {
		var page struct {
			Code   int    `json:"code"`
			Msg    string `json:"msg"`
			Result struct {
				Data []listed `json:"data"`
			} `json:"result"`
		}
		body := map[string]any{"filter": map[string]any{"asset": pool.Asset, "script": pool.Program, "unconfirmed": unconfirmed}}
		url := fmt.Sprintf("%s/api/v1/btm/q/list-utxos?start=%d&limit=%d", d.chain, start, limit)
		if err := d.web.call(ctx, http.MethodPost, url, body).decode(&page); err != nil {
			return nil, err
		}
		if page.Code != 200 {
			return nil, fmt.Errorf("chaos: list-utxos: %s", page.Msg)
		}
		out = append(out, page.Result.Data...)
		if len(page.Result.Data) < limit {
			return out, nil
		}
	}
}

// minus returns the entries of a whose hash b lacks, in a's order.
func minus(a, b []listed) []listed {
	in := make(map[string]bool, len(b))
	for _, x := range b {
		in[x.Hash] = true
	}
	return slices.DeleteFunc(slices.Clone(a), func(x listed) bool { return in[x.Hash] })
}

func (ch *chainActor) fund(ctx context.Context, s step) string {
	pool := ch.d.pools[s.Pool]
	amounts := make([]uint64, s.N)
	for i := range amounts {
		amounts[i] = s.Amount * uint64(i+1)
	}
	a := ch.d.web.call(ctx, http.MethodPost, ch.d.chain+"/sim/utxos",
		map[string]any{"asset": pool.Asset, "program": pool.Program, "amounts": amounts})
	return fmt.Sprintf("pool %d %v -> %s", pool.ID, amounts, a)
}

// spendOne spends one UTXO of the pool, picked among the candidates that
// choose returns from the pool's listings with and without unconfirmed
// outputs; a child of a pending output goes back to the pool half the time.
func (ch *chainActor) spendOne(ctx context.Context, s step, choose func(unconf, conf []listed) []listed) string {
	pool := ch.d.pools[s.Pool]
	unconf, err1 := list(ctx, ch.d, pool, true)
	conf, err2 := list(ctx, ch.d, pool, false)
	if err1 != nil || err2 != nil {
		return fmt.Sprintf("pool %d: listing failed: %v %v", pool.ID, err1, err2)
	}
	cands := choose(unconf, conf)
	if len(cands) == 0 {
		return fmt.Sprintf("pool %d: no candidate", pool.ID)
	}
	u := cands[s.Pick%uint64(len(cands))]
	program := ch.foreign
	if s.Kind == evChildSpend && s.Pick/7%2 == 0 {
		program = pool.Program
	}
	ch.rec.cutHashes([]string{u.Hash}, time.Now())
	var spent struct {
		TxID    string   `json:"tx_id"`
		Outputs []string `json:"outputs"`
	}
	a := ch.d.web.call(ctx, http.MethodPost, ch.d.chain+"/sim/spend", map[string]any{"hashes": []string{u.Hash}, "fail": s.Fail,
		"outputs": []map[string]any{{"asset": pool.Asset, "program": program, "amount": u.Amount}}})
	if err := a.decode(&spent); err != nil {
		return fmt.Sprintf("pool %d: spend %s -> %s", pool.ID, short1(u.Hash), a)
	}
	to := "away"
	if program == pool.Program {
		to = "back to the pool as " + short1(spent.Outputs[0])
	}
	return fmt.Sprintf("pool %d: tx %s (fail %t) spends %s %s", pool.ID, short1(spent.TxID), s.Fail, short1(u.Hash), to)
}

// touchedByMempool returns every UTXO of the pools whose fate rests on the
// mempool: confirmed ones a pending transaction spends, and pending outputs.
func (ch *chainActor) touchedByMempool(ctx context.Context) ([]string, error) {
	var out []string
	for _, pool := range ch.d.pools {
		unconf, err := list(ctx, ch.d, pool, true)
		if err != nil {
			return nil, err
		}
		conf, err := list(ctx, ch.d, pool, false)
		if err != nil {
			return nil, err
		}
		for _, u := range append(minus(unconf, conf), minus(conf, unconf)...) {
			out = append(out, u.Hash)
		}
	}
	return out, nil
}

// touchedByBlocks returns the outputs and spent inputs of the last n
// blocks: what a reorganisation of depth n rolls back.
func (ch *chainActor) touchedByBlocks(ctx context.Context, n int) ([]string, error) {
	var tip struct {
		Height uint64 `json:"height"`
	}
	if err := ch.d.web.call(ctx, http.MethodGet, ch.d.chain+"/status", nil).decode(&tip); err != nil {
		return nil, err
	}
	var out []string
	for h := tip.Height; h > 0 && h+uint64(n) > tip.Height; h-- {
		var blk struct {
			Status string `json:"status"`
			Data   struct {
				Transactions []struct {
					Inputs []struct {
						SpentOutputID string `json:"spent_output_id"`
					} `json:"inputs"`
					Outputs []struct {
						ID string `json:"id"`
					} `json:"outputs"`
				} `json:"transactions"`
			} `json:"data"`
		}
		if err := ch.d.web.call(ctx, http.MethodPost, ch.d.chain+"/get-block", map[string]uint64{"block_height": h}).decode(&blk); err != nil {
			return nil, err
		}
		if blk.Status != "success" {
			return nil, fmt.Errorf("chaos: get-block %d: %s", h, blk.Status)
		}
		for _, tx := range blk.Data.Transactions {
			for _, in := range tx.Inputs {
				if in.SpentOutputID != "" {
					out = append(out, in.SpentOutputID)
				}
			}
			for _, o := range tx.Outputs {
				out = append(out, o.ID)
			}
		}
	}
	return out, nil
}

// cutMempool marks the grants whose UTXOs the mempool decides as no longer
// certain; when the listing fails, all of them.
func (ch *chainActor) cutMempool(ctx context.Context) {
	at := time.Now()
	hashes, err := ch.touchedByMempool(ctx)
	if err != nil {
		ch.rec.cutAll(at)
		return
	}
	ch.rec.cutHashes(hashes, at)
}

func (ch *chainActor) mine(ctx context.Context, s step) string {
	ch.cutMempool(ctx)
	a := ch.d.web.call(ctx, http.MethodPost, ch.d.chain+"/sim/mine", map[string]int{"blocks": s.N})
	return fmt.Sprintf("%d block(s) -> %s %s", s.N, a, tipOf(a))
}

func (ch *chainActor) reorg(ctx context.Context, s step) string {
	at := time.Now()
	hashes, err := ch.touchedByMempool(ctx)
	if err == nil {
		var blocks []string
		blocks, err = ch.touchedByBlocks(ctx, s.N)
		hashes = append(hashes, blocks...)
	}
	if err != nil {
		ch.rec.cutAll(at)
	} else {
		ch.rec.cutHashes(hashes, at)
	}
	a := ch.d.web.call(ctx, http.MethodPost, ch.d.chain+"/sim/reorg", map[string]any{"depth": s.N, "drop": s.Fail})
	return fmt.Sprintf("depth %d (drop %t) -> %s %s", s.N, s.Fail, a, tipOf(a))
}

func (ch *chainActor) drop(ctx context.Context, s step) string {
	var mem struct {
		Data struct {
			TxIDs []string `json:"tx_ids"`
		} `json:"data"`
	}
	if err := ch.d.web.call(ctx, http.MethodPost, ch.d.chain+"/list-unconfirmed-transactions", map[string]any{}).decode(&mem); err != nil {
		return "mempool listing failed: " + err.Error()
	}
	if len(mem.Data.TxIDs) == 0 {
		return "mempool empty"
	}
	id := mem.Data.TxIDs[s.Pick%uint64(len(mem.Data.TxIDs))]
	ch.cutMempool(ctx)
	a := ch.d.web.call(ctx, http.MethodPost, ch.d.chain+"/sim/drop", map[string]string{"tx_id": id})
	return fmt.Sprintf("tx %s -> %s", short1(id), a)
}

// tipOf is the tip a mine or reorg answered.
func tipOf(a answer) string {
	var tip struct {
		Height uint64 `json:"height"`
		Hash   string `json:"hash"`
	}
	if json.Unmarshal(a.Body, &tip) != nil {
		return ""
	}
	return fmt.Sprintf("tip %d %s", tip.Height, short1(tip.Hash))
}
