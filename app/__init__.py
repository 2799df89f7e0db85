"""The surfaces users touch: the command line, the web UI, the OpenAI-compatible API, the server
and its background jobs. Nothing imports this package; it calls ``chatbot`` and ``training``."""
