"""A loopback fake of Claude's Messages API (``/v1/messages``, ``/v1/messages/count_tokens``,
``/v1/models``) that refuses what the real API refuses, in its words, and answers in its
typed SSE (shared backends reference §4.7, §7 and §8.7).

Checked on every request: ``x-api-key``, ``anthropic-version: 2023-06-01``, JSON body keys
(unknown ones are "Extra inputs"), ``max_tokens``, user/assistant turns that alternate and
start with the user, no empty text, no trailing whitespace on the final assistant turn,
non-whitespace stop sequences, sampler ranges, thinking's rules, and the per-model rules
given to the constructor (models that refuse prefill or sampler settings).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

from tests.fakes.anthropic_wire import (
    ERROR_529,
    OVERLOADED_EVENT,
    PING,
    START,
    STOP,
    block_start,
    block_stop,
    delta,
    error_body,
    message_delta,
)
from tests.fakes.base import Cut, Huge, InStreamError, LoopbackServer, Recorded, Rejected, Text

VERSION = "2023-06-01"
AUTH_PROBLEM = "invalid x-api-key"
MESSAGE_KEYS = frozenset(
    {"model", "max_tokens", "messages", "system", "stop_sequences", "stream", "temperature"}
    | {"top_p", "top_k", "thinking", "output_config", "metadata", "tools", "tool_choice"}
    | {"service_tier"}
)
COUNT_KEYS = frozenset({"model", "messages", "system", "thinking", "tools", "tool_choice"})


def invalid(message: str) -> Rejected:
    return Rejected(400, error_body("invalid_request_error", message), message)


# -- the server -------------------------------------------------------------------------------


class FakeAnthropic(LoopbackServer):
    """``no_prefill``/``no_sampling``/``one_sampling``: model id prefixes that refuse a final
    assistant turn, any sampler setting, or temperature together with top_p."""

    client_faults = (AUTH_PROBLEM,)

    def __init__(
        self,
        *,
        api_key: str = "sk-ant-test-4f9a1c0d2e7b",
        prefix: str = "/v1",
        no_prefill: Sequence[str] = ("claude-opus-4-6", "claude-sonnet-4-6", "claude-opus-4-7"),
        no_sampling: Sequence[str] = ("claude-opus-4-7",),
        one_sampling: Sequence[str] = ("claude-sonnet-4-5", "claude-haiku-4-5"),
        models: Sequence[str] = ("claude-sonnet-4-5-20250929", "claude-3-5-haiku-20241022"),
        page_size: int = 1000,
    ) -> None:
        super().__init__(prefix)
        self.api_key = api_key
        self.no_prefill = tuple(no_prefill)
        self.no_sampling = tuple(no_sampling)
        self.one_sampling = tuple(one_sampling)
        self.models = list(models)
        self.page_size = page_size

    async def route(self, request: web.Request, recorded: Recorded) -> web.StreamResponse:
        headers = recorded.headers
        if headers.get("x-api-key") != self.api_key:
            raise Rejected(401, error_body("authentication_error", AUTH_PROBLEM), AUTH_PROBLEM)
        if headers.get("anthropic-version") != VERSION:
            raise invalid("anthropic-version: header is required")
        route = request.path.removeprefix(self.prefix)
        if request.method == "GET" and route == "/models":
            return self._models(recorded.query)
        if request.method == "POST" and route == "/messages/count_tokens":
            body = self._json_body(recorded, COUNT_KEYS)
            self._check_turns(body, prefill_rules=False)
            return web.json_response({"input_tokens": count_words(body)})
        if request.method == "POST" and route == "/messages":
            body = self._json_body(recorded, MESSAGE_KEYS)
            self._check_message(body)
            stream = body.get("stream") is True
            return await self.answer(request, self.next_reply(Text()), stream=stream)
        raise Rejected(404, error_body("not_found_error", "Not Found"), f"no route {route}")

    def _json_body(self, recorded: Recorded, allowed: frozenset[str]) -> dict[str, Any]:
        if not recorded.headers.get("content-type", "").startswith("application/json"):
            raise invalid("content-type must be application/json")
        body = recorded.body
        if not isinstance(body, dict):
            raise invalid("There was an error parsing the body of your request.")
        for key in body:
            if key not in allowed:
                raise invalid(f"{key}: Extra inputs are not permitted")
        if not isinstance(body.get("model"), str) or not body["model"]:
            raise invalid("model: Field required")
        return body

    def _check_message(self, body: dict[str, Any]) -> None:
        model = body["model"]
        limit = body.get("max_tokens")
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise invalid("max_tokens: Field required")
        thinking = body.get("thinking")
        self._check_turns(body)
        stops = body.get("stop_sequences", [])
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise invalid("stop_sequences: Input should be a valid list")
        if any(not s for s in stops):
            raise invalid("stop_sequences: each stop sequence must be non-empty")
        if any(not s.strip() for s in stops):
            raise invalid("stop_sequences: each stop sequence must contain non-whitespace")
        for name, low, high in (("temperature", 0, 1), ("top_p", 0, 1)):
            value = body.get(name)
            if value is not None and not (isinstance(value, int | float) and low <= value <= high):
                raise invalid(f"{name}: range: {low}..{high}")
        samplers = [k for k in ("temperature", "top_p", "top_k") if k in body]
        if samplers and model.startswith(self.no_sampling):
            raise invalid(f"{samplers[0]}: this model does not support sampling parameters")
        if "temperature" in body and "top_p" in body and model.startswith(self.one_sampling):
            raise invalid(
                "`temperature` and `top_p` cannot both be specified for this model. "
                "Please use only one."
            )
        if thinking is not None:
            self._check_thinking(body, thinking, limit)

    def _check_thinking(self, body: dict[str, Any], thinking: Any, limit: int) -> None:
        kind = thinking.get("type") if isinstance(thinking, dict) else None
        if kind == "enabled":
            budget = thinking.get("budget_tokens")
            if not isinstance(budget, int) or budget < 1024:
                raise invalid("thinking.enabled.budget_tokens: Input should be >= 1024")
            if limit <= budget:
                raise invalid("`max_tokens` must be greater than `thinking.budget_tokens`.")
        elif kind != "adaptive":
            raise invalid("thinking: Input tag does not match any of the expected tags")
        effort = body.get("output_config", {}).get("effort", "high")
        if effort not in ("low", "medium", "high", "max"):
            raise invalid("output_config.effort: Input should be 'low', 'medium', 'high' or 'max'")
        if effort == "max" and not body["model"].startswith("claude-opus-4-6"):
            raise invalid("output_config.effort: 'max' is not supported by this model")
        if body.get("temperature", 1) != 1:
            raise invalid("`temperature` may only be set to 1 when thinking is enabled.")
        if "top_k" in body:
            raise invalid("`top_k` is not supported when thinking is enabled.")
        if not 0.95 <= body.get("top_p", 1) <= 1:
            raise invalid("`top_p` must be between 0.95 and 1 when thinking is enabled.")

    def _check_turns(self, body: dict[str, Any], *, prefill_rules: bool = True) -> None:
        system = body.get("system")
        if system is not None and not isinstance(system, str) and not _text_blocks(system):
            raise invalid("system: Input should be a valid string or list of text blocks")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise invalid("messages: Field required")
        for i, message in enumerate(messages):
            role = message.get("role") if isinstance(message, dict) else None
            if role not in ("user", "assistant"):
                raise invalid(
                    f'messages.{i}.role: Unexpected role "{role}". The Messages API accepts '
                    'a top-level `system` parameter, not "system" as an input message role.'
                )
            if i == 0 and role != "user":
                raise invalid('messages: first message must use the "user" role')
            if i and messages[i - 1]["role"] == role:
                raise invalid(
                    'messages: roles must alternate between "user" and "assistant", but '
                    f'found multiple "{role}" roles in a row'
                )
            content = message.get("content")
            if not (isinstance(content, str) and content) and not _text_blocks(content):
                raise invalid(f"messages.{i}: text content blocks must be non-empty")
        last = messages[-1]
        if last["role"] != "assistant":
            return
        if prefill_rules and body.get("thinking") is not None:
            raise invalid(
                "Expected `thinking` or `redacted_thinking`, but found `text`. When "
                "`thinking` is enabled, a final `assistant` message must start with a "
                "thinking block."
            )
        if prefill_rules and body["model"].startswith(self.no_prefill):
            raise invalid(
                "This model does not support assistant message prefill. The conversation "
                "must end with a user message."
            )
        text = last["content"] if isinstance(last["content"], str) else last["content"][-1]["text"]
        if text != text.rstrip():
            raise invalid("messages: final assistant content cannot end with trailing whitespace")

    def _models(self, query: Mapping[str, str]) -> web.Response:
        limit = min(int(query.get("limit", "20")), self.page_size)
        start = self.models.index(query["after_id"]) + 1 if "after_id" in query else 0
        page = self.models[start : start + limit]
        data = [
            {"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
            for m in page
        ]
        more = start + limit < len(self.models)
        return web.json_response(
            {
                "data": data,
                "has_more": more,
                "first_id": page[0] if page else None,
                "last_id": page[-1] if page else None,
            }
        )

    # -- rendering ---------------------------------------------------------------------------

    def render(self, reply: Text | Cut | InStreamError | Huge) -> list[bytes]:
        if isinstance(reply, Huge):
            piece = delta(0, "text_delta", "y" * 4000)
            return [START, block_start(0, "text")] + [piece] * (reply.size // len(piece) + 1)
        out = [START]
        index = 0
        if isinstance(reply, Text) and reply.reasoning:
            out.append(block_start(0, "thinking"))
            out += [delta(0, "thinking_delta", r) for r in reply.reasoning]
            out += [delta(0, "signature_delta", "c2lnbmF0dXJl"), block_stop(0)]
            index = 1
        out.append(block_start(index, "text"))
        out += [delta(index, "text_delta", d) for d in reply.deltas]
        if isinstance(reply, InStreamError):
            out.append(OVERLOADED_EVENT)
        if not isinstance(reply, Text):
            return out
        out.append(block_stop(index))
        out.append(PING)
        if reply.usage is not None:
            out[0] = out[0].replace(b'"input_tokens":12', b'"input_tokens":%d' % reply.usage[0])
        output = reply.usage[1] if reply.usage else len(reply.deltas)
        out += [message_delta(reply.finish or "end_turn", output), STOP]
        return out

    def whole(self, reply: Text | Cut | InStreamError | Huge) -> web.Response:
        if isinstance(reply, Cut):
            return web.Response(
                body=b'{"id":"msg_01","type":"mes', content_type="application/json"
            )
        if isinstance(reply, InStreamError):
            return web.json_response(ERROR_529, status=529)
        text = "x" * reply.size if isinstance(reply, Huge) else "".join(reply.deltas)
        content: list[dict[str, Any]] = []
        if isinstance(reply, Text) and reply.reasoning:
            content.append(
                {"type": "thinking", "thinking": "".join(reply.reasoning), "signature": "c2ln"}
            )
        content.append({"type": "text", "text": text})
        usage = reply.usage if isinstance(reply, Text) and reply.usage else (12, 1)
        return web.json_response(
            {
                "id": "msg_01",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-5",
                "content": content,
                "stop_reason": (reply.finish if isinstance(reply, Text) else None) or "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": usage[0], "output_tokens": usage[1]},
            }
        )

    def endless_delta(self, n: int) -> bytes:
        head = START + block_start(0, "text") if n == 1 else b""
        return head + delta(0, "text_delta", f"w{n} ")


def _text_blocks(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(b, dict)
        and b.get("type") == "text"
        and isinstance(b.get("text"), str)
        and b["text"]
        for b in value
    )


def count_words(body: Mapping[str, Any]) -> int:
    """The fake's tokenizer: one token per word, plus three per message for the framing."""
    system = body.get("system") or ""
    texts = [system] if isinstance(system, str) else [b["text"] for b in system]
    for message in body["messages"]:
        content = message["content"]
        texts += [content] if isinstance(content, str) else [b["text"] for b in content]
    return sum(len(t.split()) for t in texts) + 3 * len(body["messages"])
