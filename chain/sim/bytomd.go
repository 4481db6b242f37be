package sim

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/gofiber/fiber/v2"
)

// What every simulated block header says about proof of work, as solonet's do.
const (
	blockBits       uint64 = 2305843009214532812
	blockDifficulty        = "20"
)

// Error answers of bytomd v1.1.
const (
	btmDetailNoBlock   = "can't find block in given height"
	btmDetailNoHash    = "can't find block in given hash"
	btmDetailNoHeader  = "can't find block header in given height"
	btmDetailNotInPool = "transaction are not existed in the mempool"
	btmBadRequestHint  = ": check request parameters for missing and/or incorrect values"
)

// btmHandlerError is a failure of a served route: HTTP 200.
type btmHandlerError struct {
	Status      string `json:"status"`
	Code        string `json:"code"`
	Msg         string `json:"msg"`
	ErrorDetail string `json:"error_detail"`
}

// btmRequestError is a request the node could not decode (HTTP 400) or a
// route it does not know (HTTP 500).
type btmRequestError struct {
	Code      string `json:"code"`
	Msg       string `json:"msg"`
	Status    string `json:"status"`
	Detail    string `json:"detail"`
	Temporary bool   `json:"temporary"`
}

func btmOK(ctx *fiber.Ctx, data any) error {
	return ctx.JSON(btmSuccess(data))
}

// btmSuccess is the node's envelope of a handler's answer.
func btmSuccess(data any) fiber.Map {
	return fiber.Map{"status": "success", "data": data}
}

// btmFail answers a handler error the node reports as BTM000.
func btmFail(ctx *fiber.Ctx, detail string) error {
	return ctx.JSON(btmHandlerError{Status: "fail", Code: "BTM000", Msg: "Bytom API Error", ErrorDetail: detail})
}

// btmBadRequest answers a body the node could not decode.
func btmBadRequest(ctx *fiber.Ctx, err error) error {
	return ctx.Status(http.StatusBadRequest).JSON(btmRequestError{Code: "BTM002", Msg: "Invalid request body",
		Status: "fail", Detail: err.Error() + btmBadRequestHint})
}

// btmUnknownRoute answers every route the simulator does not serve.
func btmUnknownRoute(ctx *fiber.Ctx) error {
	return ctx.Status(http.StatusInternalServerError).JSON(btmRequestError{Code: "BTM000", Msg: "Bytom API Error",
		Status: "fail", Detail: "not Found", Temporary: true})
}

// hexBytes decodes like bytomd's chainjson.HexBytes: a hex string, any case.
type hexBytes []byte

func (h *hexBytes) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	d, err := hex.DecodeString(s)
	if err != nil {
		return err
	}
	*h = d
	return nil
}

type btmInput struct {
	Type             string   `json:"type"`
	AssetID          string   `json:"asset_id"`
	AssetDefinition  struct{} `json:"asset_definition"`
	Amount           uint64   `json:"amount"`
	ControlProgram   string   `json:"control_program,omitempty"`
	Address          string   `json:"address,omitempty"`
	SpentOutputID    string   `json:"spent_output_id,omitempty"`
	IssuanceProgram  string   `json:"issuance_program,omitempty"`
	Arbitrary        string   `json:"arbitrary,omitempty"`
	InputID          string   `json:"input_id"`
	WitnessArguments []string `json:"witness_arguments"`
	SignData         string   `json:"sign_data"`
}

type btmOutput struct {
	Type            string   `json:"type"`
	ID              string   `json:"id"`
	Position        int      `json:"position"`
	AssetID         string   `json:"asset_id"`
	AssetDefinition struct{} `json:"asset_definition"`
	Amount          uint64   `json:"amount"`
	ControlProgram  string   `json:"control_program"`
	Address         string   `json:"address,omitempty"`
}

type btmTx struct {
	ID         string      `json:"id"`
	Version    int         `json:"version"`
	Size       int         `json:"size"`
	TimeRange  int         `json:"time_range"`
	Inputs     []btmInput  `json:"inputs"`
	Outputs    []btmOutput `json:"outputs"`
	StatusFail bool        `json:"status_fail"`
	MuxID      string      `json:"mux_id"`
}

