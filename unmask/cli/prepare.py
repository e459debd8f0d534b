"""`unmask prepare`: prepare a corpus (or the author-attribution set) into a dataset directory."""

from __future__ import annotations

from unmask.cli.errors import reject_extra

NAME = "prepare"


def add_parser(sub) -> None:
    p = sub.add_parser(NAME, help="tokenize a corpus into a dataset directory")
    p.add_argument("source", help="shipped corpus (tinyshakespeare, frankenstein, "
                                  "pride_and_prejudice), 'authors' (the author-attribution "
                                  "task over all three) or a UTF-8 text file")
    p.add_argument("--out", required=True, help="dataset directory to write")
    p.add_argument("--block-size", type=int, default=1024, help="longest context the dataset serves")



def run(args, extra: list[str]) -> int:
    reject_extra(extra)
    from unmask.data.dataset import Dataset
    from unmask.data.prepare import prepare

    if args.source == "authors":
        from unmask.data.authors import prepare_authors
        out = prepare_authors(args.out)
    else:
        out = prepare(args.source, args.out, block_size=args.block_size)
    meta = Dataset.load(out).meta
    print(f"prepared {meta['name']} in {out}: {meta['train_tokens']:,} train / "
          f"{meta['val_tokens']:,} val tokens, vocabulary {meta['vocab_size']} "
          f"(+{meta['extended_vocab_size'] - meta['vocab_size']} special)")
    return 0
