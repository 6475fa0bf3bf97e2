#!/usr/bin/env python3
"""Run havirt from a checkout: ./havirt.py node list

Uses the checkout's virtualenv (.venv, made by `make`) when there is one.
"""

import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
venv_python = os.path.join(here, ".venv", "bin", "python")
if os.path.exists(venv_python) and os.path.abspath(sys.prefix) != os.path.join(here, ".venv"):
    os.execv(venv_python, [venv_python, os.path.abspath(__file__), *sys.argv[1:]])

sys.path.insert(0, here)

from havirt.cli import main  # noqa: E402

if __name__ == "__main__":
    main()
