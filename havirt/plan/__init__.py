"""Pure planners: a fresh scan, the state and a request -> a Plan or a Refusal (no I/O)."""
