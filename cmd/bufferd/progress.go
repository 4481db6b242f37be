package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
)

// progressHandler shows the log records that carry a "progress" attribute
// (a backfill, a rebuild, a bench run) as one line that updates in place on
// term, a terminal, instead of a log line each; the other records go to next,
// after the progress line is cleared.
type progressHandler struct {
	next  slog.Handler
	term  io.Writer
	state *progressState // shared by the handlers derived with With*
}

type progressState struct {
	mu    sync.Mutex
	shown bool // a progress line is on the terminal
}

func newProgressHandler(next slog.Handler, term io.Writer) *progressHandler {
	return &progressHandler{next: next, term: term, state: &progressState{}}
}

func (h *progressHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

// clearLine returns the cursor to the start of the line and erases it.
const clearLine = "\r\x1b[K"

func (h *progressHandler) Handle(ctx context.Context, r slog.Record) error {
	progress := false
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "progress" {
			progress = true
		}
		fmt.Fprintf(&b, " %s=%s", a.Key, a.Value)
		return true
	})
	h.state.mu.Lock()
	defer h.state.mu.Unlock()
	if progress {
		h.state.shown = true
		_, err := io.WriteString(h.term, clearLine+b.String())
		return err
	}
	if h.state.shown {
		h.state.shown = false
		_, _ = io.WriteString(h.term, clearLine)
	}
	return h.next.Handle(ctx, r)
}

func (h *progressHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &progressHandler{next: h.next.WithAttrs(attrs), term: h.term, state: h.state}
}

func (h *progressHandler) WithGroup(name string) slog.Handler {
	return &progressHandler{next: h.next.WithGroup(name), term: h.term, state: h.state}
}
