package tables

import "github.com/eddy-streams/eddy/worker/transport"

// KeyPartition is the partition of a non-empty key among n partitions
// under the default partitioner, murmur2_random (the Java client's,
// franz-go's and Eddy's own producer's): toPositive(murmur2(key)) % n.
// A topic may declare another partitioner (transport.Partitioner,
// docs/configuration.md); a table never stores an empty key.
func KeyPartition(key []byte, n int32) int32 {
	p, _ := transport.Murmur2Random.KeyPartition(key, n)
	return p
}
