package transport

import "github.com/confluentinc/confluent-kafka-go/v2/kafka"

// SetPollHook makes the reader's poll goroutine call f with the offset of
// every record it polled, before routing it; nil removes the hook. Tests
// use it to hold a record between Poll and its delivery.
func SetPollHook(f func(offset int64)) {
	if f == nil {
		pollHook.Store(nil)
		return
	}
	pollHook.Store(&f)
}

// UnfencedGroupMetadata is group metadata with no generation and no member
// id, as a producer outside group management sends: Consumer.GroupMetadata
// never returns such metadata (ErrNotMember).
func UnfencedGroupMetadata(group string) (GroupMetadata, error) {
	m, err := kafka.NewTestConsumerGroupMetadata(group)
	return GroupMetadata{m: m}, err
}
