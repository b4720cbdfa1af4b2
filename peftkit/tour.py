"""What ``notebooks/00_tour.ipynb`` calls: the methods step by step on a real backbone and a handful of real
sentences (AdaMix routing, consistency loss, merging, inference modes; UniPELT gates; LoRA export to peft).

Every function takes a model carrying a peftkit method and a tokenised batch; none trains beyond the few steps
it is asked for. The notebook records what it shows with :func:`write_record` so that tests can assert on it.
"""
from __future__ import annotations

import contextlib
import copy
import re
from pathlib import Path
from typing import Iterator, Sequence

import torch
import torch.nn as nn

from .consistency import consistency_forward
from .core import count_parameters, gate_values, merged, routing, set_inference, state_of

_LAYER = re.compile(r"\.layer\.(\d+)\.|\.h\.(\d+)\.")


def sentences(task: str, n: int, data_dir: str | None = None) -> list[dict]:
    """``n`` dev examples of a GLUE task (``text_a``, ``text_b``, ``label``), alternating the two labels where the
    task has them, read with peftkit's data layer (``$PEFTKIT_DATA_DIR`` or ``data_dir``)."""
    from .data import load_glue

    ds = load_glue(task, "validation", data_dir)
    by_label: dict = {}
    for ex in ds:
        by_label.setdefault(ex["label"], []).append({k: ex[k] for k in ("text_a", "text_b", "label")})
    queues = [by_label[k] for k in sorted(by_label)]
    picked = [q[i] for i in range(n) for q in queues if i < len(q)]
    return picked[:n]


def sentence_table(examples: Sequence[dict]) -> "object":
    """The examples as a table (text_a, text_b, label); a single-sentence task's rows show "–" under text_b (not
    applicable) instead of a missing value."""
    import pandas as pd

    return pd.DataFrame([{"text_a": e["text_a"], "text_b": e.get("text_b") or "–", "label": e["label"]}
                         for e in examples])


def describe_sites(model: nn.Module) -> str:
    """:func:`peftkit.describe` with its module list summarised: one line per site (the layer index as ``*``) with
    how many trainable modules it holds and in which layers, e.g. ``bert.encoder.layer.*.output.pk_adapter: 30
    modules in layers 0-5``."""
    from .core import describe

    head, _, modules = describe(model).partition("trainable modules:\n")
    sites: dict[str, list] = {}
    for name in (line.strip() for line in modules.splitlines() if line.strip()):
        m = _LAYER.search(name)
        site = _LAYER.sub(lambda x: ".layer.*." if x.group(1) else ".h.*.", name, count=1)
        site = re.sub(r"((?:^|\.)pk_[A-Za-z_]+)\..*$", r"\1", site)  # the method's module, not its parts
        sites.setdefault(site, []).append(int(next(g for g in m.groups() if g is not None)) if m else None)
    lines = []
    for site, layers in sites.items():
        known = sorted({x for x in layers if x is not None})
        where = f" in layers {known[0]}-{known[-1]}" if len(known) > 1 else f" in layer {known[0]}" if known else ""
        lines.append(f"  {site}: {len(layers)} module{'s' if len(layers) > 1 else ''}{where}")
    return head + "trainable modules, one line per site:\n" + "\n".join(lines)


