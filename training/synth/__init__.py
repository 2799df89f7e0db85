"""Synthetic training and test data from the indexed documents (``chatbot data synth``)."""
