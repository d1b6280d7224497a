package transport

import (
	"context"
	"errors"
	"fmt"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// ErrUnknownTopic is returned (wrapped) when a topic or one of its
// partitions does not exist.
var ErrUnknownTopic = errors.New("transport: topic or partition does not exist")

// ErrOffsetOutOfRange is returned (wrapped) by a ChangelogStream whose next
// offset is no longer in the partition: records were deleted under it (the
// low watermark passed it) or the log was truncated below it. The reader
// never resets such a partition by itself (auto.offset.reset=error).
var ErrOffsetOutOfRange = errors.New("transport: offset out of range")

// TopicInfo describes a topic as the cluster's metadata has it.
type TopicInfo struct {
	// ID is the topic id (a UUID in Kafka's base64 form), "" when the
	// broker reports none. A topic deleted and created again under the
	// same name gets a new one.
	ID string
	// Partitions is the partition count.
	Partitions int
}

// DescribeTopic returns the id and partition count of topic, in one
// metadata request bounded by ctx and Config.ReachTimeout. A topic that
// does not exist gives an error wrapping ErrUnknownTopic. Safe for
// concurrent use.
func (ad *Admin) DescribeTopic(ctx context.Context, topic string) (TopicInfo, error) {
	timeout := ad.cfg.reachTimeout()
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res, err := ad.a.DescribeTopics(rctx, kafka.NewTopicCollectionOfTopicNames([]string{topic}),
		kafka.SetAdminRequestTimeout(timeout))
	if err != nil {
		return TopicInfo{}, fmt.Errorf("transport: describe topic %q: %w", topic, err)
	}
	for _, d := range res.TopicDescriptions {
		switch d.Error.Code() {
		case kafka.ErrNoError:
		case kafka.ErrUnknownTopicOrPart, kafka.ErrUnknownTopic:
			return TopicInfo{}, fmt.Errorf("%w: %q", ErrUnknownTopic, topic)
		default:
			return TopicInfo{}, fmt.Errorf("transport: describe topic %q: %w", topic, d.Error)
		}
		info := TopicInfo{Partitions: len(d.Partitions)}
		if d.TopicID.GetMostSignificantBits() != 0 || d.TopicID.GetLeastSignificantBits() != 0 {
			info.ID = d.TopicID.String()
		}
		return info, nil
	}
	return TopicInfo{}, fmt.Errorf("%w: %q", ErrUnknownTopic, topic)
}

// Watermarks returns a partition's low watermark (its first offset) and
// end (the high watermark; the last stable offset under ReadCommitted), in
// two ListOffsets requests bounded by ctx and Config.ReachTimeout each.
// Safe for concurrent use.
func (ad *Admin) Watermarks(ctx context.Context, topic string, partition int32, level IsolationLevel) (low, high int64, err error) {
	marks, err := ad.watermarks(ctx, []tpKey{{topic, partition}}, level)
	if err != nil {
		return 0, 0, err
	}
	m := marks[tpKey{topic, partition}]
	return m[0], m[1], nil
}

// watermarks lists the low and high watermarks of parts: two requests,
// however many partitions.
func (ad *Admin) watermarks(ctx context.Context, parts []tpKey, level IsolationLevel) (map[tpKey][2]int64, error) {
	out := make(map[tpKey][2]int64, len(parts))
	for i, spec := range []kafka.OffsetSpec{kafka.EarliestOffsetSpec, kafka.LatestOffsetSpec} {
		got, err := ad.listOffsets(ctx, parts, spec, level)
		if err != nil {
			return nil, err
		}
		for k, off := range got {
			m := out[k]
			m[i] = off
			out[k] = m
		}
	}
	return out, nil
}

func (ad *Admin) listOffsets(ctx context.Context, parts []tpKey, spec kafka.OffsetSpec, level IsolationLevel) (map[tpKey]int64, error) {
	timeout := ad.cfg.reachTimeout()
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	klevel := kafka.IsolationLevelReadUncommitted
	if level == ReadCommitted {
		klevel = kafka.IsolationLevelReadCommitted
	}
	req := make(map[kafka.TopicPartition]kafka.OffsetSpec, len(parts))
	for _, p := range parts {
		topic := p.topic
		req[kafka.TopicPartition{Topic: &topic, Partition: p.partition}] = spec
	}
	res, err := ad.a.ListOffsets(rctx, req, kafka.SetAdminIsolationLevel(klevel), kafka.SetAdminRequestTimeout(timeout))
	if err != nil {
		return nil, fmt.Errorf("transport: list offsets of %s: %w", fmtKeys(parts), err)
	}
	out := make(map[tpKey]int64, len(parts))
	for tp, info := range res.ResultInfos {
		k := keyOf(tp)
		switch info.Error.Code() {
		case kafka.ErrNoError:
		case kafka.ErrUnknownTopicOrPart, kafka.ErrUnknownTopic, kafka.ErrUnknownPartition:
			return nil, fmt.Errorf("%w: %s[%d]: %v", ErrUnknownTopic, k.topic, k.partition, info.Error)
		default:
			return nil, fmt.Errorf("transport: list offsets of %s[%d]: %w", k.topic, k.partition, info.Error)
		}
		out[k] = int64(info.Offset)
	}
	for _, p := range parts {
		if _, ok := out[p]; !ok {
			return nil, fmt.Errorf("transport: list offsets of %s[%d]: no result", p.topic, p.partition)
		}
	}
	return out, nil
}

func fmtKeys(parts []tpKey) string {
	tps := make([]TopicPartition, len(parts))
	for i, p := range parts {
		tps[i] = TopicPartition{Topic: p.topic, Partition: p.partition}
	}
	return fmtParts(tps)
}

// tpKey is a partition as a map key inside this package's Kafka code.
type tpKey struct {
	topic     string
	partition int32
}

func keyOf(tp kafka.TopicPartition) tpKey { return tpKey{topicOf(tp), tp.Partition} }
