package handlers

import (
	"context"
	"errors"
	"fmt"

	"github.com/gofiber/fiber/v2"

	"github.com/bufferd/bufferd/lockmgr"
	"github.com/bufferd/bufferd/metrics"
	"github.com/bufferd/bufferd/storage"
)

// Legacy envelope codes.
const (
	codeOK   = 200
	codeFail = 300
)

// Legacy messages for outcomes that are not input mistakes.
const (
	msgLocked       = "utxo is locked"
	msgNotFound     = "utxo not found"
	msgRebuilding   = "service is restoring its state, retry in a second"
	msgUnauthorized = "unauthorized"
	// msgUnavailable answers a failure of Redis or PostgreSQL, like v1's 503
	// unavailable: the request did nothing and may be sent again.
	msgUnavailable = "service unavailable, retry later"
	msgNoRoute     = "route not found"
)

// legacyContentType is what the original (gin) sent.
const legacyContentType = "application/json; charset=utf-8"

// legacyEnvelope is the original's response; Result is left out of errors.
type legacyEnvelope struct {
	Code   int    `json:"code"`
	Msg    string `json:"msg"`
	Result any    `json:"result,omitempty"`
}

// legacyResult is the result of a non-paginated success.
type legacyResult struct {
	Data any `json:"data"`
}

// legacyPage is the result of a paginated success. The original built it as a
// Go map, so its keys came out sorted; the field order here keeps those bytes.
type legacyPage struct {
	Links legacyLinks `json:"_links"`
	Data  any         `json:"data"`
	Limit int         `json:"limit"`
	Start int         `json:"start"`
}

type legacyLinks struct {
	Next string `json:"next,omitempty"`
}

// legacyUTXO is one entry of list-utxos.
type legacyUTXO struct {
	Hash   string `json:"hash"`
	Asset  string `json:"asset"`
	Amount uint64 `json:"amount"`
}

// legacyBalance is one entry of list-balances.
type legacyBalance struct {
	Address  string `json:"address"`
	Asset    string `json:"asset"`
	Amount   int64  `json:"amount"`
	CreateAt int64  `json:"create_at"`
}

func legacyJSON(c *fiber.Ctx, env legacyEnvelope) error {
	return c.Status(fiber.StatusOK).JSON(env, legacyContentType)
}

// legacyOKData answers {"code":200,"msg":"","result":{"data":data}}.
func legacyOKData(c *fiber.Ctx, data any) error {
	return legacyJSON(c, legacyEnvelope{Code: codeOK, Result: legacyResult{Data: data}})
}

// legacyFailMsg answers {"code":300,"msg":msg}, HTTP 200 like the original.
func legacyFailMsg(c *fiber.Ctx, msg string) error {
	return legacyJSON(c, legacyEnvelope{Code: codeFail, Msg: msg})
}

// legacyNoRoute answers a request for no legacy route (an unknown path under
// /dapp, or a method other than the route's): HTTP 404 as the original (gin,
// which told neither apart) answered, in the legacy envelope.
func legacyNoRoute(c *fiber.Ctx) error {
	return c.Status(fiber.StatusNotFound).JSON(legacyEnvelope{Code: codeFail, Msg: msgNoRoute}, legacyContentType)
}

// legacyUnavailable logs err, a failure of Redis or PostgreSQL, and answers
// code 300 msgUnavailable.
func (s *server) legacyUnavailable(c *fiber.Ctx, err error) error {
	s.log.Error("request failed", "request_id", requestID(c), "method", c.Method(), "path", c.Path(), "err", err)
	return legacyFailMsg(c, msgUnavailable)
}

// legacyBad answers an input error in the legacy envelope, and any other error as internal.
func (s *server) legacyBad(c *fiber.Ctx, err error) error {
	var in *inputError
	if errors.As(err, &in) {
		return legacyFailMsg(c, in.msg)
	}
	return s.internal(c, err)
}

