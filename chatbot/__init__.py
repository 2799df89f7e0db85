"""Question to reply, logged: the engine, prompts, generation, variants, logs and A/B."""
