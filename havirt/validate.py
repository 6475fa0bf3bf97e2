"""cluster validate: a read-only consistency report."""

from __future__ import annotations

from .cluster import Finding, usable_memory
from .domxml import parse_domain_xml
from .errors import HavirtError


def validate(app) -> list[Finding]:
    raise NotImplementedError