// listUTXOs is POST /dapp/list-utxos?start=&limit=: the free UTXOs of one pool,
// never a held one. Without start and limit (the frontend's call) it is a
// sample spread over the amounts, different for each caller (see
// Config.LegacyListSample). When nothing is free it shortens the oldest
// legacy hold (the original's documented behaviour) and answers [].
func (s *server) listUTXOs(c *fiber.Ctx) error {
	start, err := parseStart(c.Query("start"))
	if err != nil {
		return s.legacyBad(c, err)
	}
	limit, err := parseLimit(c.Query("limit"), false)
	if err != nil {
		return s.legacyBad(c, err)
	}
	q, err := decodeListUTXOs(c.BodyRaw())
	if err != nil {
		return s.legacyBad(c, err)
	}
	ctx, cancel := reqContext(c)
	defer cancel()

	data := []legacyUTXO{}
	pool, err := s.cachedPoolOf(ctx, q.Asset, q.Program)
	switch {
	case errors.Is(err, storage.ErrNotFound):
	case err != nil:
		return s.legacyUnavailable(c, fmt.Errorf("find pool: %w", err))
	default:
		var items []lockmgr.Item
		if s.sample > 0 && c.Query("start") == "" && c.Query("limit") == "" {
			// The frontend's call (it does not page): spread the callers.
			items, err = s.locks.SampleAvailable(ctx, pool.ID, q.Desc, limit, s.sample)
		} else {
			items, err = s.locks.ListAvailable(ctx, pool.ID, q.Desc, start, limit)
		}
		if errors.Is(err, lockmgr.ErrRebuilding) {
			return legacyFailMsg(c, msgRebuilding)
		}
		if err != nil {
			return s.legacyUnavailable(c, fmt.Errorf("list available: %w", err))
		}
		hashes := make([]string, len(items))
		for i, it := range items {
			data = append(data, legacyUTXO{Hash: it.Hash, Asset: pool.Asset, Amount: it.Amount})
			hashes[i] = it.Hash
		}
		s.utxoPools.put(pool.ID, hashes)
		if len(items) == 0 && start == 0 {
			if _, err := s.locks.ShortenOldestLegacy(ctx, pool.ID); err != nil {
				s.log.Warn("shorten oldest legacy hold", "request_id", requestID(c), "pool", pool.ID, "err", err)
			}
		}
	}

	page := legacyPage{Data: data, Limit: limit, Start: start}
	if len(data) == limit {
		page.Links.Next = fmt.Sprintf("%s?limit=%d&start=%d", c.Path(), limit, start+limit)
	}
	return legacyJSON(c, legacyEnvelope{Code: codeOK, Result: page})
}

// updateUTXO is POST /dapp/update-utxo {"hash"}: reserve one UTXO for the legacy
// owner. Exactly one of any number of concurrent callers gets it.
func (s *server) updateUTXO(c *fiber.Ctx) error {
	hash, err := decodeUpdateUTXO(c.BodyRaw())
	if err != nil {
		return s.legacyBad(c, err)
	}
	ctx, cancel := reqContext(c)
	defer cancel()

	// A UTXO list-utxos listed here has its pool remembered; any other is
	// looked up, and so is one whose remembered pool does not have it.
	pool, cached := s.utxoPools.get(hash)
	var rerr error
	if cached {
		rerr = s.legacyReserve(ctx, pool, hash)
	}
	if !cached || errors.Is(rerr, lockmgr.ErrUnknownUTXO) || errors.Is(rerr, lockmgr.ErrRebuilding) {
		utxos, err := s.store.GetUTXOs(ctx, []string{hash})
		if err != nil {
			return s.legacyUnavailable(c, fmt.Errorf("get utxo: %w", err))
		}
		var u *storage.UTXO
		for i := range utxos {
			if utxos[i].Hash == hash {
				u = &utxos[i]
			}
		}
		if u == nil || u.State == storage.StateSpent || u.State == storage.StateInvalidated {
			return legacyFailMsg(c, msgNotFound)
		}
		rerr = s.legacyReserve(ctx, u.PoolID, hash)
	}
	if rerr == nil {
		metrics.Outcome(metrics.OutcomeGranted)
	} else {
		countLockError(rerr)
	}
	switch err := rerr; {
	case err == nil:
		return legacyOKData(c, nil)
	case errors.Is(err, lockmgr.ErrLocked), errors.Is(err, lockmgr.ErrNoUTXOAvailable):
		return legacyFailMsg(c, msgLocked)
	case errors.Is(err, lockmgr.ErrUnknownUTXO):
		return legacyFailMsg(c, msgNotFound)
	case errors.Is(err, lockmgr.ErrRebuilding):
		return legacyFailMsg(c, msgRebuilding)
	default:
		return s.legacyUnavailable(c, fmt.Errorf("reserve %s: %w", hash, err))
	}
}

