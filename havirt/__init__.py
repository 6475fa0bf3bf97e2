"""havirt: manage a small cluster of KVM hypervisors over SSH.

Its one promise: a domain never runs on two nodes at once, and never starts
on a node that cannot hold it.
"""

__version__ = "0.1.0"
