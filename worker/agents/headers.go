package agents

import "github.com/confluentinc/confluent-kafka-go/v2/kafka"

func header(k, v string) kafka.Header { return kafka.Header{Key: k, Value: []byte(v)} }

func kafkaHeaders(hs []Header) []kafka.Header {
	if len(hs) == 0 {
		return nil
	}
	out := make([]kafka.Header, len(hs))
	for i, h := range hs {
		out[i] = kafka.Header{Key: h.Key, Value: h.Value}
	}
	return out
}