def batch(tokenizer, examples: Sequence[dict], max_length: int = 128) -> dict:
    """Tokenise examples (pairs where ``text_b`` is set) into one padded batch with ``labels``."""
    a = [e["text_a"] for e in examples]
    b = [e["text_b"] for e in examples] if all(e.get("text_b") for e in examples) else None
    enc = tokenizer(a, b, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    enc["labels"] = torch.tensor([int(e["label"]) for e in examples])
    return dict(enc)


def classifier(model_name: str = "minilm", seed: int = 0):
    """(tokenizer, a two-label sequence classifier) of ``model_name``; the head is drawn with ``seed``."""
    from .backbones import load_model, load_tokenizer

    torch.manual_seed(seed)
    return load_tokenizer(model_name), load_model(model_name, "classifier", num_labels=2)


@contextlib.contextmanager
def no_dropout(model: nn.Module) -> Iterator[nn.Module]:
    """Dropout off (p = 0) while in training mode, so that two passes differ only by routing. Covers
    ``nn.Dropout`` modules and the float ``dropout_prob`` that fused attention reads (BERT's SDPA attention)."""
    saved = [(m, "p", m.p) for m in model.modules() if isinstance(m, nn.Dropout)]
    saved += [(m, "dropout_prob", m.dropout_prob) for m in model.modules()
              if isinstance(getattr(m, "dropout_prob", None), float)]
    for m, attr, _ in saved:
        setattr(m, attr, 0.0)
    try:
        yield model
    finally:
        for m, attr, value in saved:
            setattr(m, attr, value)


def _inputs(b: dict) -> dict:
    return {k: v for k, v in b.items() if k != "labels"}


def route_table(routes: dict) -> "object":
    """{module name: [(down, up), ...]} -> a frame with one row per mixture module: layer, site (the module's name
    within its layer, e.g. "output.pk_adapter"), chosen modules."""
    import pandas as pd

    rows = []
    for name, choice in routes.items():
        m = _LAYER.search(name)
        rows.append({"layer": int(next(g for g in m.groups() if g is not None)) if m else None,
                     "site": name[m.end():] if m else name,
                     "modules (down/A, up/B)": choice if isinstance(choice, str)
                     else ", ".join(f"({a}, {b})" for a, b in choice)})
    return pd.DataFrame(rows)


def two_passes(model: nn.Module, b: dict) -> dict:
    """The same batch twice in training mode (dropout off): each pass's routing and logits, the largest logit
    difference between them, and a control: the routing generator rewound to before the first pass replays it
    exactly (``replay_max_abs_diff`` 0), so routing is the only thing that differs between the passes."""
    model.train()
    gen = state_of(model).generator
    start = gen.get_state()
    out = {}
    with no_dropout(model), torch.no_grad():
        for key in ("first", "second"):
            logits = model(**_inputs(b)).logits
            out[key] = {"routes": routing(model), "logits": logits}
        after = gen.get_state()
        gen.set_state(start)
        replay = model(**_inputs(b)).logits
        gen.set_state(after)
    out["max_abs_diff"] = float((out["first"]["logits"] - out["second"]["logits"]).abs().max())
    out["replay_max_abs_diff"] = float((out["first"]["logits"] - replay).abs().max())
    out["same_routes"] = out["first"]["routes"] == out["second"]["routes"]
    return out


def train_steps(model: nn.Module, b: dict, steps: int, lr: float = 1e-3, weight: float = 1.0) -> list[dict]:
    """``steps`` AdamW steps of AdaMix's consistency loss on one batch (dropout on, as in training). Per step: the
    two passes' logits (their routes differ), the task loss, the symmetric KL term and the total."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)
    model.train()
    log = []
    for _ in range(steps):
        loss, task, kl, out = consistency_forward(model, b, weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
        l1, l2 = out.logits.detach().chunk(2, dim=0)
        log.append({"pass1_logits": l1, "pass2_logits": l2, "routes": routing(model), "task_loss": float(task),
                    "kl": float(kl), "weight": weight, "loss": float(loss.detach())})
    return log


def step_table(log: Sequence[dict]) -> "object":
    """One row per consistency step: task loss (mean of the two passes), KL term, its weight and the total."""
    import pandas as pd

    return pd.DataFrame([{"step": i + 1, "task loss": s["task_loss"], "KL(p1, p2) symmetric": s["kl"],
                          "weight w": s["weight"], "loss = task + w·KL": s["loss"]} for i, s in enumerate(log)]
                        ).set_index("step")


def pass_table(step: dict, examples: Sequence[dict]) -> "object":
    """The two passes of one consistency step side by side: P(label 1) per example under each routing."""
    import pandas as pd

    p1 = torch.softmax(step["pass1_logits"].float(), -1)[:, 1]
    p2 = torch.softmax(step["pass2_logits"].float(), -1)[:, 1]
    return pd.DataFrame([{"sentence": e["text_a"][:60], "label": e["label"], "pass 1 P(1)": round(float(a), 4),
                          "pass 2 P(1)": round(float(b), 4)} for e, a, b in zip(examples, p1, p2)])


def compare_routes(passes: dict) -> "object":
    """Per mixture module: the (down, up) modules the first and the second pass drew."""
    first, second = route_table(passes["first"]["routes"]), route_table(passes["second"]["routes"])
    out = first.rename(columns={"modules (down/A, up/B)": "pass 1"})
    out["pass 2"] = second["modules (down/A, up/B)"].to_numpy()
    return out


def averaged_reference(model: nn.Module, b: dict) -> torch.Tensor:
    """Logits of the formula AdaMix's merge stands for, computed without merge: a copy of the model in which module
    0 of every mixture holds the mean of the M modules' weights and biases, evaluated with ``fixed-0``."""
    ref = copy.deepcopy(model)
    with torch.no_grad():
        for mod in ref.modules():
            if not hasattr(mod, "averaged"):
                continue
            for child in mod.children():
                if isinstance(child, nn.ModuleList) and len(child) > 1:
                    for pname, p in child[0].named_parameters():
                        p.copy_(torch.stack([dict(c.named_parameters())[pname] for c in child]).mean(0))
    set_inference(ref, "fixed-0")
    ref.eval()
    with torch.no_grad():
        return ref(**_inputs(b)).logits


def merge_check(model: nn.Module, b: dict) -> dict:
    """Merged logits twice (deterministic?) against :func:`averaged_reference`, and the parameter counts of the
    trainable form and of the merged (inference) form."""
    model.eval()
    set_inference(model, "merged")
    with merged(model), torch.no_grad():
        first = model(**_inputs(b)).logits
        second = model(**_inputs(b)).logits
    ref = averaged_reference(model, b)
    counts = count_parameters(model)
    return {"logits": first, "deterministic": bool(torch.equal(first, second)),
            "max_abs_diff_vs_formula": float((first - ref).abs().max()), "trainable": counts["trainable"],
            "inference": counts["inference"], "head": counts["head"], "total": counts["total"]}


def inference_modes(model: nn.Module, b: dict) -> "object":
    """P(label 1) per example under merged, random (two calls), fixed-0 .. fixed-(M-1) and ensemble, eval mode."""
    import pandas as pd

    num_modules = state_of(model).config.num_modules
    model.eval()
    modes = ["merged", "random", "random"] + [f"fixed-{k}" for k in range(num_modules)] + ["ensemble"]
    rows = []
    with torch.no_grad():
        for i, mode in enumerate(modes):
            set_inference(model, mode)
            p = torch.softmax(model(**_inputs(b)).logits.float(), -1)[:, 1]
            label = mode + (" (call 2)" if mode == "random" and modes[:i].count("random") else "")
            rows.append({"mode": label, **{f"ex {j}": round(float(v), 4) for j, v in enumerate(p)}})
    set_inference(model, "merged")
    return pd.DataFrame(rows).set_index("mode")


def adamix_prefix(model: nn.Module, b: dict) -> dict:
    """AdaMix over prefix-tuning (peftkit's extension, docs/adamix_prefix.md) in one look: the (embedding, MLP)
    module each layer drew in one training-mode forward (dropout off), then the merge: the merged key/values against
    the formula (the mean of the M modules' key/values, computed module by module), logits merged twice, and the
    parameter counts beside one prefix of the same length (``layers x 2 x L x h``)."""
    import pandas as pd

    enc = model.pk_prefix
    model.train()
    with no_dropout(model), torch.no_grad():
        model(**_inputs(b))
    routes = routing(model)
    drawn = [{"layer": layer, "site": name.rsplit(f".{layer}.", 1)[-1], "embedding": int(pairs[0][0]),
              "MLP": int(pairs[0][1])} for layer, (name, pairs) in enumerate(routes.items())]
    with torch.no_grad():
        formula = torch.stack([enc.module_kv(i, j) for i in range(enc.n_emb) for j in range(enc.n_mlp)]).mean(0)
    model.eval()
    set_inference(model, "merged")
    with merged(model), torch.no_grad():
        first, second = model(**_inputs(b)).logits, model(**_inputs(b)).logits
        diff = float((enc.kv - formula).abs().max())
        counts = count_parameters(model)
    return {"routes": pd.DataFrame(drawn), "drawn": [(d["embedding"], d["MLP"]) for d in drawn],
            "distinct_modules": len({d["embedding"] for d in drawn}),
            "merge": state_of(model).config.merge or enc.merge_how, "max_abs_diff_vs_formula": diff,
            "deterministic": bool(torch.equal(first, second)), "trainable": count_parameters(model)["trainable"],
            "inference": counts["inference"], "one_prefix": enc.inference_numel()}


def gate_frame(model: nn.Module, b: dict, names: Sequence[str] | None = None) -> "object":
    """UniPELT gate values of one eval forward, long form: layer, component, example, gate."""
    import pandas as pd

    model.eval()
    with torch.no_grad():
        model(**_inputs(b))
    rows = []
    for name, g in gate_values(model).items():
        m = _LAYER.search(name)
        layer = int(next(x for x in m.groups() if x is not None))
        comp = ("prefix" if "prefix" in name else "adapter" if "adapter" in name
                else "lora_query" if ".query." in name else "lora_value" if ".value." in name else name)
        for i, v in enumerate(g.tolist()):
            rows.append({"layer": layer, "component": comp, "example": (names[i] if names else f"ex {i}"),
                         "gate": float(v)})
    return pd.DataFrame(rows)


def gate_heatmap(frame, out: str | Path, *, model: str, profile: str, what: str) -> list[Path]:
    """The gate values of :func:`gate_frame` as a heat map per component (layers x examples), PNG + PDF, titled
    with the backbone, the profile and ``what`` was shown; listed in the reports index."""
    from .reporting.figures import gate_heatmap_examples
    from .reporting.names import backbone_name

    paths = gate_heatmap_examples(frame, out, f"UniPELT (APL) gates, {what}; {backbone_name(model)}, "
                                             f"profile {profile}")
    _register(paths, "Tour: UniPELT gate values per layer and component for a few sentences", profile)
    return paths


def _register(paths: Sequence[Path], description: str, profile: str) -> None:
    """List the tour's outputs in the reports index of the folder above ``tour/``."""
    from .reporting.index import register_artifact

    for p in paths:
        register_artifact(Path(p).parent.parent, p, f"{description} ({Path(p).suffix[1:].upper()})",
                          f"peftkit reproduce --profile {profile} --only 00_tour")


def export_roundtrip(model: nn.Module, b: dict, model_name: str = "minilm", directory: str | Path | None = None
                     ) -> dict:
    """``peftkit.export_peft`` then ``peft.PeftModel.from_pretrained`` on a fresh backbone: the files written and
    the largest logit difference between the peftkit model and the reloaded peft model (``directory``: where to
    export; default a temporary folder, removed afterwards)."""
    import tempfile

    import peft

    from .backbones import load_model
    from .export import export_peft

    model.eval()
    with torch.no_grad():
        ours = model(**_inputs(b)).logits
    with tempfile.TemporaryDirectory() as tmp:
        d = export_peft(model, directory or tmp)
        reloaded = peft.PeftModel.from_pretrained(load_model(model_name, "classifier", num_labels=2), str(d)).eval()
        with torch.no_grad():
            theirs = reloaded(**_inputs(b)).logits
        files = {p.name: p.stat().st_size for p in sorted(Path(d).iterdir())}
    return {"files": files, "max_abs_diff": float((ours - theirs).abs().max()), "peft_version": peft.__version__,
            "peft_class": type(reloaded).__name__}


def record(model: nn.Module, passes: dict, merge: dict, modes, gates, export: dict, log: Sequence[dict],
           prefix: dict | None = None) -> dict:
    """What the tour showed, as plain numbers (the JSON the tests read); ``model``: the AdaMix model, ``prefix``:
    :func:`adamix_prefix`'s result."""
    return {
        "adamix_prefix": {k: v for k, v in prefix.items() if k != "routes"} if prefix else None,
        "adamix": state_of(model).config.to_dict(),
        "routing": {"pass1": {k: list(map(list, v)) for k, v in passes["first"]["routes"].items()},
                    "pass2": {k: list(map(list, v)) for k, v in passes["second"]["routes"].items()},
                    "same_routes": passes["same_routes"], "max_abs_diff": passes["max_abs_diff"],
                    "replay_max_abs_diff": passes["replay_max_abs_diff"]},
        "consistency": [{k: s[k] for k in ("task_loss", "kl", "weight", "loss")} for s in log],
        "consistency_groups": {k: list(map(list, v)) for k, v in log[0]["routes"].items()} if log else {},
        "merge": {k: v for k, v in merge.items() if k != "logits"},
        "inference_modes": {mode: row.tolist() for mode, row in modes.iterrows()},
        "gates": {"layers": sorted(set(int(x) for x in gates["layer"])),
                  "components": list(dict.fromkeys(gates["component"])),
                  "examples": list(dict.fromkeys(gates["example"])), "values": gates["gate"].tolist(),
                  "shape": [int(gates["layer"].nunique()), int(gates["component"].nunique()),
                            int(gates["example"].nunique())]},
        "export": export,
    }


def out_dir(profile: str, reports_dir: str | Path | None = None) -> Path:
    """Where the tour writes its record and heat map: ``<the profile's reports folder>/tour``."""
    from .studies import reports_path

    return reports_path(profile, reports_dir) / "tour"


def write_record(out_dir: str | Path, record: dict, profile: str) -> Path:
    """The numbers the tour showed, as ``<out_dir>/tour.json`` (written atomically; tests read it)."""
    from .atomic import write_json

    path = write_json(Path(out_dir) / "tour.json", record)
    _register([path], "Tour: what the step-through notebook showed, as numbers", profile)
    return path


def finding(record: dict, out_dir: str | Path) -> None:
    """The tour's closing finding (:func:`peftkit.reporting.findings.tour_finding`, from ``record``), registered as
    its part of the reports README's "What was found" (the folder above ``out_dir``) and displayed."""
    from .reporting.findings import show_markdown, tour_finding
    from .reporting.index import register_finding

    text = tour_finding(record)
    register_finding(Path(out_dir).parent, "00_tour", text, "notebook")
    show_markdown(text)