type btmBlock struct {
	Hash                  string  `json:"hash"`
	Size                  int     `json:"size"`
	Version               int     `json:"version"`
	Height                uint64  `json:"height"`
	PreviousBlockHash     string  `json:"previous_block_hash"`
	Timestamp             int64   `json:"timestamp"`
	Nonce                 uint64  `json:"nonce"`
	Bits                  uint64  `json:"bits"`
	Difficulty            string  `json:"difficulty"`
	TransactionMerkleRoot string  `json:"transaction_merkle_root"`
	TransactionStatusHash string  `json:"transaction_status_hash"`
	Transactions          []btmTx `json:"transactions"`
}

func toBtmTx(v txView) btmTx {
	x := btmTx{ID: v.id, Version: 1, Size: v.size(), StatusFail: v.fail, MuxID: muxID(v.id),
		Inputs: []btmInput{}, Outputs: []btmOutput{}}
	for i, in := range v.inputViews() {
		x.Inputs = append(x.Inputs, toBtmInput(v.id, i, in))
	}
	for _, u := range v.outputs {
		x.Outputs = append(x.Outputs, btmOutput{Type: "control", ID: u.hash, Position: u.pos, AssetID: u.asset,
			Amount: u.amount, ControlProgram: u.program, Address: u.address})
	}
	return x
}

// toBtmInput shows the i-th input of transaction txID as bytomd does: a
// spend has its control program (and an address and witness only for P2W
// programs), an issue its issuance program, a coinbase its arbitrary data.
func toBtmInput(txID string, i int, in inputView) btmInput {
	id := hashOf("input", txID, strconv.Itoa(i))
	x := btmInput{Type: in.kind, AssetID: in.asset, Amount: in.amount, InputID: id, SignData: hashOf("sign", id)}
	switch in.kind {
	case "coinbase":
		x.Arbitrary, x.SignData = in.data, zeroHash
	case "issue":
		x.IssuanceProgram = in.data
		x.WitnessArguments = []string{signature(id)}
	default:
		u := in.spent
		x.ControlProgram, x.Address, x.SpentOutputID = u.program, u.address, u.hash
		if isP2W(u.program) {
			x.WitnessArguments = []string{signature(id), hashOf("pubkey", u.program)}
		}
	}
	return x
}

// signature is a made-up 64-byte signature, in hex.
func signature(inputID string) string { return hashOf("sig", inputID) + hashOf("sig2", inputID) }

func toBtmBlock(v blockView) btmBlock {
	b := btmBlock{Hash: v.hash, Size: 80, Version: 1, Height: v.height, PreviousBlockHash: v.prev,
		Timestamp: unix(v.time), Nonce: v.nonce(), Bits: blockBits, Difficulty: blockDifficulty,
		TransactionMerkleRoot: v.merkleRoot(), TransactionStatusHash: v.statusHash(),
		Transactions: make([]btmTx, len(v.txs))}
	for i, t := range v.txs {
		b.Transactions[i] = toBtmTx(t)
		b.Size += t.size()
	}
	return b
}

// nonce is a made-up nonce, derived from the block hash.
func (v blockView) nonce() uint64 {
	n, _ := strconv.ParseUint(v.hash[:4], 16, 64)
	return n
}

func (v blockView) merkleRoot() string {
	parts := []string{"merkle"}
	for _, t := range v.txs {
		parts = append(parts, t.id)
	}
	return hashOf(parts...)
}

func (v blockView) statusHash() string {
	parts := []string{"status"}
	for _, t := range v.txs {
		parts = append(parts, strconv.FormatBool(t.fail))
	}
	return hashOf(parts...)
}

// header is a made-up serialized block header, in hex.
func (v blockView) header() string {
	b := []byte{1}
	b = binary.AppendUvarint(b, v.height)
	b = appendHex(b, v.prev)
	b = binary.AppendUvarint(b, uint64(unix(v.time)))
	b = appendHex(b, v.merkleRoot())
	b = appendHex(b, v.statusHash())
	b = binary.AppendUvarint(b, v.nonce())
	b = binary.AppendUvarint(b, blockBits)
	return hex.EncodeToString(b)
}

func appendHex(b []byte, s string) []byte {
	d, _ := hex.DecodeString(s)
	return append(b, d...)
}

