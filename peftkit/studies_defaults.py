"""The studies' defaults as one table: per study and profile, the grid (tasks, methods, seeds, K, ...) and the
training budget. Every notebook parameter left at ``None`` takes its value from here (see :mod:`peftkit.studies`).
"""
from __future__ import annotations

PROFILES = ("smoke", "cpu", "paper")
#: notebook (file stem in notebooks/) -> study name
NOTEBOOKS = {"01_glue_main": "glue_main", "02_low_resource": "low_resource", "03_fewshot": "fewshot", "04_nlg": "nlg",
             "05_ablation_bottleneck": "ablation_bottleneck", "06_ablation_adamix": "ablation_adamix",
             "07_unipelt_gates": "unipelt_gates", "08_efficiency": "efficiency"}
STUDIES = tuple(NOTEBOOKS.values())

#: GLUE tasks with train and dev files in the shared data; QNLI has dev only, MNLI and QQP are absent.
GLUE_TASKS = ("cola", "sst2", "mrpc", "stsb", "rte")
GLUE_NOT_RUN = {"qnli": "the data directory has QNLI's dev set but no train file",
                "mnli": "MNLI is absent from the data directory", "qqp": "QQP is absent from the data directory"}
NLG_NOT_RUN = {"dart": "the data directory has DART's dev and test sets but no train file, and an "
                       "evaluation-only run would score an untrained model"}

#: method_label -> (registry name, options): the papers' settings (peftkit's defaults are the papers').
METHODS = {
    "full": ("full", {}), "bitfit": ("bitfit", {}), "prompt": ("prompt", {}), "prefix": ("prefix", {}),
    "lora": ("lora", {}), "pfeiffer": ("pfeiffer", {}), "houlsby": ("houlsby", {}),
    "adamix-adapter": ("adamix", {"base": "adapter"}),
    "adamix-pfeiffer": ("adamix", {"base": "pfeiffer"}), "adamix-houlsby": ("adamix", {"base": "houlsby"}),
    "adamix-lora": ("adamix", {"base": "lora"}),
    "unipelt-AP": ("unipelt", {"variant": "AP"}), "unipelt-APL": ("unipelt", {"variant": "APL"}),
}
#: AdaMix's NLG settings (GPT-2 medium): LoRA r=4, alpha=32, dropout 0.1 on q,v; M=8 LoRA-A with a shared B (the
#: adamix-nlg protocol's method defaults, peftkit.protocols, spelled out so run names show them).
NLG_OPTIONS = {"lora": {"r": 4, "alpha": 32, "dropout": 0.1},
               "adamix-lora": {"r": 4, "alpha": 32, "dropout": 0.1, "num_modules": 8, "share": "up"}}
#: DART is trained without LoRA dropout (the other DART differences are the adamix-nlg protocol's, protocols.PROTOCOLS).
NLG_OPTIONS_BY_TASK = {"dart": {"lora": {"dropout": 0.0}, "adamix-lora": {"dropout": 0.0}}}

_ALL_GLUE_METHODS = ("full", "bitfit", "pfeiffer", "prefix", "lora", "unipelt-AP", "unipelt-APL", "adamix-adapter",
                     "adamix-lora")
_LOWRES_METHODS = ("full", "bitfit", "pfeiffer", "prefix", "lora", "unipelt-AP", "unipelt-APL")
_FEWSHOT_METHODS = ("full", "pfeiffer", "lora", "adamix-adapter", "adamix-lora")
_NLG_METHODS = ("lora", "pfeiffer", "adamix-lora", "adamix-adapter")
_FEWSHOT_PAPER_TASKS = ("sst-2", "sst-5", "mr", "cr", "mpqa", "subj", "trec", "cola", "mrpc", "qnli", "rte")
_LOWRES_SEEDS = (111, 222, 333, 444, 555)
_FEWSHOT_SEEDS = (13, 21, 42, 87, 100)
_SEEDS3 = (42, 43, 44)
_SEEDS5 = (42, 43, 44, 45, 46)  # a claim verdict needs 5 pairs per task (reporting.claims.MIN_PAIRS)
# smoke: 2 steps on 16 examples (32 tokens), one evaluation on 16; few-shot: its 32 examples, 64 tokens (room for
# the prompt); NLG: decoding 2 test sources
_SMOKE = dict(max_steps=2, eval_steps=2, max_train=16, max_eval=16, max_length=32)
_SMOKE_FEWSHOT = dict(max_steps=2, eval_steps=2, max_eval=16)
_SMOKE_NLG = dict(max_steps=2, eval_steps=2, max_train=16, max_eval=2)

