package tables

// Murmur2 is the 32-bit murmur2 hash of the Java Kafka client
// (org.apache.kafka.common.utils.Utils.murmur2), which librdkafka's
// murmur2 and murmur2_random partitioners reproduce.
func Murmur2(data []byte) int32 {
	const (
		seed uint32 = 0x9747b28c
		m    uint32 = 0x5bd1e995
		r           = 24
	)
	n := len(data)
	h := seed ^ uint32(n)
	for i := 0; i+4 <= n; i += 4 {
		k := uint32(data[i]) | uint32(data[i+1])<<8 | uint32(data[i+2])<<16 | uint32(data[i+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	tail := n &^ 3
	switch n % 4 {
	case 3:
		h ^= uint32(data[tail+2]) << 16
		fallthrough
	case 2:
		h ^= uint32(data[tail+1]) << 8
		fallthrough
	case 1:
		h ^= uint32(data[tail])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return int32(h)
}

// KeyPartition is the partition of a non-empty key among n partitions as
// the producers place it (the Java client's default partitioner, Eddy's
// own producer with partitioner=murmur2_random): toPositive(murmur2(key))
// % n. Keyless records go anywhere; a table never stores an empty key.
func KeyPartition(key []byte, n int32) int32 {
	if n <= 0 {
		return 0
	}
	return int32(uint32(Murmur2(key))&0x7fffffff) % n
}