// blockReq is the body of /get-block and /get-block-header: a 32-byte
// block_hash selects by hash, anything else by block_height.
type blockReq struct {
	BlockHeight uint64   `json:"block_height"`
	BlockHash   hexBytes `json:"block_hash"`
}

func (r blockReq) hash() string {
	if len(r.BlockHash) != 32 {
		return ""
	}
	return hex.EncodeToString(r.BlockHash)
}

// requestedBlock finds the block r asks for.
func (c *Chain) requestedBlock(r blockReq) (blockView, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.blockLocked(r.BlockHeight, r.hash())
}

// notFound is the error detail when the block does not exist; byHeight is
// the one for a block asked by height.
func (r blockReq) notFound(byHeight string) string {
	if r.hash() != "" {
		return btmDetailNoHash
	}
	return byHeight
}

func (c *Chain) btmBlockCount(ctx *fiber.Ctx) error {
	return btmOK(ctx, fiber.Map{"block_count": c.Tip().Height})
}

func (c *Chain) btmBlockHash(ctx *fiber.Ctx) error {
	return btmOK(ctx, fiber.Map{"block_hash": c.Tip().BlockHash})
}

func (c *Chain) btmGetBlock(ctx *fiber.Ctx) error {
	var req blockReq
	if err := decodeLenient(ctx, &req); err != nil {
		return btmBadRequest(ctx, err)
	}
	body, ok := c.blockAnswer(req.BlockHeight, req.hash())
	if !ok {
		return btmFail(ctx, req.notFound(btmDetailNoBlock))
	}
	ctx.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return ctx.Send(body)
}

// blockAnswer is the body of /get-block's answer for a block (by hash when
// hash is not empty, else by height), encoded once, as a node reads it from
// its store; false when there is no such block.
func (c *Chain) blockAnswer(height uint64, hash string) ([]byte, bool) {
	c.mu.Lock()
	b := c.findBlockLocked(height, hash)
	if b == nil {
		c.mu.Unlock()
		return nil, false
	}
	if body := b.answer; body != nil {
		c.mu.Unlock()
		return body, true
	}
	v := viewOf(b)
	c.mu.Unlock()
	body, err := json.Marshal(btmSuccess(toBtmBlock(v)))
	if err != nil {
		panic(err) // plain structs of strings and numbers always encode
	}
	c.mu.Lock()
	b.answer = body
	c.mu.Unlock()
	return body, true
}

// PrepareBlockAnswers encodes /get-block's answer for every block now, so
// that serving them later costs no more than a node reading its store (a
// benchmark of a node's client then measures the client).
func (c *Chain) PrepareBlockAnswers() {
	for h := uint64(0); ; h++ {
		if _, ok := c.blockAnswer(h, ""); !ok {
			return
		}
	}
}

func (c *Chain) btmGetBlockHeader(ctx *fiber.Ctx) error {
	var req blockReq
	if err := decodeLenient(ctx, &req); err != nil {
		return btmBadRequest(ctx, err)
	}
	v, ok := c.requestedBlock(req)
	if !ok {
		return btmFail(ctx, req.notFound(btmDetailNoHeader))
	}
	return btmOK(ctx, fiber.Map{"block_header": v.header(), "reward": v.reward()})
}

func (c *Chain) btmListUnconfirmed(ctx *fiber.Ctx) error {
	ids := c.mempoolIDs()
	return btmOK(ctx, fiber.Map{"total": len(ids), "tx_ids": ids})
}

func (c *Chain) btmGetUnconfirmed(ctx *fiber.Ctx) error {
	var req struct {
		TxID hexBytes `json:"tx_id"`
	}
	if err := decodeLenient(ctx, &req); err != nil {
		return btmBadRequest(ctx, err)
	}
	v, ok := c.pendingTx(hex.EncodeToString(req.TxID))
	if !ok {
		return btmFail(ctx, btmDetailNotInPool)
	}
	return btmOK(ctx, toBtmTx(v))
}

// pendingTx returns a view of a mempool transaction.
func (c *Chain) pendingTx(id string) (txView, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.txs[id]
	if t == nil || t.block != nil {
		return txView{}, false
	}
	return snapshotTx(t), true
}
