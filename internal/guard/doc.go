// Package guard decides whether a stop may happen now, for the whole
// fleet: a fleet-wide API rate (Rate), a blast-radius budget of stop calls
// (Budget) and time-limited holds on instances (Holds: PutHolds,
// ReleaseHolds, ListHolds and the worker's HoldWatcher). The three are
// independent; each keeps its state in NATS JetStream, never only in one
// worker's memory, and exports the stream configuration it needs
// (RegistryStream, BudgetStream, HoldsStream) for the worker's
// provisioning to create: guard itself never creates a stream.
//
// # What each costs per call
//
//   - Rate.Wait makes no request to NATS: each worker heartbeats its
//     registry key once a Heartbeat (one publish) and watches the
//     registry (every worker's heartbeats, pushed to it), and Wait is
//     answered from memory by a local dispatcher, a few microseconds.
//   - Budget.Charge is one publish (the increment, whose acknowledgement
//     carries its slot's new total), then reads of the few slots that may
//     still change (the slot or two after the current one, and the one or
//     two before it during their settle margin, about 2 s), sent together:
//     two round trips in time. Settled slots are read once per worker and
//     cached; racing charges share reads, at most one in flight and one
//     queued per slot. A refused charge adds a publish taking it back.
//   - HoldWatcher.Check reads memory only; the watcher follows the holds
//     bucket (pushed) and looks up the bucket's stream once a
//     ProbeInterval.
//
// # While NATS is unreachable
//
// Everything fails closed. Rate grants no call while the connection is
// down, its registration has lapsed or its view of the fleet may be stale
// (Ready says which); Wait blocks until it can grant or its context ends.
// Budget.Charge returns an error wrapping ErrNotReady: no charge, no
// call. A HoldWatcher is not ready while disconnected, before it has read
// the bucket, or after a reconnect until it has read it again; Check
// still answers from memory, so callers check Ready first.
//
// # Clocks
//
// The budget's slots are periods of the workers' wall clocks, so it
// assumes they are synchronised (NTP): BudgetOptions.MaxClockOffset is the
// most any worker's clock may be off, and the budget is computed so that
// it holds while that is true. A worker whose clock is off by more can
// make the fleet exceed N by the charges it puts into the wrong slot.
// Rate measures only durations on each worker's own clock; the throttle
// record's times are compared across workers, so a skewed clock shortens
// or lengthens a hold on that worker by its skew.
package guard
