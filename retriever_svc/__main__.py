"""`python -m retriever_svc --impl primary|fallback`: serve RetrieverService until SIGTERM."""

import sys

from retriever_svc.service import build
from retriever_svc.settings import PORTS, SETTINGS
from servicekit.main import component_main

if __name__ == "__main__":
    sys.exit(component_main("retriever", PORTS, SETTINGS, build))
