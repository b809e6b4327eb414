"""`python -m retriever_svc --impl primary|fallback`: serve RetrieverService until SIGTERM."""

import os
import sys

# Must precede importing numpy. A search is one memory-bound matrix-vector product per
# request; OpenBLAS's worker threads do not speed it up but waking them from gRPC worker
# threads added ~10 ms to the p95 (measured at 10k x 384). Parallelism comes from requests.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from retriever_svc.service import build
from retriever_svc.settings import RetrieverConfig
from servicekit.main import component_main

if __name__ == "__main__":
    sys.exit(component_main(RetrieverConfig, build))
