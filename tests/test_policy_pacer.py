"""PACER: the pre-verifier's persistence and draft matching, its decision rule, data and training."""

from __future__ import annotations

import json
import math

import pytest
import torch

from specdec import ConfigurationError, Decoder
from specdec.features import TokenFeatures
from specdec.strategies.policies.pacer.collect import PacerData
from specdec.verification import Verification
from specdec.strategies.policies.pacer.drafts import draft_fingerprint
from specdec.strategies.policies.pacer.network import PacerConfig, PreVerifier
from specdec.strategies.policies.pacer.train import round_starts, split_sequences, token_examples
from specdec.strategies.policies.pacer.tune import Costs, auc, simulate
from specdec.plugins import registry
from specdec.policy import Decision, RoundState
from specdec.strategies.policies.pacer.policy import PacerPolicy, default_path
from specdec.strategies.proposers import DraftModelProposer
from specdec.cli.values import build_strategy
from tests.models import model_path, real_model


def random_network(hidden: int = 6, **config) -> PreVerifier:
    return PreVerifier.random(PacerConfig(hidden_size=hidden, width=8, **config), seed=1)


def features(position: int, hidden: torch.Tensor | None, prob: float = 0.5) -> TokenFeatures:
    return TokenFeatures(position, 1, prob=prob, entropy=1.0, margin=0.1, hidden=hidden)


# ---------------------------------------------------------------------------- persistence
@pytest.mark.parametrize("arch", ["mlp", "attention"])
def test_save_and_load_round_trip(tmp_path, arch):
    net = random_network(arch=arch, embedding_rank=3, vocab_size=10)
    policy = PacerPolicy.from_verifier(net, threshold=0.3, block_size=3, max_draft=7)
    policy.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["format"] == "specdec-pacer/1"
    loaded = PacerPolicy.from_pretrained(tmp_path)
    assert (loaded.tau, loaded.block, loaded.cap) == (0.3, 3, 7)
    assert loaded.network.config.arch == arch
    inputs = (torch.randn(4, 6), torch.randn(4, 4), torch.arange(4), torch.tensor([1, 2, 3, 9]))
    with torch.no_grad():
        assert torch.equal(net(*inputs), loaded.network(*inputs))


def test_only_safetensors_and_json_are_written(tmp_path):
    random_network().save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]


def test_loading_a_directory_that_is_not_a_pre_verifier_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigurationError, match="not a PACER pre-verifier directory"):
        PacerPolicy(path=str(tmp_path))
    random_network().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "format": "something-else"}))
    with pytest.raises(ConfigurationError, match="format"):
        PacerPolicy(path=str(tmp_path))


def test_loading_for_another_draft_is_a_clear_error(tmp_path):
    tiny_target, tiny_draft = real_model("stories260K"), real_model("stories260K-draft")
    config = PacerConfig(hidden_size=64, width=8, draft_name="stories260K-draft", draft_fingerprint=draft_fingerprint(tiny_draft))
    PreVerifier.random(config).save_pretrained(tmp_path)
    PacerPolicy(path=str(tmp_path), model=tiny_draft)  # the right draft loads
    assert draft_fingerprint(tiny_target) != draft_fingerprint(tiny_draft)
    with pytest.raises(ConfigurationError, match="trained for the draft 'stories260K-draft'.*train-pacer"):
        PacerPolicy(path=str(tmp_path), model=tiny_target)  # same hidden size, another model


def test_the_shipped_pre_verifier_refuses_another_draft():
    with pytest.raises(ConfigurationError, match="shipped pre-verifier was trained for the draft 'smollm2-draft'.*hidden size 64"):
        PacerPolicy(model=real_model("stories260K-draft"))


def test_without_the_model_the_hidden_size_is_checked_at_the_first_token():
    policy = PacerPolicy.from_verifier(random_network(hidden=6))
    policy.begin_round(RoundState(3, 0, 10))
    with pytest.raises(ConfigurationError, match="hidden size 6.*size 5"):
        policy.decide(features(0, torch.zeros(5)))


def test_the_registry_passes_the_draft_as_a_resource_not_a_parameter(tmp_path):
    draft = real_model("stories260K-draft")
    config = PacerConfig(hidden_size=64, width=8, draft_fingerprint=draft_fingerprint(draft))
    PreVerifier.random(config).save_pretrained(tmp_path)
    policy = build_strategy(registry(), "policy", "pacer", {"path": str(tmp_path), "threshold": "0.25"}, model=draft)
    assert policy.model is draft and policy.tau == 0.25
    with pytest.raises(ConfigurationError, match="no parameter 'model'"):
        build_strategy(registry(), "policy", "pacer", {"path": str(tmp_path), "model": "x"}, model=draft)


