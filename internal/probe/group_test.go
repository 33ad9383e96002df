package probe

import (
	"testing"
	"time"

	"github.com/eventswarm/eventswarm/internal/verify"
)

// TestGroupEpochs: a share group is disconnected from its first member's
// loss until the last member that lost its connection is back and
// resubscribed; one epoch, kept only if every returning member kept its
// session.
func TestGroupEpochs(t *testing.T) {
	cfg := probeLedgerConfig()
	l, err := verify.NewLedger(verify.NewRunID(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ms := int64(time.Millisecond)
	g := &group{name: "g", rec: l.Subscriber("$share/g"), members: 3}
	g.memberDown(100 * ms)
	g.memberDown(200 * ms)
	g.memberBack(300*ms, 310*ms, true) // one back, the other still down
	if ep := epochs(t, l); len(ep) != 1 || ep[0].ReconnectedMS != nil {
		t.Fatalf("one member still down: epochs %+v, want one open epoch", ep)
	}
	g.memberBack(400*ms, 450*ms, true)
	g.memberDown(1000 * ms)
	g.memberBack(1100*ms, 1150*ms, false)
	ep := epochs(t, l)
	if len(ep) != 2 {
		t.Fatalf("epochs %+v, want 2", ep)
	}
	if e := ep[0]; e.DisconnectedMS != 100 || *e.ReconnectedMS != 400 || *e.ResubscribedMS != 450 || !e.Kept {
		t.Fatalf("first epoch %+v", e)
	}
	if e := ep[1]; e.DisconnectedMS != 1000 || *e.ReconnectedMS != 1100 || *e.ResubscribedMS != 1150 || e.Kept {
		t.Fatalf("second epoch %+v", e)
	}
}

func probeLedgerConfig() verify.Config {
	c := Config{}
	c.Defaults()
	return c.Ledger
}

func epochs(t *testing.T, l *verify.Ledger) []verify.Epoch {
	t.Helper()
	subs := l.Snapshot(2000 * int64(time.Millisecond)).Subscribers
	if len(subs) != 1 {
		t.Fatalf("subscribers %+v", subs)
	}
	return subs[0].Epochs
}
