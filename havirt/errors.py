"""One error hierarchy; the CLI turns it into exit codes in one place."""

# Exit codes (documented in the README; stable).
EXIT_FAILURE = 1      # a step failed, or a scan/validate found anomalies
EXIT_USAGE = 2        # bad usage, configuration, home, state file or conf/ XML
EXIT_REFUSED = 3      # refused by a safety check
EXIT_UNREACHABLE = 4  # a node needed for the command did not answer
EXIT_LOCKED = 5       # another havirt holds the lock for too long, or the lock was lost
EXIT_STORE = 6        # the store (etcd) cannot be reached, has no quorum, or refused a request


class HavirtError(Exception):
    """Base of every error a user can cause; carries its exit code."""

    exit_code = EXIT_FAILURE


class UsageError(HavirtError):
    """Bad arguments: unknown node or domain, invalid name, ..."""

    exit_code = EXIT_USAGE


class ConfigError(HavirtError):
    """config.yaml is wrong (unknown key, wrong type, missing file)."""

    exit_code = EXIT_USAGE


class StateError(HavirtError):
    """var/state.yaml cannot be read; it is left untouched."""

    exit_code = EXIT_USAGE


class HomeError(HavirtError):
    """The home cannot be used safely: var/ or a file in it not writable, a
    link where havirt writes, a link planted by another user."""

    exit_code = EXIT_USAGE


class DomainXMLError(HavirtError):
    """A conf/ file is not usable domain XML."""

    exit_code = EXIT_USAGE


class Refusal(HavirtError):
    """A safety check said no. `reasons` name the rule and the numbers."""

    exit_code = EXIT_REFUSED

    def __init__(self, reasons):
        if isinstance(reasons, str):
            reasons = [reasons]
        self.reasons = list(reasons)
        super().__init__("refused: " + "; ".join(self.reasons))


class NodeUnreachable(HavirtError):
    """SSH to a node failed (connect, authentication, host key, timeout)."""

    exit_code = EXIT_UNREACHABLE

    def __init__(self, node, reason):
        self.node = node
        self.reason = reason
        super().__init__(f"node {node} unreachable: {reason}")


class Interrupted(HavirtError):
    """A command of several steps stopped part way: the message says what was
    done and what was not; it exits as what stopped it (a refusal 3, a node
    that stopped answering 4, a failed step 1)."""

    def __init__(self, message: str, cause: HavirtError):
        super().__init__(message)
        self.cause = cause

    @property
    def exit_code(self) -> int:
        return self.cause.exit_code


class Reported(HavirtError):
    """What went wrong was printed already (a scan's or validate's anomalies,
    the part of a command that failed): exit 1, nothing more said."""

    exit_code = EXIT_FAILURE

    def __init__(self):
        super().__init__("")


class RemoteError(HavirtError):
    """A remote command ran but failed."""

    exit_code = EXIT_FAILURE


class ParseError(HavirtError):
    """virsh printed something havirt does not understand; names the line."""

    exit_code = EXIT_FAILURE


class LockBusy(HavirtError):
    """Another havirt held the lock for longer than the configured wait."""

    exit_code = EXIT_LOCKED


class LockLost(HavirtError):
    """The lock's lease in the store ran out while an operation held it (the
    store unreachable, or this process stopped for longer than lock_ttl): the
    operation stops before its next step."""

    exit_code = EXIT_LOCKED


class StoreUnavailable(HavirtError):
    """The shared store (etcd) did not answer, or has no quorum: nothing was
    read or written by the request that failed, unless the message says that
    a write was not confirmed (a member got it: etcd may have done it)."""

    exit_code = EXIT_STORE


class StoreRefused(HavirtError):
    """The store (etcd) answered that it will not do a request (the message
    gives its reason: a request larger than it takes, a permission): nothing
    was done by that request."""

    exit_code = EXIT_STORE


class MetricsError(HavirtError):
    """The metrics file could not be written (the scan itself was recorded)."""

    exit_code = EXIT_FAILURE