# ---------------------------------------------------------------------------- parameters
@pytest.mark.parametrize(
    "params",
    [{"threshold": 1.5}, {"threshold": -0.1}, {"threshold": math.nan}, {"threshold": True}, {"block_size": 0},
     {"block_size": 2.5}, {"max_draft": 0}, {"max_draft": -3}],
)
def test_bad_parameters_raise_configuration_error(params):
    with pytest.raises(ConfigurationError):
        PacerPolicy.from_verifier(random_network(), **params)


@pytest.mark.parametrize("params", [{"threshold": "high"}, {"block_size": "two"}, {"path": "/nonexistent/pacer"}, {"rule": "maybe"}])
def test_bad_command_line_parameters_raise_configuration_error(params):
    with pytest.raises(ConfigurationError):
        build_strategy(registry(), "policy", "pacer", params)


@pytest.mark.parametrize("field,value", [("hidden_size", 0), ("width", -1), ("arch", "lstm"), ("threshold", 2.0)])
def test_bad_network_config_raises_configuration_error(field, value):
    with pytest.raises(ConfigurationError):
        PacerConfig(**{"hidden_size": 4, field: value})


# ---------------------------------------------------------------------------- the decision rule
class _Constant(PreVerifier):
    """A network whose every token has acceptance probability `p`."""

    def __init__(self, p: float) -> None:
        super().__init__(PacerConfig(hidden_size=2, width=4))
        self.logit = math.log(p / (1 - p))

    def forward(self, hidden, scalars, positions, tokens=None, **_) -> torch.Tensor:  # type: ignore[override]
        return torch.full(hidden.shape[:-1], self.logit)


def run_round(policy: PacerPolicy, tokens: int) -> list[Decision]:
    policy.begin_round(RoundState(5, 0, 50))
    return [policy.decide(features(i, torch.zeros(2))) for i in range(tokens)]


def test_a_block_continues_while_its_score_reaches_the_threshold():
    # block of 2 at p = 0.8 scores 0.64
    assert run_round(PacerPolicy.from_verifier(_Constant(0.8), block_size=2, threshold=0.6), 6) == [Decision.CONTINUE] * 6
    stops = run_round(PacerPolicy.from_verifier(_Constant(0.8), block_size=2, threshold=0.7), 2)
    assert stops == [Decision.CONTINUE, Decision.STOP]


def test_the_cap_and_tokens_without_hidden_states():
    policy = PacerPolicy.from_verifier(_Constant(0.1), block_size=1, threshold=0.5, max_draft=9)
    assert policy.begin_round(RoundState(5, 0, 50)) == 9
    assert policy.decide(features(0, None)) is Decision.CONTINUE  # a lookup token: nothing to score
    assert policy.decide(features(1, torch.zeros(2))) is Decision.STOP
    assert policy.evaluations == 1 and policy.overhead_seconds > 0


def test_the_cost_rule_prices_the_networks_scores_with_the_cost_aware_rule():
    from specdec.strategies.policies.auto import CostAwarePolicy

    state = RoundState(5, 0, 50)
    for p, expected in ((0.97, Decision.CONTINUE), (0.15, Decision.STOP)):
        policy = PacerPolicy.from_verifier(_Constant(p), rule="cost", max_draft=6)
        reference = CostAwarePolicy(max_draft=6)
        assert policy.begin_round(state) == reference.begin_round(state)  # a new prompt: an exploration
        assert policy.should_draft(features(0, torch.zeros(2), prob=0.5))
        # the network's score (not the draft's .5) prices the token: decile prior .95 continues
        # (.95**2 > 1.15 * .25 prior draft cost + .05 width), .15 stops
        assert policy.decide(features(0, torch.zeros(2), prob=0.5)) is expected
        assert policy.evaluations == 1
    policy.observe(Verification(1, 0, (4,), verify_seconds=0.02, context_length=5, draft_forwards=1))  # reaches the cost rule
    assert policy._costs.first_acceptance() < 0.5


