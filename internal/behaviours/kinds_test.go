package behaviours

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/eventswarm/eventswarm/internal/bus"
)

// TestKindsPerShard: every shard runs the weighted mix of kinds (its
// proctors watch only its own learners), whatever the weight cycle's length
// and the shard count, and the shards together run each user once.
func TestKindsPerShard(t *testing.T) {
	noDial := bus.DialFunc(func(context.Context, string, bus.Handler) (bus.Conn, error) {
		return nil, errors.New("not dialled")
	})
	for _, tt := range []struct{ users, shards int }{{18, 3}, {12, 2}, {36, 6}, {13, 1}} {
		t.Run(fmt.Sprintf("users=%d/shards=%d", tt.users, tt.shards), func(t *testing.T) {
			total := map[Kind]int{}
			for shard := range tt.shards {
				cfg := smallConfig("http") // learner=5,proctor=1: a cycle of 6
				cfg.Users, cfg.Shard, cfg.Shards = tt.users, shard, tt.shards
				r, err := New(cfg, noDial)
				if err != nil {
					t.Fatal(err)
				}
				per := map[Kind]int{}
				for g := shard; g < tt.users; g += tt.shards {
					per[r.KindOf(g)]++
				}
				if per[Proctor] == 0 || per[Learner] == 0 {
					t.Errorf("shard %d runs %v; want learners and proctors", shard, per)
				}
				for k, n := range per {
					total[k] += n
				}
			}
			if total[Learner]+total[Proctor] != tt.users {
				t.Errorf("shards run %v; want %d users", total, tt.users)
			}
		})
	}
}
