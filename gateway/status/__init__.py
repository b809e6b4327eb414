"""The gateway's live status page: what operators watch (served beside /metrics)."""
