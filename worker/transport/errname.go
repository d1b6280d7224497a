package transport

/*
// librdkafka's, linked by confluent-kafka-go (its bundled library): the
// symbolic name of an error code, e.g. "_ALL_BROKERS_DOWN".
const char *rd_kafka_err2name(int err);
*/
import "C"

import "github.com/confluentinc/confluent-kafka-go/v2/kafka"

// CodeName is librdkafka's symbolic name of an error code, as in its enum
// without the RD_KAFKA_RESP_ERR prefix: "_ALL_BROKERS_DOWN" (local codes
// start with "_"), "UNKNOWN_TOPIC_OR_PART". A bounded set, unlike the
// code's description (kafka.ErrorCode.String), so fit for a metric label.
func CodeName(c kafka.ErrorCode) string {
	return C.GoString(C.rd_kafka_err2name(C.int(c)))
}
