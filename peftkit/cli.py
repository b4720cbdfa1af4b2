"""``peftkit`` command line: ``train`` (one run -> result.json), ``params`` (parameter counts of a method on a
paper-size model), ``params-report`` (the counts table for every method, written to reports/), ``reproduce``
(execute the notebooks, see :mod:`peftkit.reproduce`), ``data fetch`` (:mod:`peftkit.datafetch`) and ``plan``
(:mod:`peftkit.plan`)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .config import parse_option

ARCHS = ("bert-base", "roberta-base", "roberta-large", "gpt2", "gpt2-medium")


def build(arch: str):
    """A randomly initialised paper-size backbone on the meta device (no download, no memory)."""
    import torch
    from transformers import BertConfig, BertModel, GPT2Config, GPT2Model, RobertaConfig, RobertaModel

    if arch not in ARCHS:
        raise ValueError(f"invalid option arch={arch!r}: allowed one of {', '.join(ARCHS)}")
    roberta = dict(vocab_size=50265, max_position_embeddings=514, type_vocab_size=1, pad_token_id=1,
                   bos_token_id=0, eos_token_id=2, layer_norm_eps=1e-5)
    configs = {
        "bert-base": (BertModel, BertConfig()),
        "roberta-base": (RobertaModel, RobertaConfig(**roberta)),
        "roberta-large": (RobertaModel, RobertaConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                                      intermediate_size=4096, **roberta)),
        "gpt2": (GPT2Model, GPT2Config()),
        "gpt2-medium": (GPT2Model, GPT2Config(n_embd=1024, n_layer=24, n_head=16)),
    }
    cls, cfg = configs[arch]
    with torch.device("meta"):
        return cls(cfg)


def params(arch: str, method: str, **options) -> dict:
    """Counts for ``method`` on ``arch``: trainable (method only, while training), inference (merged form)."""
    import peftkit

    model = peftkit.apply(build(arch), method, **options)
    counts = peftkit.count_parameters(model)
    base = counts["total"] - counts["trainable"] if method != "full" else counts["total"]
    try:
        peftkit.merge(model)
        mergeable = True
    except ValueError:
        mergeable = False  # gated components: inference runs unmerged, same parameter count
    inference = peftkit.count_parameters(model)["inference"]
    return {"arch": arch, "method": method, "options": peftkit.make_config(method, **options).to_dict(),
            "trainable": counts["trainable"], "inference": inference, "mergeable": mergeable,
            "base": base if method != "full" else counts["total"],
            "inference_percent_of_base": round(100.0 * inference / (base or 1), 4)}


# The rows of reports/parameters.md: (label, method, options, the papers' figure where they give one).
REPORT_ROWS = [
    ("Full fine-tuning", "full", {}, None),
    ("BitFit", "bitfit", {}, None),
    ("Pfeiffer adapter (b=48)", "pfeiffer", {}, 894528),
    ("Houlsby adapter (b=48)", "houlsby", {}, None),
    ("LoRA (r=8, q,v)", "lora", {}, 294912),
    ("Prefix-tuning (L=10)", "prefix", {}, 184320),
    # AdaMix over prefix / prompt: peftkit's extension (docs/adamix_prefix.md); merged, one prefix / one prompt
    ("AdaMix-prefix (M=4, L=10, shared MLP)", "adamix", {"base": "prefix"}, 184320),
    ("AdaMix-prefix (M=4, L=10, no sharing: 4 MLPs)", "adamix", {"base": "prefix", "share": "none"}, 184320),
    ("Prompt-tuning (20 tokens)", "prompt", {}, None),
    ("AdaMix-prompt (M=4, 20 tokens)", "adamix", {"base": "prompt"}, None),
    ("AdaMix-Adapter (M=4, b=48, shared up)", "adamix", {}, 894528),
    ("AdaMix-LoRA (M=4, r=8, shared B)", "adamix", {"base": "lora"}, 294912),
    ("UniPELT (AP)", "unipelt", {"variant": "AP"}, 1097304),
    ("UniPELT (APL)", "unipelt", {}, 1410672),
]


def params_report(out: Path, arch: str = "bert-base") -> Path:
    """Write reports/parameters.{md,json}: every method's counts on ``arch``, beside the papers' figures."""
    rows = [dict(params(arch, method, **opts), label=label, expected=exp) for label, method, opts, exp in REPORT_ROWS]
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# Parameter counts on {arch} (random weights built from its transformers config; head excluded)", "",
             "Rebuilt by `make params` (`python -m peftkit.cli params-report`).", "",
             "| method | trainable while training | inference (merged) | % of base | expected (methods.md) "
             "| mergeable |",
             "|---|---:|---:|---:|---:|---|"]
    for r in rows:
        exp = f"{r['expected']:,}" + (" ✓" if r["expected"] == r["inference"] else " ✗") if r["expected"] else "–"
        lines.append(f"| {r['label']} | {r['trainable']:,} | {r['inference']:,} | {r['inference_percent_of_base']:.3f} "
                     f"| {exp} | {'yes' if r['mergeable'] else 'no (gated)'} |")
    from .atomic import write_json, write_text

    write_text(out / "parameters.md", "\n".join(lines) + "\n")
    write_json(out / "parameters.json", rows)
    from .reporting import write_index

    write_index(out, [(out / name, f"Parameter counts of every method on {arch} beside the papers' ({what})",
                       "make params") for name, what in (("parameters.md", "Markdown"), ("parameters.json", "JSON"))])
    print(f"wrote {out / 'parameters.md'}")
    return out / "parameters.md"


#: what Ctrl-C leaves behind, per command (``data`` says its own, see :mod:`peftkit.datafetch`)
INTERRUPTED = {
    "train": "Finished runs are kept; run the same command again to resume from the last checkpoint.",
    "reproduce": "Finished runs are kept and the interrupted notebook's reports are as they were; run the same "
                 "command again to resume from the last checkpoint.",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        return _main(argv)
    except KeyboardInterrupt:
        if os.environ.get("PEFTKIT_DEBUG"):
            raise
        said = INTERRUPTED.get(argv[0] if argv else "")
        print("\npeftkit: interrupted." + (f" {said}" if said else ""), file=sys.stderr)
        return 130


def _main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="peftkit", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("params", help="parameter counts of a method on a paper-size backbone (JSON)")
    p.add_argument("--arch", required=True, help="one of " + ", ".join(ARCHS))
    p.add_argument("--method", required=True)
    p.add_argument("--option", action="append", default=[], metavar="K=V", help="method option, repeatable")
    _train_parser(sub)
    r = sub.add_parser("params-report", help="write reports/parameters.md for every method")
    r.add_argument("--out", default="reports")
    r.add_argument("--arch", default="bert-base")
    sub.add_parser("reproduce", add_help=False, help="execute the notebooks with papermill and rebuild the reports "
                   "(see peftkit reproduce --help)")
    sub.add_parser("data", add_help=False, help="data fetch: download and verify the papers' data files (see "
                   "peftkit data fetch --help)")
    sub.add_parser("plan", add_help=False, help="a profile's full grid: runs, examples x epochs, GPU-hours (see "
                   "peftkit plan --help)")
    if argv[:1] == ["reproduce"]:  # its own parser: peftkit.reproduce
        from .reproduce import main as reproduce_main

        return reproduce_main(argv[1:])
    if argv[:1] == ["data"]:  # its own parser: peftkit.datafetch
        from .datafetch import main as data_main

        return data_main(argv[1:])
    if argv[:1] == ["plan"]:  # its own parser: peftkit.plan
        from .plan import main as plan_main

        return plan_main(argv[1:])
    args = ap.parse_args(argv)
    try:
        if args.cmd == "train":
            return _train(args)
        if args.cmd == "params":
            options = dict(parse_option(o) for o in args.option)
            print(json.dumps(params(args.arch, args.method, **options), indent=2))
        else:
            params_report(Path(args.out), args.arch)
    except (ValueError, FileNotFoundError) as e:  # DataError and BackboneError are ValueErrors
        if os.environ.get("PEFTKIT_DEBUG"):
            raise
        print(f"peftkit: error: {e}", file=sys.stderr)
        return 2
    return 0


def _train_parser(sub) -> None:
    t = sub.add_parser("train", help="train and evaluate one run; writes OUT/result.json (skipped if it exists)")
    t.add_argument("--task", required=True, help="GLUE (rte, sst-2, ...), few-shot (fewshot:sst-2, mr, ...) or NLG")
    t.add_argument("--method", required=True)
    t.add_argument("--option", action="append", default=[], metavar="K=V", help="method option, repeatable")
    t.add_argument("--out", required=True, help="run directory (result.json, best/)")
    t.add_argument("--profile", default="cpu", help="smoke | cpu | paper: the presets the other flags override")
    t.add_argument("--model", help="minilm (embedded default), a local path, or a hub name")
    t.add_argument("--head", help="classifier | prompt | causal (default from the task)")
    t.add_argument("--k", type=int, help="GLUE: UniPELT low-resource K; few-shot: examples per class (16)")
    t.add_argument("--data-seed", type=int)
    t.add_argument("--seed", type=int, default=42)
    g = t.add_mutually_exclusive_group()
    g.add_argument("--max-steps", type=int)
    g.add_argument("--epochs", type=float)
    for flag, typ in (("--lr", float), ("--batch-size", int), ("--max-length", int), ("--eval-steps", int),
                      ("--patience", int), ("--warmup-ratio", float), ("--weight-decay", float),
                      ("--consistency", float), ("--label-smoothing", float), ("--max-train", int),
                      ("--max-eval", int)):
        t.add_argument(flag, type=typ)
    t.add_argument("--protocol", help="adamix-glue | unipelt-glue | adamix-nlg | lmbff-fewshot (default: by task and "
                   "method, the protocol of the paper the run is compared with)")
    t.add_argument("--adam-epsilon", type=float)
    t.add_argument("--consistency-ce", help="AdaMix consistency task loss: first (the authors') | mean of both passes")
    t.add_argument("--backbone-dropout", type=_dropout, help="'checkpoint' or a probability for every backbone dropout")
    t.add_argument("--nlg-format", help="authors (context eos ' 'completion eos) | plain (no space)")
    t.add_argument("--extra-eos", type=_ids, help="comma-separated GPT-2 token ids that also end a beam ('' for none)")
    t.add_argument("--evaluate-model", help="best (dev-selected weights) | final (the last weights)")
    t.add_argument("--precision", help="auto | bf16 | fp32 (auto: bf16 autocast where native; default: the "
                   "profile's: fp32 as the authors trained, bf16 autocast in the scaled profiles where native)")
    t.add_argument("--optimizer", help="hf-adamw (transformers 4.x AdamW, the authors') | torch-adamw")
    t.add_argument("--grad-reset", help="zero (torch < 2, the authors': experts drawn once keep stepping) | none")
    t.add_argument("--weight-decay-scope", help="hf (no decay on biases / LayerNorm) | all (AdaMix's NLG code)")
    t.add_argument("--sampler", help="random (the authors') | group_by_length (batches of similar length)")
    t.add_argument("--max-grad-norm", type=float, help="gradient clipping norm; 0 = no clipping")
    t.add_argument("--drop-last", type=_bool, help="true | false: drop the last incomplete training batch")
    t.add_argument("--inference-modes", action="store_true", help="AdaMix: also evaluate random/fixed/ensemble")
    t.add_argument("--data-dir", help="directory with glue/, fewshot/, nlg/ (default $PEFTKIT_DATA_DIR)")
    t.add_argument("--force", action="store_true", help="rerun even if OUT/result.json exists")
    t.add_argument("--quiet", action="store_true")


def _dropout(text: str):
    return text if text == "checkpoint" else float(text)


def _bool(text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: allowed true, false")
    return text.lower() == "true"


def _ids(text: str) -> list:
    return [int(t) for t in text.split(",") if t.strip()]


def _train(args) -> int:
    from .experiment import RunSpec, run

    fields = {k: v for k, v in vars(args).items() if k not in ("cmd", "option", "force", "quiet") and v is not None}
    fields["options"] = dict(parse_option(o) for o in args.option)
    spec = RunSpec(**fields)
    from .trainer import TrainingDiverged

    try:
        result = run(spec, force=args.force, progress=not args.quiet)
    except TrainingDiverged as e:  # not bad input: the run itself failed (exit 1), its last checkpoint kept
        print(f"peftkit: error: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"out": args.out, "best_metrics": result["best_metrics"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
