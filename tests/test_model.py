import pytest
import torch

from genseq import ConfigError, LanguageModel, ModelConfig


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("projection_size", [0, 12])
def test_forward_shapes_and_state(cell, projection_size):
    config = ModelConfig(vocab_size=50, cell=cell, embedding_size=8, hidden_size=10, num_layers=3,
                         projection_size=projection_size)
    model = LanguageModel(config)
    logits, state = model(torch.randint(0, 50, (4, 7)))
    assert logits.shape == (4, 7, 50)
    assert len(state) == (2 if cell == "lstm" else 1)
    assert all(s.shape == (3, 4, 10) for s in state)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_carrying_the_state_equals_one_long_forward(cell):
    model = LanguageModel(ModelConfig(vocab_size=30, cell=cell, embedding_size=8, hidden_size=8)).eval()
    ids = torch.randint(0, 30, (2, 12))
    whole, _ = model(ids)
    first, state = model(ids[:, :5])
    second, _ = model(ids[:, 5:], state)
    torch.testing.assert_close(torch.cat([first, second], 1), whole)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_fused_step_matches_the_full_sequence_core(cell):
    model = LanguageModel(ModelConfig(vocab_size=40, cell=cell, embedding_size=12, hidden_size=16,
                                      projection_size=12, tie_weights=True)).eval()
    ids = torch.randint(0, 40, (3, 9))
    with torch.no_grad():
        expected, expected_state = model(ids)
    step, state, outputs = model.stepper(), model.initial_state(3), []
    for t in range(ids.size(1)):
        logits, state = step(ids[:, t], state)
        outputs.append(logits)
    torch.testing.assert_close(torch.stack(outputs, 1), expected, atol=1e-6, rtol=0)
    for got, want in zip(state, expected_state):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


def test_padded_batch_gives_each_row_its_own_final_state():
    model = LanguageModel(ModelConfig(vocab_size=30, embedding_size=8, hidden_size=8)).eval()
    short, long = torch.tensor([[3, 4]]), torch.tensor([[5, 6, 7, 8]])
    batch = torch.tensor([[3, 4, 0, 0], [5, 6, 7, 8]])
    with torch.no_grad():
        _, batch_state = model.encode(batch, lengths=torch.tensor([2, 4]))
        _, short_state = model.encode(short)
        _, long_state = model.encode(long)
    torch.testing.assert_close(batch_state[0][:, 0], short_state[0][:, 0])
    torch.testing.assert_close(batch_state[1][:, 1], long_state[1][:, 0])


def test_tied_weights_share_one_parameter():
    model = LanguageModel(ModelConfig(vocab_size=30, embedding_size=8, hidden_size=16, projection_size=8, tie_weights=True))
    assert model.output.weight is model.embedding.weight


def test_tying_mismatched_sizes_is_rejected_with_the_fix():
    with pytest.raises(ConfigError, match="projection-size 8"):
        ModelConfig(vocab_size=30, embedding_size=8, hidden_size=16, tie_weights=True)


@pytest.mark.parametrize("field,value", [("cell", "transformer"), ("num_layers", 0), ("output_dropout", 1.0)])
def test_invalid_config_values_are_rejected(field, value):
    with pytest.raises(ConfigError, match=field):
        ModelConfig(**{field: value})
