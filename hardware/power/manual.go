package power

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
)

// Manual asks an operator to switch the board. On writes
//
//	please switch <board> on and press Enter
//
// to Out and waits for a line on In. An empty line (or any answer) confirms;
// an answer of "n" or "no" (any case) means the operator could not, and On
// fails. End of input fails too. State returns the last confirmed state
// (false before any) and Verified returns false.
//
// Calls are serialized: one question at a time. If ctx ends while waiting,
// the call returns ctx's error, but the line read stays pending: the
// operator's next line answers the next question. Reading In cannot be
// interrupted, so a read pending when the program ends stays blocked until
// In is closed.
type Manual struct {
	Board string
	In    io.Reader
	Out   io.Writer

	once    sync.Once
	turn    chan struct{}   // a token: whoever holds it asks
	pending chan lineResult // the read in progress, if any
	r       *bufio.Reader
	mu      sync.Mutex
	last    bool
}

type lineResult struct {
	line string
	err  error
}

// On asks the operator to switch the board on.
func (m *Manual) On(ctx context.Context) error { return wrap(OpOn, m.Board, m.ask(ctx, true)) }

// Off asks the operator to switch the board off.
func (m *Manual) Off(ctx context.Context) error { return wrap(OpOff, m.Board, m.ask(ctx, false)) }

// State returns the last state the operator confirmed.
func (m *Manual) State(ctx context.Context) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.last, nil
}

// Verified is false: nobody reads the outlet back.
func (m *Manual) Verified() bool { return false }

func (m *Manual) init() {
	m.once.Do(func() {
		m.turn = make(chan struct{}, 1)
		m.turn <- struct{}{}
		if m.In != nil {
			m.r = bufio.NewReader(m.In)
		}
	})
}

func (m *Manual) ask(ctx context.Context, on bool) error {
	m.init()
	if m.In == nil || m.Out == nil {
		return errors.New("manual switch: In and Out must be set")
	}
	select {
	case <-m.turn:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	defer func() { m.turn <- struct{}{} }()

	if _, err := fmt.Fprintf(m.Out, "please switch %s %s and press Enter\n", m.Board, word(on)); err != nil {
		return fmt.Errorf("ask the operator: %w", err)
	}
	if m.pending == nil {
		ch := make(chan lineResult, 1)
		m.pending = ch
		go func() {
			line, err := m.r.ReadString('\n')
			if err == io.EOF && line != "" {
				err = nil // a last line without a newline still answers
			}
			ch <- lineResult{line, err}
		}()
	}
	var res lineResult
	select {
	case res = <-m.pending:
		m.pending = nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for the operator: %w", context.Cause(ctx))
	}
	if res.err != nil {
		if res.err == io.EOF {
			return errors.New("the operator's input ended before an answer")
		}
		return fmt.Errorf("read the operator's answer: %w", res.err)
	}
	switch strings.ToLower(strings.TrimSpace(res.line)) {
	case "n", "no":
		return fmt.Errorf("the operator answered %q: not switched %s", strings.TrimSpace(res.line), word(on))
	}
	m.mu.Lock()
	m.last = on
	m.mu.Unlock()
	return nil
}
