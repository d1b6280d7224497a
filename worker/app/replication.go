package app

import "fmt"

// safeReplicas is the replication factor production clusters use for the
// topics the worker creates (docs/operations.md, "Production topic
// settings"): one broker may fail, and with min.insync.replicas=2 an
// acknowledged record is on two brokers.
const safeReplicas = 3

// replicationWarning says what is wrong when the topics the worker creates
// (declared topics, changelogs, dead letters) get fewer replicas than the
// cluster could hold, up to safeReplicas; "" when nothing is. A cluster of
// one broker (a laptop, the tests) cannot do better than a factor of 1.
func replicationWarning(brokers, factor int) string {
	if brokers <= 0 || factor >= min(brokers, safeReplicas) {
		return ""
	}
	return fmt.Sprintf("topics the worker creates (changelogs, dead letters, declared topics) get kafka.replication_factor %d "+
		"on a cluster of %d brokers: losing a broker loses their partitions (table state, dead letters); set "+
		"kafka.replication_factor to %d and min.insync.replicas to %d (docs/operations.md)",
		factor, brokers, min(brokers, safeReplicas), min(brokers, safeReplicas)-1)
}
