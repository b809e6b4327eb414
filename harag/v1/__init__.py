"""Generated from protos/harag/v1 by `make protos`. Do not edit."""
