"""peftkit's benchmark suite: training-step time and peak memory of peftkit against peft, AdapterHub ``adapters``
and plain PyTorch, AdaMix's overhead over a single module, and inference latency of merged / gated methods.

    python -m bench --out reports/benchmarks.json            # MiniLM-L6; writes the JSON and reports/benchmarks.md
    python -m bench --backbone minilm,bert-base --only 'lora,adamix-*'
    python -m bench --quick --out /tmp/b.json               # tiny model, seconds (the smoke test)
    python -m bench --profile peftkit:lora --backbone minilm # torch.profiler + cProfile of one contender
    python -m bench.report reports/benchmarks.json         # re-render the Markdown from the JSON alone

Modules: :mod:`bench.backbones` (models, the fixed batch), :mod:`bench.contenders` (what is built and timed),
:mod:`bench.measure` (peak memory; the interleaved timing and its statistics are
:mod:`peftkit.timing`'s), :mod:`bench.suite` (groups, ratios, goals),
:mod:`bench.report` (provenance, table, JSON, Markdown), :mod:`bench.profile`.

``python -m bench.cuda_check --out DIR`` (``--dry`` on the CPU) is the one-command check of the CUDA path (README,
"On a GPU"): :mod:`bench.cuda_check` (sections, budget, outputs), :mod:`bench.cuda_common`, :mod:`bench.cuda_models`
(methods, routing, generation), :mod:`bench.cuda_timing`, :mod:`bench.cuda_pack` (Ray packing),
:mod:`bench.cuda_ddp`, :mod:`bench.cuda_report` (its Markdown; ``python -m bench.cuda_report DIR/cuda_check.json``).
"""
