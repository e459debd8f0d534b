"""Tokenizers behind one protocol (see base.py); `load_tokenizer` picks one from its JSON."""
