package agents

import (
	"sync"

	"github.com/eddy-streams/eddy/worker/transport"
)

// produceJob is one record for the producer goroutine.
type produceJob struct {
	rec      transport.Record
	onDone   func(error)
	onOffset func(int64, error) // instead of onDone: ProduceOffset
}

// produceQueue hands records from the Run goroutine to the producer
// goroutine, so the cgo cost of Produce (and its blocking when librdkafka's
// queue is full) runs beside the bookkeeping instead of inside it. One
// goroutine keeps the order of records. Every output and changelog record
// in it is counted against Config.InflightBytes from its result until
// Kafka acknowledges it, and delivery stops at the cap, so the queue is
// bounded by it (dead letters are records of the partition buffers).
type produceQueue struct {
	mu   sync.Mutex
	jobs []produceJob
	wake chan struct{}
}

func (m *Manager) produce(rec transport.Record, onDone func(error)) {
	m.enqueueProduce(produceJob{rec: rec, onDone: onDone})
}

// produceOffset is produce for records whose offset matters (changelogs).
func (m *Manager) produceOffset(rec transport.Record, onDone func(int64, error)) {
	m.enqueueProduce(produceJob{rec: rec, onOffset: onDone})
}

func (m *Manager) enqueueProduce(j produceJob) {
	q := &m.prodQ
	q.mu.Lock()
	q.jobs = append(q.jobs, j)
	n := len(q.jobs)
	q.mu.Unlock()
	if n == 1 {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

// runProducer hands queued records to the producer until stop is closed,
// then hands over what is left (every callback must run).
func (m *Manager) runProducer(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	q := &m.prodQ
	var jobs []produceJob
	for {
		q.mu.Lock()
		jobs, q.jobs = q.jobs, jobs[:0]
		q.mu.Unlock()
		for i, j := range jobs {
			m.handOver(j)
			jobs[i] = produceJob{}
		}
		if len(jobs) > 0 {
			continue
		}
		select {
		case <-q.wake:
		case <-stop:
			q.mu.Lock()
			left := q.jobs
			q.jobs = nil
			q.mu.Unlock()
			for _, j := range left {
				m.handOver(j)
			}
			return
		}
	}
}

func (m *Manager) handOver(j produceJob) {
	if j.onOffset != nil {
		m.producer.ProduceOffset(j.rec, j.onOffset)
	} else {
		m.producer.Produce(j.rec, j.onDone)
	}
}