@pytest.mark.parametrize("config", [{}, {"hidden_rank": 0}, {"embedding_rank": 3, "vocab_size": 11}], ids=["hidden", "scalars", "tokens"])
def test_the_folded_token_scorer_equals_the_network(config):
    net = random_network(**config)
    with torch.no_grad():  # random, non-trivial standardisation and norms
        net.scalar_mean.copy_(torch.tensor([-2.0, 1.0, 0.3, 0.6]))
        net.scalar_std.copy_(torch.tensor([1.5, 0.5, 0.2, 0.3]))
        if net.config.embedding_rank:
            net.token_table.normal_()
    scorer = net.token_scorer()
    generator = torch.Generator().manual_seed(3)
    for position in (0, 5, 40):  # 40 is past the learned positions: shares the last row
        hidden = torch.randn(6, generator=generator)
        scalars = [-1.2, 0.8, 0.4, 0.7]
        token = position % 11
        expected = torch.nn.functional.logsigmoid(
            net(hidden[None], torch.tensor([scalars]), torch.tensor([position]), torch.tensor([token]))
        ).item()
        assert scorer.log_hazard(hidden, scalars, position, token) == pytest.approx(expected, abs=1e-5)
    assert random_network(arch="attention").token_scorer() is None and _Constant(0.5).token_scorer() is None


