package transport

import (
	"context"
	"fmt"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// BrokerCount returns the number of brokers in the cluster, from a cluster
// description bounded by Config.ReachTimeout. The app compares it with the
// replication factor of the topics it creates (docs/operations.md).
func (ad *Admin) BrokerCount(ctx context.Context) (int, error) {
	timeout := ad.cfg.reachTimeout()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res, err := ad.a.DescribeCluster(ctx, kafka.SetAdminRequestTimeout(timeout))
	if err != nil {
		return 0, fmt.Errorf("transport: describe cluster at %s: %w", ad.cfg.Brokers, err)
	}
	return len(res.Nodes), nil
}
