package tests

// The fleet's guardrails under the nemesis (issue 19): the workers run with
// a fleet-wide API rate and a blast-radius budget, and both are checked
// against the simulator's own history of calls.

// nemesisRate is the workers' BCCSTOP_RATE_LIMIT.
const nemesisRate = 40

// nemesisRatePeak is the most calls the simulator may let in within any
// sliding second: the rate and the contract's own ±10% (section 5), as
// TestFleetWideRate allows. The simulator times a call when it lets it in,
// so the few milliseconds between a worker's grant and the call's arrival
// (the HTTP round trip, the scheduling of two busy cores) can bring two
// calls granted 25 ms apart closer; and a worker frozen between its grant
// and its write sends that call late, next to its first grant after the
// thaw. The faults themselves do not widen it: while NATS is down, or a
// worker's view of the fleet may be stale, no call is granted at all; a
// killed worker's share lies unused until its key expires, and a restarted
// one waits to be seen before its first call; a freeze (at most 4 s) is
// shorter than the registry's TTL (5 s), so the frozen worker keeps its
// share and the others do not take it over.
const nemesisRatePeak = nemesisRate + nemesisRate/10
