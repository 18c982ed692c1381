package manualclock

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestTimersFireWhenDue(t *testing.T) {
	c := New()
	start := c.Now()
	var fired []string
	c.AfterFunc(2*time.Second, func() { fired = append(fired, "2s") })
	stop := c.AfterFunc(time.Second, func() { fired = append(fired, "1s") })
	c.AfterFunc(time.Second, func() { fired = append(fired, "1s'") })
	assert.Equal(t, 3, c.Armed())
	left, armed := c.Latest()
	assert.True(t, armed)
	assert.Equal(t, time.Second, left)
	assert.True(t, stop(), "an armed timer stops")
	assert.False(t, stop(), "a stopped timer was not armed")
	c.Advance(999 * time.Millisecond)
	assert.Empty(t, fired)
	c.Advance(time.Millisecond)
	assert.Equal(t, []string{"1s'"}, fired)
	c.Advance(time.Second)
	assert.Equal(t, []string{"1s'", "2s"}, fired)
	assert.Equal(t, 0, c.Armed())
	assert.Equal(t, 3, c.Made())
	assert.Equal(t, 2*time.Second, c.Now().Sub(start))
}