# The cpu budgets scale the protocols (peftkit.protocols) in data, epochs and backbone only: model selection stays
# the protocol's (AdaMix: best epoch on dev; UniPELT: early stopping on dev, whose patience a few epochs never
# reach). Only the efficiency study scores the final weights (eval_steps=0), since it measures time, not accuracy.
_NO_SELECTION = dict(eval_steps=0)
# 1,000 training examples x 2 epochs per run (measured on SST-2 at 512 x 2 epochs: LoRA 71%, AdaMix 65%, 15-20 s a
# run on 2 idle cores; after 256 or 512 examples seen once, the PEFT methods were still at chance).
_CPU_GLUE = dict(max_train=1000, epochs=2)

# Per study and profile: the grid's defaults (every notebook parameter left at None) and the training budget
# (RunSpec fields on top of the profile's presets in peftkit.presets, which are a single run's defaults).
# smoke: 1-3 tiny runs per notebook.
# cpu: MiniLM-L6 on 2 CPU cores, SST-2 (short sentences, learnable in ~1,000 examples) as the main task; each
# notebook's introduction says what it covers and how long it takes. paper: the papers' grids on the paper backbones
# and protocols (a GPU's work).
DEFAULTS: dict[str, dict[str, dict]] = {
    "glue_main": {
        "smoke": dict(tasks=("rte",), methods=("lora", "adamix-adapter"), seeds=(42,), budget=_SMOKE),
        "cpu": dict(tasks=("sst2",), methods=_ALL_GLUE_METHODS, seeds=_SEEDS3, budget=_CPU_GLUE),
        "paper": dict(tasks=GLUE_TASKS, methods=_ALL_GLUE_METHODS, seeds=_SEEDS3),
    },
    "low_resource": {
        "smoke": dict(tasks=("rte",), methods=("lora", "unipelt-APL"), k=(100,), data_seeds=(111,), seeds=(42,),
                      budget=_SMOKE),
        "cpu": dict(tasks=("sst2",), methods=_LOWRES_METHODS, k=(100,), data_seeds=_LOWRES_SEEDS, seeds=(42,),
                    budget=dict(epochs=10)),
        "paper": dict(tasks=GLUE_TASKS, methods=_LOWRES_METHODS, k=(100, 500, 1000), data_seeds=_LOWRES_SEEDS,
                      seeds=(42,)),
    },
    "fewshot": {
        "smoke": dict(tasks=("sst-2",), methods=("lora",), classifier_head=("lora",), seeds=(13,),
                      budget=_SMOKE_FEWSHOT),
        "cpu": dict(tasks=("sst-2",), methods=_FEWSHOT_METHODS, classifier_head=("lora",), seeds=_FEWSHOT_SEEDS,
                    budget=dict(max_steps=80, eval_steps=40)),
        "paper": dict(tasks=_FEWSHOT_PAPER_TASKS, methods=_FEWSHOT_METHODS, classifier_head=("lora",),
                      seeds=_FEWSHOT_SEEDS),
    },
    "nlg": {
        "smoke": dict(tasks=("e2e",), methods=("lora",), seeds=(42,), budget=_SMOKE_NLG),
        "cpu": dict(tasks=("e2e", "webnlg"), methods=_NLG_METHODS, seeds=(42,),
                    budget=dict(max_train=1000, epochs=1, max_eval=20)),
        "paper": dict(tasks=("e2e", "webnlg"), methods=_NLG_METHODS, seeds=(42,)),
    },
    "ablation_bottleneck": {
        "smoke": dict(tasks=("rte",), methods=("pfeiffer", "adamix-adapter"), bottlenecks=(48,), seeds=(42,),
                      budget=_SMOKE),
        "cpu": dict(tasks=("sst2",), methods=("pfeiffer", "adamix-adapter"), bottlenecks=(8, 16, 32, 48, 64),
                    seeds=_SEEDS3, budget=_CPU_GLUE),
        "paper": dict(tasks=("sst2", "mrpc", "rte"), methods=("pfeiffer", "adamix-adapter"),
                      bottlenecks=(8, 16, 32, 48, 64), seeds=_SEEDS3),
    },
    # AdaMix (adapter) variants; M=1 is the single adapter of the same inference size the claim compares with.
    # consistency: None = the protocol's weight (0 on BERT-family classifiers), 1.0 = the RoBERTa setting.
    # lora_expert_init: AdaMix-LoRA runs with identical (the NLG code's) or independent starting modules.
    "ablation_adamix": {
        "smoke": dict(tasks=("rte",), seeds=(42,), num_modules=(1, 4), share=("up",), consistency=(None,),
                      lora_expert_init=(), adapter_baseline=False, budget=_SMOKE),
        "cpu": dict(tasks=("sst2",), seeds=_SEEDS5, num_modules=(1, 2, 4, 8), share=("up", "none"),
                    consistency=(None, 1.0), lora_expert_init=("identical", "independent"), adapter_baseline=False,
                    budget=_CPU_GLUE),
        "paper": dict(tasks=("sst2", "mrpc", "rte"), seeds=_SEEDS3, num_modules=(1, 2, 4, 8), share=("up", "none"),
                      consistency=(None, 1.0), lora_expert_init=("identical", "independent"),
                      adapter_baseline=False),
    },
    "unipelt_gates": {
        "smoke": dict(tasks=("rte",), methods=("unipelt-APL",), k=(100,), data_seeds=(111,), seeds=(42,),
                      budget=_SMOKE),
        "cpu": dict(tasks=("sst2", "cola"), methods=("unipelt-APL",), k=(100, 500, 1000), data_seeds=(111, 222),
                    seeds=(42,), budget=dict(epochs=5)),
        "paper": dict(tasks=GLUE_TASKS, methods=("unipelt-APL",), k=(100, 500, 1000, "full"),
                      data_seeds=_LOWRES_SEEDS, seeds=(42,)),
    },
    # efficiency is compared with UniPELT's Table 4: every method (AdaMix included) under UniPELT's protocol, so
    # that all rows train at the same batch size.
    "efficiency": {
        "smoke": dict(tasks=("rte",), methods=("full", "lora"), seeds=(42,),
                      budget=dict(protocol="unipelt-glue", **_SMOKE)),
        "cpu": dict(tasks=("sst2",), methods=_ALL_GLUE_METHODS, seeds=_SEEDS3,
                    budget=dict(max_train=1000, epochs=1, protocol="unipelt-glue", **_NO_SELECTION)),
        "paper": dict(tasks=("sst2",), methods=_ALL_GLUE_METHODS, seeds=(42,),
                      budget=dict(epochs=1, protocol="unipelt-glue")),
    },
}
# The parameters each study's grid takes (beyond model, seeds, budget and runs_dir), notebook names in upper case.
STUDY_PARAMETERS = {
    "glue_main": ("tasks", "methods"), "low_resource": ("tasks", "methods", "k", "data_seeds"),
    "fewshot": ("tasks", "methods", "classifier_head"), "nlg": ("tasks", "methods"),
    "ablation_bottleneck": ("tasks", "methods", "bottlenecks"),
    "ablation_adamix": ("tasks", "num_modules", "share", "consistency", "lora_expert_init", "adapter_baseline"),
    "unipelt_gates": ("tasks", "methods", "k", "data_seeds"), "efficiency": ("tasks", "methods"),
}
COMMON_PARAMETERS = ("model", "seeds", "max_steps", "epochs", "max_train", "runs_dir")
