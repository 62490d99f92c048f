"""The training routine: checkpoints resume after an interruption, to the same result."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import DEV, TRAIN
from tinynlp import modeling, ner
from tinynlp.tagging import bio_labels
from tinynlp.training import TrainSettings, train

LABELS = bio_labels(["location", "person"])


class Interrupted(Exception):
    pass


def stop_after_first_checkpoint():
    from transformers import TrainerCallback

    class Stop(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            raise Interrupted(f"killed after step {state.global_step}")

    return Stop()


def run_training(tiny_bert, output_dir, callbacks=(), dp=None, batch_size=4, freeze_top_layers=0, epochs=4, **rates):
    from transformers import DataCollatorForTokenClassification

    tokenizer = modeling.load_tokenizer(str(tiny_bert))
    label2id = {l: i for i, l in enumerate(LABELS)}
    split = lambda rows: ([t.split() for t, _ in rows], [g.split() for _, g in rows])
    train_encoded = ner.encode(tokenizer, *split(TRAIN), label2id, 32, 4)
    dev_encoded = ner.encode(tokenizer, *split(DEV), label2id, 32, 4)
    gold = split(DEV)[1]

    def metrics(prediction):
        predicted = ner.decode(dev_encoded, [np.asarray(l) for l in prediction.predictions], dict(enumerate(LABELS)))
        return {"entity_f1": ner.entity_scores(gold, predicted)["entity_f1"]}

    settings = TrainSettings(output_dir=str(output_dir), epochs=epochs, batch_size=batch_size, eval_batch_size=4,
                             learning_rate=1e-2, weight_decay=0.0, warmup_ratio=0.0, lr_scheduler="linear",
                             gradient_accumulation=1, patience=4, seed=7, metric="entity_f1", dp=dp, **rates)
    model = modeling.load_classifier(str(tiny_bert), LABELS, seed=settings.seed)
    if dp is not None:
        from tinynlp.privacy import freeze_for_private_training

        freeze_for_private_training(model, freeze_top_layers)
    return train(model, train_encoded.features, dev_encoded.features,
                 DataCollatorForTokenClassification(tokenizer, label_pad_token_id=ner.IGNORE), metrics, settings,
                 callbacks=callbacks)


@pytest.mark.slow
def test_resume_after_interruption_matches_uninterrupted_run(tmp_path, tiny_bert):
    reference = run_training(tiny_bert, tmp_path / "reference")
    with pytest.raises(Interrupted):
        run_training(tiny_bert, tmp_path / "interrupted", callbacks=[stop_after_first_checkpoint()])
    assert list((tmp_path / "interrupted").glob("checkpoint-*")), "a checkpoint was written before the kill"
    resumed = run_training(tiny_bert, tmp_path / "interrupted")
    assert resumed.resumed_from is not None and resumed.resumed_from.endswith("checkpoint-3")
    assert resumed.best_metric == pytest.approx(reference.best_metric, abs=1e-6)
    for (name, a), (_, b) in zip(reference.model.state_dict().items(), resumed.model.state_dict().items()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=name)
    assert [row["epoch"] for row in resumed.history][-1] == 4.0


def test_a_checkpoint_cut_short_while_saving_is_skipped(tmp_path):
    """A kill during a save leaves checkpoint-N without (or with half) its trainer_state.json: the
    resume uses the checkpoint before it and removes the broken one."""
    from tinynlp.training import last_complete_checkpoint

    for step, state in ((7, '{"global_step": 7}'), (14, '{"global_step": 14}'), (21, None), (28, '{"glob')):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "model.safetensors").write_bytes(b"weights")
        if state is not None:
            (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(state)
    assert last_complete_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-14")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-14", "checkpoint-7"]
    assert last_complete_checkpoint(str(tmp_path / "missing")) is None


def test_epoch_order_is_seeded_and_either_length_grouped_or_shuffled():
    from tinynlp.training import _EpochSampler

    lengths = [1 + (i * 37) % 50 for i in range(400)]
    grouped, shuffled = _EpochSampler(lengths, 8, seed=3), _EpochSampler(lengths, 8, seed=3, grouped=False)
    for sampler in (grouped, shuffled):
        first = list(sampler)
        assert sorted(first) == list(range(400))            # every example once
        assert list(sampler) == first                        # same seed and epoch: same order (resume, DDP ranks)
        sampler.set_epoch(1)
        assert list(sampler) != first                        # a new order each epoch
        sampler.set_epoch(0)

    def spread(order):  # mean length range inside a batch of 8
        batches = [order[i:i + 8] for i in range(0, len(order), 8)]
        return np.mean([max(lengths[j] for j in b) - min(lengths[j] for j in b) for b in batches])

    assert spread(list(grouped)) < 0.25 * spread(list(shuffled))


def test_layer_wise_rates_decay_down_the_stack_and_the_head_gets_its_own(tmp_path, tiny_bert):
    from transformers import TrainerCallback

    from tinynlp.training import layer_depth

    seen = {}

    class Rates(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
            layers = model.config.num_hidden_layers
            seen["layers"] = layers
            seen["rate"] = {name: group["initial_lr"] for group in optimizer.param_groups for name, p in
                            model.named_parameters() if any(p is q for q in group["params"])}
            seen["depth"] = {name: layer_depth(name, layers) for name, _ in model.named_parameters()}

    result = run_training(tiny_bert, tmp_path, callbacks=[Rates()], epochs=1, layer_lr_decay=0.5, head_lr_scale=10.0)
    layers, rate, depth = seen["layers"], seen["rate"], seen["depth"]
    assert rate["classifier.weight"] == pytest.approx(0.1)                      # the head: 10x the peak
    assert rate["bert.embeddings.word_embeddings.weight"] == pytest.approx(1e-2 * 0.5 ** layers)
    top = next(name for name in rate if depth[name] == layers)
    assert rate[top] == pytest.approx(1e-2)                                     # the top layer: the peak itself
    assert sorted({depth[n] for n in rate}) == list(range(layers + 2))         # every parameter placed
    assert result.history  # it trained


def test_one_rate_for_all_is_the_trainers_own_optimiser(tmp_path, tiny_bert):
    from transformers import TrainerCallback

    groups = []

    class Groups(TrainerCallback):
        def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
            groups.extend(group["initial_lr"] for group in optimizer.param_groups)

    run_training(tiny_bert, tmp_path, callbacks=[Groups()], epochs=1)
    assert groups == [1e-2, 1e-2]  # decayed and not decayed: the Trainer's two groups


def test_the_weight_average_takes_the_weights_place_at_each_epoch_end_and_gives_them_back():
    from tinynlp.training import weight_average

    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    callback = weight_average(0.5)
    callback.on_train_begin(None, None, None, model=model)
    expected = torch.zeros(1, 2)
    for step, value in enumerate([1.0, 2.0, 3.0], start=1):
        callback.on_step_begin(None, None, None, model=model)
        with torch.no_grad():
            model.weight.fill_(value)  # what the optimiser's step did
        callback.on_step_end(None, None, None, model=model)
        weight = (1 - 0.5) / (1 - 0.5 ** step)  # bias-corrected: the first update takes the weights whole
        expected = expected + weight * (value - expected)
    callback.on_epoch_end(None, None, None, model=model)
    assert torch.allclose(model.weight, expected)      # evaluated and saved: the average
    assert not torch.allclose(model.weight, torch.full((1, 2), 3.0))
    callback.on_step_begin(None, None, None, model=model)
    assert torch.equal(model.weight, torch.full((1, 2), 3.0))   # training goes on from its own weights


def test_training_with_a_weight_average_trains_alike_and_keeps_the_average(tmp_path, tiny_bert):
    plain = run_training(tiny_bert, tmp_path / "plain", epochs=2)
    averaged = run_training(tiny_bert, tmp_path / "averaged", epochs=2, ema_decay=0.9)
    # the same steps on the same weights: the average is only evaluated and kept
    assert [row["train_loss"] for row in averaged.history] == pytest.approx([row["train_loss"] for row in plain.history])
    assert any(not torch.equal(a, b) for a, b in zip(plain.model.state_dict().values(),
                                                      averaged.model.state_dict().values()))
