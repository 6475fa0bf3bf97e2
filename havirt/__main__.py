"""python -m havirt: the havirt command."""

from havirt.cli import main

main()
