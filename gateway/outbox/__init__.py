"""The durable index-update pipeline: every write to a retriever (replace or remove) goes
through an outbox per retriever, is applied in order by one delivery loop, and is acked only
after the retriever acknowledged it. See README "The index-update pipeline"."""
