"""`python -m embedder_svc --impl primary|fallback`."""

from __future__ import annotations

import sys

from embedder_svc.service import build
from embedder_svc.settings import EmbedderConfig
from servicekit.main import component_main

if __name__ == "__main__":
    sys.exit(component_main(EmbedderConfig, build))
