"""The tour's tables say what they show: module names as the model has them, one line per site, no NaN."""
from __future__ import annotations

import peftkit
from conftest import tiny
from peftkit import tour


def test_describe_sites_gives_one_line_per_site_with_its_count():
    model = tiny("bert")
    peftkit.apply(model, "adamix", seed=0)
    full = peftkit.describe(model)
    text = tour.describe_sites(model)
    head, sites = text.split("trainable modules, one line per site:\n")
    assert head == full.split("trainable modules:\n")[0]  # the method's line and the counts, as describe prints
    modules = [line for line in full.split("trainable modules:\n")[1].splitlines() if ".pk_adapter." in line]
    assert sites.splitlines() == [f"  bert.encoder.layer.*.output.pk_adapter: {len(modules)} modules in layers 0-1",
                                  "  classifier: 1 module"]


def test_route_table_names_the_modules_as_the_model_does():
    routes = {"bert.encoder.layer.0.output.pk_adapter": [(0, 1)], "transformer.h.3.mlp.c_proj.pk_lora": [(2, 0)]}
    table = tour.route_table(routes)
    assert table["site"].tolist() == ["output.pk_adapter", "mlp.c_proj.pk_lora"]  # not "output.adapter"
    assert table["layer"].tolist() == [0, 3] and table["modules (down/A, up/B)"].tolist() == ["(0, 1)", "(2, 0)"]


def test_sentence_table_has_no_missing_values_for_single_sentences():
    rows = [{"text_a": "a fine film", "text_b": None, "label": 1},
            {"text_a": "A man sleeps.", "text_b": "Nobody sleeps.", "label": 0}]
    table = tour.sentence_table(rows)
    assert table["text_b"].tolist() == ["–", "Nobody sleeps."] and not table.isna().any().any()
