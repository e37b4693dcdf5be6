"""conjugate: catastrophic forgetting via implicit inference, and conjugate prompting."""
__version__ = "0.1.0"
