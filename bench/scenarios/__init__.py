"""The benchmark scenarios; each starts its own fresh processes and returns a ScenarioResult."""
