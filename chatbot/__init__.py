"""Question to reply, logged: the engine and the surfaces users touch (web UI, API, CLI)."""
