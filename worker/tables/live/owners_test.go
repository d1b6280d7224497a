package live

import (
	"errors"
	"fmt"
	"testing"
)

func TestOwnerRouting(t *testing.T) {
	cands := []Owner{
		{WorkerID: "w3", Addr: "a3", Partitions: []int32{1, 4}},
		{WorkerID: "w2", Addr: "a2", Partitions: []int32{0, 1}}, // 1: a stale entry, w3 comes first
	}
	if no := FindOwner("counts", cands, 1); no == nil || no.WorkerID != "w3" || no.Addr != "a3" || no.Partition != 1 {
		t.Errorf("FindOwner(1) = %+v, want w3 at a3", no)
	}
	if no := FindOwner("counts", cands, 2); no != nil {
		t.Errorf("FindOwner(2) = %+v, want none", no)
	}
	got, err := GroupOwners("counts", "words", cands, []int32{4, 0, 1})
	if want := "[{w2 a2 [0]} {w3 a3 [4 1]}]"; err != nil || fmt.Sprint(got) != want {
		t.Errorf("GroupOwners = %v, %v; want %s", got, err, want)
	}
	if _, err := GroupOwners("counts", "words", cands, []int32{0, 2, 3}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("GroupOwners with orphans: err %v, want ErrUnavailable", err)
	}
}
