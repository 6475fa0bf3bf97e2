"""Operations: one module per family of commands, each one unit of work (lock, load, fresh scan, plan, execute or print, one commit)."""
