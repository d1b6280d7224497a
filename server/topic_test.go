package server

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	eddyv1 "github.com/eddy-streams/eddy/gen/eddy/v1"
	"github.com/eddy-streams/eddy/worker/app"
)

// Send of fakeCore: topic "lines" (4 partitions) takes records.
func (f *fakeCore) Send(_ context.Context, rec app.SendRecord) (app.SendResult, error) {
	if rec.Topic != "lines" {
		return app.SendResult{}, &app.UnknownTopicError{Name: rec.Topic, Declared: []string{"lines"}}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent = append(f.sent, rec)
	p := int32(1)
	if rec.Partition != nil {
		p = *rec.Partition
	}
	return app.SendResult{Partition: p, Offset: int64(len(f.sent) - 1), Timestamp: time.Unix(1700000000, 0)}, nil
}

func (f *fakeCore) Topics() []app.TopicInfo {
	return []app.TopicInfo{{Name: "lines", Partitions: 4}, {Name: "words", Partitions: 8}}
}

// TestListTopics: the declared topics, a read that needs no token unless
// reads are protected.
func TestListTopics(t *testing.T) {
	core := &fakeCore{fakeTables: fakeTables{workerID: "w1"}}
	tc := eddyv1.NewTopicServiceClient(serve(t, Config{Token: "tok"}, core))
	resp, err := tc.ListTopics(context.Background(), &eddyv1.ListTopicsRequest{})
	if err != nil || len(resp.GetTopics()) != 2 || resp.GetTopics()[1].GetName() != "words" || resp.GetTopics()[1].GetPartitions() != 8 {
		t.Fatalf("ListTopics = %v, %v; want lines and words (8 partitions)", resp, err)
	}
	protected := eddyv1.NewTopicServiceClient(serve(t, Config{Token: "tok", ProtectReads: true}, core))
	if _, err := protected.ListTopics(context.Background(), &eddyv1.ListTopicsRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("ListTopics without token, reads protected: %v, want Unauthenticated", err)
	}
}

// TestTopicSend: Send needs the token, writes through the core, and names
// what is wrong with a bad request.
func TestTopicSend(t *testing.T) {
	core := &fakeCore{fakeTables: fakeTables{workerID: "w1"}}
	tc := eddyv1.NewTopicServiceClient(serve(t, Config{Token: "tok"}, core))
	ctx := context.Background()
	req := &eddyv1.SendRequest{Topic: "lines", Key: []byte("k"), Value: []byte("v"), Headers: []*eddyv1.Header{{Key: "h", Value: []byte("1")}}}
	if _, err := tc.Send(ctx, req); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("Send without token: %v, want Unauthenticated", err)
	}
	core.mu.Lock()
	if len(core.sent) != 0 {
		t.Fatalf("a refused Send reached the core: %v", core.sent)
	}
	core.mu.Unlock()
	ctx = withToken(ctx, "tok")
	resp, err := tc.Send(ctx, req)
	if err != nil || resp.GetPartition() != 1 || resp.GetOffset() != 0 || resp.GetTimestamp().AsTime().Unix() != 1700000000 {
		t.Fatalf("Send = %v, %v", resp, err)
	}
	p := int32(3)
	if resp, err := tc.Send(ctx, &eddyv1.SendRequest{Topic: "lines", Value: []byte("x"), Partition: &p}); err != nil || resp.GetPartition() != 3 {
		t.Fatalf("Send to partition 3 = %v, %v", resp, err)
	}
	core.mu.Lock()
	if got := core.sent[0]; string(got.Key) != "k" || string(got.Value) != "v" || len(got.Headers) != 1 || got.Headers[0].Key != "h" || got.Partition != nil {
		t.Errorf("core got %+v", got)
	}
	core.mu.Unlock()

	for _, tt := range []struct {
		name string
		req  *eddyv1.SendRequest
		code codes.Code
		msg  string
	}{
		{"no topic", &eddyv1.SendRequest{Value: []byte("v")}, codes.InvalidArgument, "topic is required"},
		{"unknown topic", &eddyv1.SendRequest{Topic: "lnes"}, codes.NotFound, `declared topics are "lines"`},
		{"header without key", &eddyv1.SendRequest{Topic: "lines", Headers: []*eddyv1.Header{{Value: []byte("1")}}}, codes.InvalidArgument, "header needs a key"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tc.Send(ctx, tt.req)
			if status.Code(err) != tt.code || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("got %v, want %v mentioning %q", err, tt.code, tt.msg)
			}
		})
	}
}
