"""An offline miniature of the ICL-vs-instruction-following study (SPEC §2a, §3): a character-level LM pretrained
on a synthetic multilingual corpus, instruction-tuned on English, evaluated per language and with conjugate
prompting — on a CPU, in minutes, with nothing downloaded.

- :mod:`.corpus` — languages (English, Leetspeak, Pig Latin, made-up lexicon languages), documents, splits;
- :mod:`.model` — :class:`~.model.CausalLM` (the synthetic study's blocks + embeddings + LM head), tokenizer,
  cached greedy decoding, a :class:`~conjugate.lm.backend.Backend` adapter;
- :mod:`.config` — :class:`~.config.MiniLMConfig`, presets ``smoke`` / ``quick``;
- :mod:`.study` — the pipeline (:func:`~.study.run_minilm`); :mod:`.plots` — its figure.
"""
