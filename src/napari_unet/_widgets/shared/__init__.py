"""What the dock widgets share: controls, layer helpers, messages, thread workers, the Model box."""
