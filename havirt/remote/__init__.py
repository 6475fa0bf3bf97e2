"""Everything that reaches a node: command text (quoted once), steps, the executor and its audit log, the SSH transports (paramiko, OpenSSH)."""
