"""Language-model studies: backends, prompt data, and the studies of SPEC §2."""
