"""Text in, tokens out: corpora, tokenizers, prepared dataset directories, batch windows."""
