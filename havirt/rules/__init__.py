"""The rules the promise rests on, each written once: sizes, fit, presence, leases, drift."""
