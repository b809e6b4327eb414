"""What the gateway shares with its other replicas: the link to Redis and what builds on it."""