// legacyReserve holds one UTXO of pool for the legacy owner.
func (s *server) legacyReserve(ctx context.Context, pool int64, hash string) error {
	_, err := s.locks.Reserve(ctx, lockmgr.Request{
		PoolID: pool,
		Hashes: []string{hash},
		Owner:  lockmgr.LegacyOwner,
		TTL:    lockmgr.DefaultTTL,
	})
	return err
}

// listBalances is POST /dapp/list-balances {"address","asset"}: the confirmed,
// successful balance rows of one address and asset, newest first.
func (s *server) listBalances(c *fiber.Ctx) error {
	req, err := decodeListBalances(c.BodyRaw())
	if err != nil {
		return s.legacyBad(c, err)
	}
	ctx, cancel := reqContext(c)
	defer cancel()

	rows, err := s.store.ListBalances(ctx, req.Address, req.Asset)
	if err != nil {
		return s.legacyUnavailable(c, fmt.Errorf("list balances: %w", err))
	}
	data := []legacyBalance{}
	for _, b := range rows {
		// Like the original, only rows the chain confirmed as successful count.
		if b.State != storage.BalanceConfirmed || b.StatusFail {
			continue
		}
		data = append(data, legacyBalance{Address: b.Address, Asset: b.Asset, Amount: b.Amount, CreateAt: b.CreatedAt.Unix()})
	}
	return legacyOKData(c, data)
}

// updateBase is POST /dapp/update-base {"asset","program"} (admin): register a
// pool; registering it again changes nothing.
func (s *server) updateBase(c *fiber.Ctx) error {
	if !s.isAdmin(c) {
		return legacyFailMsg(c, msgUnauthorized)
	}
	req, err := decodeAssetProgram(c.BodyRaw())
	if err != nil {
		return s.legacyBad(c, err)
	}
	ctx, cancel := reqContext(c)
	defer cancel()

	pool, created, err := s.store.EnsurePool(ctx, req.Asset, req.Program)
	if err != nil {
		return s.legacyUnavailable(c, fmt.Errorf("ensure pool: %w", err))
	}
	if created {
		s.log.Info("pool registered", "request_id", requestID(c), "pool", pool.ID, "asset", pool.Asset)
	}
	return legacyOKData(c, nil)
}

// updateBalance is POST /dapp/update-balance {"address","asset","amount","tx_id"}:
// record a balance change as pending; the syncer confirms or rejects it from
// the chain, and only confirmed rows are ever listed.
func (s *server) updateBalance(c *fiber.Ctx) error {
	req, err := decodeUpdateBalance(c.BodyRaw())
	if err != nil {
		return s.legacyBad(c, err)
	}
	ctx, cancel := reqContext(c)
	defer cancel()

	err = s.store.AddBalance(ctx, storage.Balance{
		Address: req.Address,
		Asset:   req.Asset,
		Amount:  req.Amount,
		TxID:    req.TxID,
		State:   storage.BalancePending,
	})
	if err != nil {
		return s.legacyUnavailable(c, fmt.Errorf("add balance: %w", err))
	}
	return legacyOKData(c, nil)
}