def test_policy_decisions_with_the_folded_scorer_follow_the_network():
    net = random_network()
    policy = PacerPolicy.from_verifier(net, block_size=2, threshold=0.3)
    policy.begin_round(RoundState(5, 0, 50))
    hidden = [torch.randn(6, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    decisions = [policy.decide(features(i, hidden[i], prob=0.9 - 0.2 * i)) for i in range(4)]
    scalars = torch.tensor([[math.log(0.9 - 0.2 * i), 1.0, 0.1, 1.0] for i in range(4)])  # top_prob defaults to 1
    with torch.no_grad():
        logs = torch.nn.functional.logsigmoid(net(torch.stack(hidden), scalars, torch.arange(4), torch.ones(4, dtype=torch.long)))
    expected = [Decision.CONTINUE if i % 2 == 0 or logs[i - 1 : i + 1].sum().exp() >= 0.3 else Decision.STOP for i in range(4)]
    assert decisions == expected and policy.evaluations == 2


def test_the_shipped_pre_verifier_loads_with_its_tuned_settings():
    policy = PacerPolicy()
    config = policy.network.config
    assert default_path().is_dir() and config.draft_name == "smollm2-draft"
    assert (policy.tau, policy.block, policy.cap) == (config.threshold, config.block_size, config.max_draft)
    size = sum(p.stat().st_size for p in default_path().iterdir())
    assert size < 4_000_000


# ---------------------------------------------------------------------------- data and training pieces
def hand_data(accepted: list[list[int]]) -> PacerData:
    flags = [a for seq in accepted for a in seq]
    n = len(flags)
    sequence = torch.tensor([i for i, seq in enumerate(accepted) for _ in seq])
    draft = torch.arange(n)
    target = torch.where(torch.tensor(flags, dtype=torch.bool), draft, draft + 1000)
    return PacerData(torch.zeros(n, 2, dtype=torch.float16), torch.zeros(n, 4), draft, target, torch.ones(n), sequence)


def test_rounds_are_censored_after_the_first_rejection():
    data = hand_data([[1, 1, 0, 1, 0], [1, 1]])
    starts, lengths = round_starts(data, max_draft=24)
    assert lengths.tolist() == [3, 2, 1, 2, 1, 2, 1]  # stops at the first rejection or the sequence end
    assert round_starts(data, max_draft=2)[1].tolist() == [2, 2, 1, 2, 1, 2, 1]
    index, positions = token_examples(data, max_draft=24)
    pairs = sorted(zip(index.tolist(), positions.tolist()))
    # position 2 is reached from starts 0, 1, 2; position 3 only from itself (2 was rejected)
    assert pairs == [(0, 0), (1, 0), (1, 1), (2, 0), (2, 1), (2, 2), (3, 0), (4, 0), (4, 1), (5, 0), (6, 0), (6, 1)]


def test_auc_matches_pairwise_counting():
    generator = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 5, (60,), generator=generator).float()
    labels = torch.rand(60, generator=generator) > 0.4
    pos, neg = scores[labels], scores[~labels]
    expected = ((pos[:, None] > neg[None, :]).float() + 0.5 * (pos[:, None] == neg[None, :]).float()).mean()
    assert auc(scores, labels) == pytest.approx(float(expected))


def test_simulation_of_fixed_rounds_counts_tokens_and_costs():
    data = hand_data([[1, 1, 0, 1, 1, 1]])
    costs = Costs(draft=1.0, target=(10.0, 11.0, 12.0))
    result = simulate(data, None, costs, fixed=2)
    # rounds: draft 0,1 both accepted -> 3 tokens (cost 2 + 12); from 3: draft 3,4 accepted -> 3 tokens (2 + 12)
    assert result["tokens_per_second"] == pytest.approx(6 / 28)
    assert result["mean_accepted"] == 2 and result["target_forwards_per_token"] == pytest.approx(2 / 6)


def test_splits_are_deterministic_and_disjoint():
    train, dev, test = split_sequences(20, seed=3, fractions=(0.8, 0.1))
    assert split_sequences(20, seed=3, fractions=(0.8, 0.1)) == (train, dev, test)
    assert sorted(train + dev + test) == list(range(20)) and dev and test


def test_feature_cache_round_trip(tmp_path):
    data = hand_data([[1, 0], [1]])
    data = PacerData(data.hidden, data.scalars, data.draft_token, data.target_token, data.soft, data.sequence, {"draft_name": "x"})
    loaded = PacerData.load(data.save(tmp_path / "f.safetensors"))
    assert loaded.meta == {"draft_name": "x"} and torch.equal(loaded.accepted, data.accepted)
    assert loaded.select([1]).sequence.tolist() == [0] and len(loaded.select([0, 1])) == 3


# ---------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_train_pacer_end_to_end_on_the_tiny_pair(tmp_path, capsys):
    from specdec.cli import main

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(["Once upon a time", "The little dog", "Lily wanted to", "Tom and his mom went",
                                  "One day, a bird", "The sun was hot"]))
    out = tmp_path / "pacer"
    args = ["train-pacer", "--target", model_path("stories260K"), "--draft", model_path("stories260K-draft"),
            "--prompts", str(prompts), "--builtin-prompts", "0", "--max-new-tokens", "24", "--epochs", "2",
            "--max-draft", "6", "--block-sizes", "1,2", "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "held-out" in printed and "AUC" in printed
    assert {"config.json", "model.safetensors", "features.safetensors", "report.json"} <= {p.name for p in out.iterdir()}
    policy = PacerPolicy(path=str(out), model=real_model("stories260K-draft"))
    assert policy.block in (1, 2) and policy.cap == 6
    decoder = Decoder(real_model("stories260K"), proposer=DraftModelProposer(real_model("stories260K-draft")), policy=policy)
    result = decoder.generate("Once upon a time", 24)
    plain = Decoder(real_model("stories260K")).generate("Once upon a time", 24)
    assert result.ids == plain.ids
    assert main(args) == 0  # the second run reuses the cached features
    assert "reusing" in capsys.readouterr().out
    assert main([*args, "--int8-draft"]) == 0  # the int8 draft's step is timed: collected again
    printed = capsys.readouterr().out
    assert "collecting again" in printed and "held-out" in printed
    from specdec.strategies.policies.pacer.collect import PacerData

    assert PacerData.load(out / "features.safetensors").meta["cost_draft"].endswith("[int8]")
    assert PacerPolicy(path=str(out), model=real_model("stories260K-draft")).cap == 6  # same draft fingerprint


def test_train_pacer_refuses_the_evaluation_set(tmp_path):
    from specdec.cli import main

    bench = tmp_path / "spec_bench.jsonl"
    bench.write_text('{"turns": ["a"]}\n')
    assert main(["train-pacer", "--prompts", str(bench), "--out", str(tmp_path / "o")]) == 2


@pytest.mark.slow
@pytest.mark.parametrize("rule", ["threshold", "cost"])
def test_pacer_greedy_output_is_the_targets_on_the_default_pair(rule):
    target, draft = real_model("smollm2-135m-instruct"), real_model("smollm2-draft")
    policy = build_strategy(registry(), "policy", "pacer", {"rule": rule}, model=draft)
    decoder = Decoder(target, proposer=DraftModelProposer(draft), policy=policy)
    for prompt in ["Write a short poem about the sea.", "What is 17 times 23? Explain step by step."]:
        ids = decoder.encode(prompt, chat=True)
        with torch.inference_mode():
            expected = target.model.generate(torch.tensor([ids]), max_new_tokens=64, do_sample=False, pad_token_id=2)
        assert list(decoder.generate(ids, 64).ids) == expected[0, len(ids):].tolist()
    assert policy.evaluations > 0
