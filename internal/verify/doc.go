// Package verify stamps messages and judges their delivery: the message stamp
// (Encode/Decode), the delivery ledger (Ledger) and the SLO gates (Gates).
//
// # Identity and expectation
//
// A message is (run ID, publisher, stream, seq); seq starts at 1 per
// (publisher, stream) and is never reused. Messages of another run are
// Foreign: counted, excluded from every statistic. Deliveries flagged RETAIN
// are counted as Retained and ignored; readiness markers (MarkerStream) are
// counted as Markers and never expected.
//
// Subscriber S expects message M when M's publish succeeded
// (StreamRecorder.Result(PublishOK)), M's intended send time is inside the
// measurement interval [StartMeasurement, StopMeasurement), and S's
// subscription was confirmed at or before M's intended send time
// (SubscriberRecorder.Expect) and not withdrawn before it (Unexpect, Close).
// A failed publish is counted in publish availability and never expected; a
// publish whose outcome is unknown (or still pending at finalization) is not
// expected, and if it arrives anyway it is Recovered.
//
// # Outcome per (subscriber, message)
//
// Latency d = first arrival − intended send time (from the publisher's record),
// integer ns on the run's monotonic timeline (Clock). With the defaults
// (Latency 2 s, LostAfter 15 s):
//
//	on time     first arrival, d <= 2 s (inclusive)
//	slow        first arrival, 2 s < d <= 15 s
//	lost        no arrival with d <= 15 s (split: during a disconnect, i.e. intended
//	            in [disconnected, resubscribed), or while connected)
//	late        note on a lost one: its first arrival had d > 15 s; stays lost,
//	            counted in Late and in the late histogram; its next copy is a duplicate
//	duplicate   every arrival after the first, whenever it comes (hours later too),
//	            split into flagged redeliveries / others and near-reconnect / steady
//	out of order  note: first arrival of seq s after a higher seq of the stream was
//	            seen by this subscriber; only for on-time and slow messages
//	unexpected  this run's ID but a seq never attempted, an unknown stream, or a
//	            failed publish: hard failure (every such delivery counts)
//	corrupt     bad magic, version or checksum: hard failure
//	extra       this run's message the subscriber did not expect (not subscribed,
//	            before confirmation, warm-up): informational, every copy counts
//
// Expected = on time + slow + lost. Recovered messages are not expected; their
// extra copies are duplicates.
//
// # Finalization
//
// Deliver only records arrivals (per-subscriber mutex, no allocation). A seq
// becomes final when its deadline, intended + LostAfter + Grace, has passed
// (Advance, called about every second): then it is classified for every
// subscriber and added to its window. Arrivals of final seqs are classified
// at once: a lost seq arriving is late, any other copy is a duplicate (or
// Extra, Recovered, Unexpected as above); these count in the pooled totals
// only, never in an already emitted window.
//
// Finish(now, drained): with drained=true every attempted seq is finalized
// (no arrival → lost); with drained=false the expected seqs that have not
// arrived and are not due are Pending (inconclusive, not lost). Pending > 0
// turns a pass into Inconclusive.
//
// # Gates
//
// Gates.Evaluate uses exact counts, never percentiles: on time / expected >=
// 0.95; lost = 0; duplicates = 0; publish ok / attempted >= 0.999; unexpected
// + corrupt = 0. Expected = 0 (or nothing published) is inconclusive, never a
// pass.
//
// # Windows
//
// Windows (default 60 s) are keyed by intended send time and emitted,
// immutable, once now >= window end + LostAfter + Grace; each has its counts,
// latency p50/p95/p99/max and a verdict. Publish counts, unexpected arrivals
// of failed publishes and duplicates that arrived before finalization are in
// the window of the message; corrupt, foreign, retained, markers, and
// everything arriving after its seq was final are in the pooled totals only.
//
// # Bounded memory
//
// Per stream a ring of publish records, per (subscriber, stream) a ring of
// arrival slots, both covering the non-final seqs (sized from Config.Rate ×
// (LostAfter + Grace), doubling if a stream goes faster); everything below
// the ring's base is final. Failed, unknown, lost and unseen-unknown seqs are
// kept as interval sets capped at Config.MaxIntervals (the oldest interval is
// forgotten beyond the cap: a late copy of a forgotten lost seq then counts
// as a duplicate). Closed streams free their rings once final and keep a
// small tombstone, up to Config.MaxClosedStreams; deliveries of forgotten
// streams count as Extra. Closed subscribers are freed once final. Latency
// goes into HDR histograms (1 µs – 1 h, 3 significant digits). Memory grows
// with failures and live streams, not with run length.
package verify
