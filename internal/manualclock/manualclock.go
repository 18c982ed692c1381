// Package manualclock is a clock for tests: its timers fire only when the
// test moves it on. It has the Now and AfterFunc methods of the clocks the
// actors and workers packages take.
package manualclock

import (
	"sync"
	"time"
)

// Clock is a manual clock; the zero value starts at the zero time, New at
// a fixed date.
type Clock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*timer
}

type timer struct {
	at   time.Time
	f    func()
	done bool
}

// New returns a clock at 2026-01-01 00:00 UTC.
func New() *Clock {
	return &Clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc arms a timer that runs f once the clock has moved d on; the
// function it returns stops the timer and says whether it was armed.
func (c *Clock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	tm := &timer{at: c.now.Add(d), f: f}
	c.timers = append(c.timers, tm)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		was := !tm.done
		tm.done = true
		return was
	}
}

// Armed counts the timers neither fired nor stopped.
func (c *Clock) Armed() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, tm := range c.timers {
		if !tm.done {
			n++
		}
	}
	return n
}

// Advance moves the clock on by d and runs the timers due, outside the
// clock's lock, in the order they were armed.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []func()
	for _, tm := range c.timers {
		if !tm.done && !tm.at.After(c.now) {
			tm.done = true
			due = append(due, tm.f)
		}
	}
	c.mu.Unlock()
	for _, f := range due {
		f()
	}
}

// Latest is the time left on the timer armed last, and whether that timer
// is still armed.
func (c *Clock) Latest() (time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.timers) == 0 {
		return 0, false
	}
	tm := c.timers[len(c.timers)-1]
	return tm.at.Sub(c.now), !tm.done
}

// Made counts the timers armed so far, fired and stopped ones included.
func (c *Clock) Made() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}
