package power

import (
	"bufio"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// operator is the other end of a Manual's pipes.
type operator struct {
	m      *Manual
	prompt *bufio.Reader // what Manual wrote
	answer *io.PipeWriter
}

func newOperator(t *testing.T) *operator {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	t.Cleanup(func() {
		inW.Close() // ends a read still pending in Manual
		outR.Close()
	})
	return &operator{m: &Manual{Board: "lab-board", In: inR, Out: outW}, prompt: bufio.NewReader(outR), answer: inW}
}

func (o *operator) readPrompt(t *testing.T) string {
	t.Helper()
	ch := make(chan string, 1)
	go func() {
		line, _ := o.prompt.ReadString('\n')
		ch <- line
	}()
	return recv(t, ch, 5*time.Second)
}

func (o *operator) say(t *testing.T, s string) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := io.WriteString(o.answer, s)
		done <- err
	}()
	require.NoError(t, recv(t, done, 5*time.Second))
}

func async(f func() error) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- f() }()
	return ch
}

func TestManualAsksAndRemembers(t *testing.T) {
	ctx := testCtx(t)
	o := newOperator(t)
	var _ Switch = o.m
	assert.False(t, o.m.Verified())

	res := async(func() error { return o.m.On(ctx) })
	assert.Equal(t, "please switch lab-board on and press Enter\n", o.readPrompt(t))
	o.say(t, "\n")
	require.NoError(t, recv(t, res, 5*time.Second))
	on, err := o.m.State(ctx)
	require.NoError(t, err)
	assert.True(t, on)

	res = async(func() error { return o.m.Off(ctx) })
	assert.Equal(t, "please switch lab-board off and press Enter\n", o.readPrompt(t))
	o.say(t, "done\n")
	require.NoError(t, recv(t, res, 5*time.Second))
	on, err = o.m.State(ctx)
	require.NoError(t, err)
	assert.False(t, on)
}

func TestManualOperatorSaysNo(t *testing.T) {
	ctx := testCtx(t)
	o := newOperator(t)
	res := async(func() error { return o.m.On(ctx) })
	o.readPrompt(t)
	o.say(t, "No\n")
	err := recv(t, res, 5*time.Second)
	require.Error(t, err)
	assert.Equal(t, `power on lab-board: the operator answered "No": not switched on`, err.Error())
	on, _ := o.m.State(ctx)
	assert.False(t, on)
}

func TestManualCancelThenLateAnswer(t *testing.T) {
	o := newOperator(t)
	ctx, cancel := context.WithCancel(testCtx(t))
	res := async(func() error { return o.m.On(ctx) })
	o.readPrompt(t)
	cancel()
	err := recv(t, res, 5*time.Second)
	require.Error(t, err)
	assert.True(t, errors.Is(err, context.Canceled))
	assert.Equal(t, "power on lab-board: waiting for the operator: context canceled", err.Error())

	// The read is still pending; the next question takes its answer.
	res = async(func() error { return o.m.On(testCtx(t)) })
	o.readPrompt(t)
	o.say(t, "\n")
	require.NoError(t, recv(t, res, 5*time.Second))
}

func TestManualInputEnds(t *testing.T) {
	o := newOperator(t)
	res := async(func() error { return o.m.Off(testCtx(t)) })
	o.readPrompt(t)
	require.NoError(t, o.answer.Close())
	err := recv(t, res, 5*time.Second)
	require.Error(t, err)
	assert.Equal(t, "power off lab-board: the operator's input ended before an answer", err.Error())
}
