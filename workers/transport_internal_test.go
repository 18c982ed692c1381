package workers

import (
	"context"
	"log/slog"
	"testing"

	"github.com/asynkron/protoactor-go/remote"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/troupe-lab/troupe/internal/manualclock"
	"github.com/troupe-lab/troupe/workers/workerpb"
)

// fakeStream hands out one batch per RecvMsg.
type fakeStream struct {
	grpc.ServerStream
	batches []*remote.MessageBatch
}

func (f *fakeStream) Context() context.Context { return context.Background() }

func (f *fakeStream) RecvMsg(m interface{}) error {
	rm := m.(*remote.RemoteMessage)
	rm.MessageType = &remote.RemoteMessage_MessageBatch{MessageBatch: f.batches[0]}
	f.batches = f.batches[1:]
	return nil
}

func batchOf(t *testing.T, msgs ...proto.Message) *remote.MessageBatch {
	t.Helper()
	b := &remote.MessageBatch{}
	for _, m := range msgs {
		data, name, err := remote.Serialize(m, 0)
		require.NoError(t, err)
		b.TypeNames = append(b.TypeNames, name)
		b.Envelopes = append(b.Envelopes, &remote.MessageEnvelope{MessageData: data, TypeId: int32(len(b.TypeNames) - 1)})
	}
	return b
}

// TestStreamRecordsTraffic: every batch a peer sends counts as a sign of
// life, console batches as much as heartbeats; with TLS under the
// certificate's name (a batch naming another worker is refused and not
// counted), without under the worker its messages name, on a worker under
// the server's name.
func TestStreamRecordsTraffic(t *testing.T) {
	clock := manualclock.New()
	traffic := NewTraffic(clock)
	console := &workerpb.ConsoleLines{Worker: "w1", Session: "s", Seq: 1}

	// TLS: the certificate says w1.
	s := &checkedStream{ServerStream: &fakeStream{batches: []*remote.MessageBatch{
		batchOf(t, console), batchOf(t, &workerpb.ConsoleLines{Worker: "w2"})}}, name: "w1", check: true, traffic: traffic, logger: slog.New(slog.DiscardHandler)}
	require.NoError(t, s.RecvMsg(&remote.RemoteMessage{}))
	assert.Equal(t, clock.Now(), traffic.Last("w1"))
	clock.Advance(3 * DefaultHeartbeat)
	err := s.RecvMsg(&remote.RemoteMessage{})
	assert.Equal(t, codes.PermissionDenied, status.Code(err))
	assert.True(t, traffic.Last("w2").IsZero())
	assert.NotEqual(t, clock.Now(), traffic.Last("w1"), "a refused batch is no sign of life")

	// No TLS: the name comes from the messages.
	s = &checkedStream{ServerStream: &fakeStream{batches: []*remote.MessageBatch{
		batchOf(t, &workerpb.MnReply{Session: "s"}, &workerpb.ActionDone{Worker: "w3"}), batchOf(t, &workerpb.MnReply{})}}, traffic: traffic}
	require.NoError(t, s.RecvMsg(&remote.RemoteMessage{}))
	assert.Equal(t, clock.Now(), traffic.Last("w3"))
	clock.Advance(DefaultHeartbeat)
	require.NoError(t, s.RecvMsg(&remote.RemoteMessage{}))
	assert.Equal(t, clock.Now(), traffic.Last("w3"), "the stream's later batches count for it")

	// On a worker: the server's messages name no worker.
	s = &checkedStream{ServerStream: &fakeStream{batches: []*remote.MessageBatch{batchOf(t, &workerpb.MnReply{})}}, name: serverPeer, traffic: traffic}
	require.NoError(t, s.RecvMsg(&remote.RemoteMessage{}))
	assert.Equal(t, clock.Now(), traffic.Last(serverPeer))
}
