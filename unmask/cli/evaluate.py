"""`unmask eval`: evaluate a checkpoint: likelihood and sample metrics, or repair scores."""

from __future__ import annotations

import json

from unmask.cli.errors import reject_extra
from unmask.sampling.proofread import PROOFREADERS

NAME = "eval"


def add_parser(sub) -> None:
    p = sub.add_parser(NAME, help="likelihood (exact NLL, ELBO or accuracy, by model), and "
                                     "samples' judge NLL, diversity, style and word validity "
                                     "beside the real text's "
                                     "(with --repair: detection and repair of corrupted text)")
    p.add_argument("checkpoint")
    p.add_argument("--data", help="dataset dir (default: the one the model was trained on)")
    p.add_argument("--samples", type=int, default=16,
                   help="samples scored for generative quality, style and word validity "
                        "(0: none)")
    p.add_argument("--sample-length", type=int,
                   help="length of those samples (default: the checkpoint's sample.length, "
                        "capped by its context)")
    p.add_argument("--judge", help="language_model checkpoint that scores the samples (judge "
                                   "NLL); default: a run named `judge` beside this one; "
                                   "'none': no judge")
    p.add_argument("--mc-draws", type=int, default=2,
                   help="diffusion models: independent draws per window for the Monte-Carlo "
                        "ELBO and LLaDA estimates with standard errors (0: skip)")
    p.add_argument("--mc-windows", type=int, default=64,
                   help="diffusion models: validation windows for those estimates")
    p.add_argument("--max-windows", type=int, default=None,
                   help="score only the first N validation windows (default: the whole split)")
    p.add_argument("--t-points", type=int, default=8,
                   help="diffusion models: stratified times per window for the ELBO")
    p.add_argument("--batch-size", type=int, default=None,
                   help="windows per forward pass (default: the checkpoint's train.batch_size)")
    p.add_argument("--repair", type=float, metavar="RATE",
                   help="instead: replace this fraction of characters of fixed validation "
                        "passages, report detection precision/recall/F1 and the character "
                        "error rate before/after the proofreader repairs them "
                        "(self_correction checkpoints)")
    p.add_argument("--passages", type=int, default=64,
                   help="--repair: validation passages (windows of the model's context)")
    p.add_argument("--change-margin", type=float, default=None,
                   help="--repair: replace a flagged character (direct: any character) only "
                        "by one this many times as probable (1 = plain argmax; default 1, "
                        "direct 3)")
    p.add_argument("--flag-bias", type=float, default=0.0,
                   help="--repair: added to the flag logit (> 0 flags more, < 0 fewer)")
    p.add_argument("--proofreader", default="remask", choices=tuple(PROOFREADERS),
                   help="--repair: 'remask' flags with the model's [WRONG] output and refills "
                        "with the remasking sampler; 'channel' takes each character's "
                        "noisy-channel posterior mode (its fill distribution times the "
                        "chance of reading what is there); 'direct' takes, in one pass over "
                        "the text as read, what the model says belongs at each position "
                        "(weight_swap_fill > 0 checkpoints)")
    p.add_argument("--prior-rate", type=float, default=None,
                   help="--proofreader channel: the expected share of wrong characters "
                        "(default: the --repair rate)")
    p.add_argument("--repair-seed", type=int, default=0,
                   help="--repair: seed of the corruption draw (tune the knobs on one seed, "
                        "report another; default 0, the draw README's figures use)")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true")


def run(args, extra: list[str]) -> int:
    reject_extra(extra)
    if args.repair is not None:
        from unmask.eval.repair import evaluate_repair
        result = evaluate_repair(args.checkpoint, args.repair, data=args.data,
                                 device=args.device, n_passages=args.passages,
                                 change_margin=args.change_margin, flag_bias=args.flag_bias,
                                 seed=args.repair_seed, proofreader=args.proofreader,
                                 prior_rate=args.prior_rate)
    else:
        from unmask.eval.report import evaluate_checkpoint
        result = evaluate_checkpoint(args.checkpoint, data=args.data, device=args.device,
                                     n_samples=args.samples, max_windows=args.max_windows,
                                     t_points=args.t_points, batch_size=args.batch_size,
                                     judge=args.judge, sample_length=args.sample_length,
                                     mc_draws=args.mc_draws, mc_windows=args.mc_windows)
    if args.json:
        print(json.dumps(result))
    elif args.repair is not None:
        for key, value in result.items():
            print(f"{key:>24}: {value}")
    else:
        from unmask.eval.summary import print_report
        print_report(result)
    return 0
