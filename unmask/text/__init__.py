"""Raw text in: shipped corpora, strict UTF-8 reading, Gutenberg stripping, tokenizers."""
