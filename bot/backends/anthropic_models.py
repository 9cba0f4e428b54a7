"""What each Claude model line accepts: prefill, thinking, sampler settings.

Plain data, so that it can move into the general capability table as it is; the Anthropic
family consults it instead of guessing from model names in code. Facts: the shared backends
reference (§0.5, §4.7: current SillyTavern's Claude tables) and Anthropic's docs on adaptive
thinking (Opus 4.7 takes only adaptive thinking; the ``max`` effort is Opus 4.6's).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Thinking = Literal["none", "manual", "adaptive"]
Sampling = Literal["all", "one", "none"]


@dataclass(frozen=True, slots=True)
class ClaudeModel:
    """What one Claude model line accepts.

    ``prefix`` matches the model id (dated snapshots and ``-latest`` aliases alike);
    ``sampling``: ``all``, ``one`` (temperature or top_p, not both) or ``none`` (the model
    rejects non-default sampling); ``thinking``: ``manual`` takes ``budget_tokens``,
    ``adaptive`` takes an effort.
    """

    prefix: str
    prefill: bool = True
    thinking: Thinking = "manual"
    sampling: Sampling = "all"
    system_prompt: bool = True
    efforts: frozenset[str] = frozenset({"low", "medium", "high"})


MAX_EFFORT = frozenset({"low", "medium", "high", "max"})

# Most specific first. From the reference's reading of current SillyTavern's Claude tables.
CLAUDE_MODELS: tuple[ClaudeModel, ...] = (
    ClaudeModel("claude-opus-4-7", prefill=False, thinking="adaptive", sampling="none"),
    ClaudeModel(
        "claude-opus-4-6", prefill=False, thinking="adaptive", sampling="one", efforts=MAX_EFFORT
    ),
    ClaudeModel("claude-sonnet-4-6", prefill=False, thinking="adaptive", sampling="one"),
    ClaudeModel("claude-opus-4-5", sampling="one"),
    ClaudeModel("claude-sonnet-4-5", sampling="one"),
    ClaudeModel("claude-haiku-4-5", sampling="one"),
    ClaudeModel("claude-opus-4-1", sampling="one"),
    ClaudeModel("claude-opus-4"),
    ClaudeModel("claude-sonnet-4"),
    ClaudeModel("claude-3-7-sonnet"),
    ClaudeModel("claude-3", thinking="none"),
    # a Claude newer than this table: assume the newest rules, which refuse the most
    ClaudeModel("claude-", prefill=False, thinking="adaptive", sampling="none"),
)
# anything else (an Anthropic-compatible local server, a proxy's alias) gets the loosest rules
OTHER_MODEL = ClaudeModel("")


def claude_model(model: str, table: Iterable[ClaudeModel] = CLAUDE_MODELS) -> ClaudeModel:
    return next((row for row in table if model.startswith(row.prefix)), OTHER_MODEL)
