"""`python -m generator_svc --impl primary|fallback`."""

from __future__ import annotations

import sys

from generator_svc.service import build
from generator_svc.settings import GeneratorConfig
from servicekit.main import component_main

if __name__ == "__main__":
    sys.exit(component_main(GeneratorConfig, build))
