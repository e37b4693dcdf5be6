"""Language-model studies: backends, the request cache, the study pipeline, and the ICL-vs-IF, harmful-request
and XNLI studies."""

from . import translators  # noqa: F401 - registers the model-backed translators (hf:, llm:) with the transforms
