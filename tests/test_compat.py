"""peftkit.compat on the installed transformers (5.x in .venv, 4.57 in the peers' venv): one meaning on both."""
from __future__ import annotations

import pytest
import torch

from peftkit.compat import cache_update, layer_cache, training_arguments


def _args(tmp_path, **kw):
    return training_arguments(output_dir=str(tmp_path), report_to=[], use_cpu=True, **kw)


@pytest.mark.parametrize("ratio,steps,total,expect", [(0.1, 0, 95, 10), (0.06, 0, 1000, 60), (0.0, 0, 50, 0),
                                                      (0.1, 7, 95, 7), (0.0, 2000, 10, 2000)])
def test_warmup_ratio_and_steps_give_the_4_57_schedule(tmp_path, ratio, steps, total, expect):
    """4.57: warmup_steps > 0 wins, else ceil(total * warmup_ratio); 5.20+ has one float field for both."""
    assert _args(tmp_path, warmup_ratio=ratio, warmup_steps=steps).get_warmup_steps(total) == expect


def test_group_by_length_reaches_the_sampler_setting(tmp_path):
    on, off = _args(tmp_path, group_by_length=True), _args(tmp_path, group_by_length=False)
    for args, want in ((on, True), (off, False)):
        grouped = getattr(args, "group_by_length", None) is True \
            or getattr(args, "train_sampling_strategy", None) == "group_by_length"
        assert grouped is want


@pytest.mark.parametrize("kw,field", [({"warmup_ratio": 1.0}, "warmup_ratio"), ({"warmup_ratio": -0.1}, "warmup_ratio"),
                                      ({"warmup_steps": 2.5}, "warmup_steps")])
def test_bad_warmup_is_named(tmp_path, kw, field):
    with pytest.raises(ValueError, match=field):
        _args(tmp_path, **kw)


def test_layer_cache_takes_every_release_keyword_and_the_self_attention_part():
    from transformers import DynamicCache, EncoderDecoderCache

    own = DynamicCache()
    for name in ("cache", "past_key_values", "past_key_value", "layer_past"):
        assert layer_cache({name: own, "attention_mask": None}) is own
    assert layer_cache({"use_cache": True}) is None
    both = EncoderDecoderCache(DynamicCache(), DynamicCache())
    assert layer_cache({"cache": both}) is both.self_attention_cache
    k = torch.randn(1, 2, 3, 4)
    keys, values = cache_update(own, k, k + 1, 0, {})
    keys, values = cache_update(own, k, k + 1, 0, {})
    assert keys.shape == (1, 2, 6, 4) and torch.equal(values[:, :, 3:], k + 1)
