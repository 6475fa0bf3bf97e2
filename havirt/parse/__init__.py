"""Pure parsers: virsh output and domain XML -> facts, naming the bad line."""
