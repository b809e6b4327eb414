"""The feedback loop: what each answer was, users' ratings of it, the quality metric, cost."""
